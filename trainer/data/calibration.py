"""The calibration set: real training clips preprocessed exactly as the checkpoint expects, or a user's file.

Every quantizer (PTQ, each backend in ``edge``) draws the same seeded samples, so int8 models
differ only in how they quantize, never in what they were shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.common.arrays import read_array
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data.clips import DataConfig, preprocess_spec, to_model_input
from egoedge.trainer.data.sources import load_split

MIN_CALIBRATION = 8  # fewer samples give activation ranges that miss the tails of real inputs


def check_preprocess(preprocess: dict, data_cfg: DataConfig) -> None:
    """Raise if the checkpoint's preprocessing is not the one its dataset config produces."""
    expected = preprocess_spec(data_cfg)
    diff = [k for k in expected if k not in preprocess or _norm(preprocess[k]) != _norm(expected[k])]
    if diff:
        raise EgoedgeError(
            f"checkpoint preprocess does not match its dataset '{data_cfg.name}' ({', '.join(diff)} differ: "
            f"{ {k: preprocess.get(k) for k in diff} } vs { {k: expected[k] for k in diff} }); "
            "calibrating on differently prepared clips would mis-scale every int8 tensor")


def _norm(v):
    return [round(float(x), 6) for x in v] if isinstance(v, (list, tuple)) else v


def as_samples(*arrays: np.ndarray | torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Batch-1 input tuples (one tensor per model input), the form every quantizer's calibration loop feeds."""
    return [tuple(torch.as_tensor(x[i:i + 1]) for x in arrays) for i in range(len(arrays[0]))]


def calibration_inputs(data_cfg: DataConfig, preprocess: dict, count: int, seed: int = 0) -> np.ndarray:
    """``count`` preprocessed float32 clips drawn (seeded, without replacement) from the train split.

    Example::

        x = calibration_inputs(DataConfig(), ckpt["preprocess"], 256)  # (256, T, 3, H, W)
    """
    if count < MIN_CALIBRATION:
        raise EgoedgeError(f"calibration set of {count} samples is too small; use --calib {MIN_CALIBRATION} or more")
    check_preprocess(preprocess, data_cfg)
    train = load_split(data_cfg, "train")
    if count > len(train):
        raise EgoedgeError(f"--calib {count} exceeds the {len(train)} training clips of '{data_cfg.name}'")
    pick = np.sort(np.random.default_rng([seed, 11]).permutation(len(train))[:count])
    return to_model_input(train.clips[pick], preprocess).numpy()


def load_calibration_file(path: str | Path, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Preprocessed calibration inputs from a ``.npy`` of shape ``(N, *sample_shape)`` float32."""
    x = read_array(path, "--calib-file", kind="f")
    if x.ndim != len(sample_shape) + 1 or tuple(x.shape[1:]) != tuple(sample_shape):
        raise EgoedgeError(f"--calib-file {path} has shape {tuple(x.shape)}; the model takes "
                           f"(N, {', '.join(map(str, sample_shape))}) preprocessed inputs")
    if not np.isfinite(x).all():
        raise EgoedgeError(f"--calib-file {path} holds NaN or infinite values; finite floats expected")
    if len(x) < MIN_CALIBRATION:
        raise EgoedgeError(f"--calib-file {path} holds {len(x)} samples; at least {MIN_CALIBRATION} are needed")
    return x.astype(np.float32)
