"""The calibration set: real training clips, preprocessed exactly as the checkpoint expects.

Every backend is calibrated on the same samples, so int8 artifacts differ only in how their
backend quantizes, never in what they were shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egoedge.trainer.common.arrays import read_array
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data.calibration import MIN_CALIBRATION, as_samples, calibration_inputs, check_preprocess

__all__ = ["MIN_CALIBRATION", "as_samples", "calibration_inputs", "check_preprocess", "load_calibration_file"]

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

