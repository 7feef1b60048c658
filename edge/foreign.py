"""``egoedge export MODEL`` for a model that is not an egoedge checkpoint: a ``.pt2``, ``timm:NAME``, a factory.

The user's inputs (``--example-inputs`` or seeded random ones of ``--input-shape``) are the held-out
set; ``--calib-file`` calibrates int8; ``--labels`` adds accuracy. The export folder is made
self-contained for ``egoedge bench``: ``source.pt2`` (the model as a ``torch.export`` program, run
eagerly as the reference) and ``samples.npz`` (the held-out inputs) sit beside the artifacts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from egoedge.edge.export import ExportConfig, ExportPlan, carry_out, plan
from egoedge.edge.sources import source_of
from egoedge.trainer.common.arrays import check_array, read_array, read_arrays
from egoedge.trainer.common.io import EgoedgeError, first_line, sha256_file, write_bytes_atomic
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.tasks import TASKS
from egoedge.trainer.tasks.model import SAMPLES, ArrayEvaluation

PROGRAM = "source.pt2"  # the exported model's eager reference, beside its artifacts


@dataclass(frozen=True)
class ModelInputs:
    """Where a foreign model's held-out inputs come from (one of the first two), and its optional extras."""

    input_shape: str | None = None  # "1,3,224,224", several inputs joined by ";"
    example_inputs: str | None = None  # a .npy (one input, (N, ...)) or .npz (one array per input, in order)
    labels: str | None = None  # a .npy of N class indices, for accuracy
    weights: str | None = None  # a weights file for timm:NAME or a factory's module
    samples: int = 32  # random samples drawn when only a shape is given
    seed: int = 0


def parse_shapes(text: str) -> list[tuple[int, ...]]:
    """``"1,3,224,224;1,10"`` -> ``[(1, 3, 224, 224), (1, 10)]``; each shape starts with its batch of 1."""
    shapes = []
    for part in text.split(";"):
        try:
            shape = tuple(int(d) for d in part.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise EgoedgeError(f"--input-shape '{text}': give comma-separated integers, e.g. 1,3,224,224") from None
        if not shape or any(d < 1 for d in shape) or shape[0] != 1:
            raise EgoedgeError(f"--input-shape '{part}': a batch-1 shape of positive sizes, e.g. 1,3,224,224")
        shapes.append(shape)
    return shapes


def held_out_inputs(spec: ModelInputs) -> tuple[np.ndarray, ...]:
    """``(N, ...)`` float32 arrays, one per model input: the example inputs, or seeded normal ones of the shapes."""
    if (spec.input_shape is None) == (spec.example_inputs is None):
        raise EgoedgeError("a model that is not an egoedge checkpoint needs its input: --input-shape 1,3,224,224 "
                           "or --example-inputs X.npy (one of the two)")
    if spec.example_inputs is not None:
        arrays = tuple(check_array(a, "--example-inputs", spec.example_inputs, kind="f")
                       for a in read_arrays(spec.example_inputs, "--example-inputs").values())
        if any(a.ndim < 1 or len(a) != len(arrays[0]) for a in arrays):
            raise EgoedgeError(f"--example-inputs {spec.example_inputs}: float arrays with one sample per row "
                               "(N, ...), the same N for every input")
        return tuple(a.astype(np.float32) for a in arrays)
    rng = np.random.default_rng(spec.seed)
    return tuple(rng.standard_normal((spec.samples, *s[1:])).astype(np.float32) for s in parse_shapes(spec.input_shape))


def _labels(path: str | None, count: int) -> np.ndarray | None:
    if path is None:
        return None
    y = read_array(path, "--labels", kind="iu")
    if y.shape != (count,):
        raise EgoedgeError(f"--labels {path}: {count} integer class indices expected, got shape {y.shape}")
    return y.astype(np.int64)


def data_calibration(spec: str, arrays: tuple[np.ndarray, ...], count: int, seed: int) -> tuple[np.ndarray]:
    """``count`` training clips of ``--data spec`` shaped as the model's input: RGB clips ``(N, T, 3, S, S)`` or
    frames ``(N, 3, S, S)`` (each clip's first), normalised with the project's (CLIP's) mean and std."""
    from egoedge.trainer.data import DataConfig, normalize_spec, prepare_data, preprocess_spec
    from egoedge.trainer.data.calibration import calibration_inputs

    shape = arrays[0].shape[1:]
    clip = len(shape) == 4 and shape[1] == 3 and shape[2] == shape[3]
    frame = len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]
    if len(arrays) != 1 or not (clip or frame):
        raise EgoedgeError(f"--data gives RGB clips (1, T, 3, S, S) or frames (1, 3, S, S); this model takes "
                           f"{', '.join(str((1, *a.shape[1:])) for a in arrays)}: give --calib-file")
    # A generated dataset is made just large enough; a video source's splits are what its files hold.
    data = DataConfig(name=normalize_spec(spec), frames=shape[0] if clip else 1, size=shape[-1],
                      train=max(count, 64), val=16, test=16)
    prepare_data(data)
    x = calibration_inputs(data, preprocess_spec(data), count, seed)
    return (x if clip else x[:, 0],)


class TensorOutputs(nn.Module):
    """A model whose outputs are a dict or a ``ModelOutput``, returning their tensors as a tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *xs):
        return tuple(torch.utils._pytree.tree_leaves(self.model(*xs)))


def _as_exportable(model: nn.Module, example: tuple[torch.Tensor, ...], spec: str) -> tuple[nn.Module, int]:
    """The model in eval mode (wrapped when its outputs are not tensors) and its output count."""
    model = model.eval()
    try:
        with torch.no_grad():
            out = model(*example)
    except Exception as e:  # noqa: BLE001 - the user's model on the user's shape
        raise EgoedgeError(f"{spec} fails on inputs of shape "
                           f"{', '.join(str(tuple(x.shape)) for x in example)}: {first_line(e)[:200]}") from None
    if isinstance(out, torch.Tensor):
        return model, 1
    if isinstance(out, tuple | list) and all(isinstance(t, torch.Tensor) for t in out):
        return model, len(out)
    leaves = torch.utils._pytree.tree_leaves(out)
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        raise EgoedgeError(f"{spec} returns {type(out).__name__}, which holds no tensors to export")
    return TensorOutputs(model), len(leaves)


@locks_folder("out_dir", "egoedge export")
def export_any(spec: str, out_dir: str | Path, cfg: ExportConfig = ExportConfig(), inputs: ModelInputs = ModelInputs(),
               progress: Progress = no_progress) -> dict:
    """Export a ``.pt2``, ``timm:NAME`` or ``module:factory`` model per ``cfg``; returns the manifest.

    Example::

        export_any("timm:mobilenetv3_small_100", "export", ExportConfig(formats=("onnx",)),
                   ModelInputs(input_shape="1,3,224,224"))
    """
    out_dir = Path(out_dir)
    pairs = plan(cfg)
    if cfg.data and cfg.calibration_file:
        raise EgoedgeError("give one calibration source: --calib-file or --data")
    if cfg.streaming:
        raise EgoedgeError("--streaming splits egoedge clip students; your own model exports as one program")
    source = source_of(spec)
    model = source.load(spec, inputs.weights)
    arrays = held_out_inputs(inputs)
    example = tuple(torch.from_numpy(a[:1]) for a in arrays)
    model, outputs = _as_exportable(model, example, spec)
    # Calibration: --calib-file (the export reads it) or --data's clips; without either, int8 is one line.
    from egoedge.edge.export import needs_calibration

    calib = (data_calibration(cfg.data, arrays, cfg.calibration, cfg.calibration_seed)
             if cfg.data and needs_calibration(pairs) else None)
    ev = ArrayEvaluation(arrays, outputs, _labels(inputs.labels, len(arrays[0])), calib,
                         source=cfg.data or inputs.example_inputs or f"random inputs of shape {inputs.input_shape}")
    out_dir.mkdir(parents=True, exist_ok=True)
    ev.save(out_dir / SAMPLES)
    try:
        program = torch.export.export(model, example, strict=False)
    except Exception as e:  # noqa: BLE001 - graph breaks, data-dependent control flow
        raise EgoedgeError(f"torch.export cannot capture {spec}: {type(e).__name__}: {first_line(e)[:200]}") from None
    buf = io.BytesIO()
    torch.export.save(program, buf)
    write_bytes_atomic(out_dir / PROGRAM, buf.getvalue())
    block = {"checkpoint": PROGRAM, "sha256": sha256_file(out_dir / PROGRAM), "arch": spec, "model": spec,
             "weights": inputs.weights, "samples": SAMPLES}
    entry = {"preprocess": {"modality": "tensor", "layout": "as given"}, "labels": [], "role": "clip"}
    return carry_out(ExportPlan(model, TASKS.get("model"), ev, out_dir, cfg, source.stem(spec), block, entry, spec),
                     progress)
