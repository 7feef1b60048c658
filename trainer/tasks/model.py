"""The ``model`` task: any PyTorch model, judged on the inputs its user gives (labels optional).

Held-out samples are ``--example-inputs`` (or seeded random ones of ``--input-shape``), saved as
``samples.npz`` beside the artifacts so the bench replays them; calibration is ``--calib-file`` or a
dataset's clips. Outputs are compared tensor by tensor: max |difference| for fp32, agreement of the
last axis' argmax for reduced precisions, top-1 accuracy only when labels are given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egoedge.trainer.common.arrays import pick, read_arrays
from egoedge.trainer.common.io import EgoedgeError, atomic_write
from egoedge.trainer.tasks.base import Arrays, Evaluation, GateDefaults, Task
from egoedge.trainer.tasks.registry import TASKS

SAMPLES = "samples.npz"  # the held-out inputs (and labels) of a foreign model, beside its artifacts


def io_names(prefix: str, count: int) -> tuple[str, ...]:
    """``("input",)`` for one tensor, ``("input_0", "input_1", ...)`` for several."""
    return (prefix,) if count == 1 else tuple(f"{prefix}_{i}" for i in range(count))


def output_parity(reference: Arrays, candidate: Arrays) -> dict:
    """Worst max |difference| and worst argmax agreement over every output tensor."""
    from egoedge.trainer.tasks.clips import logit_parity

    # Exact top-1: a model of your own may output anything, not logits whose gaps say how sure it is.
    flat = [(r.reshape(len(r), -1) if r.ndim > 2 else r, c.reshape(len(c), -1) if c.ndim > 2 else c)
            for r, c in zip(reference, candidate, strict=True)]
    each = [logit_parity(r, c, tie=0.0) for r, c in flat]
    return {"max_abs": max(p["max_abs"] for p in each), "top1_agreement": min(p["top1_agreement"] for p in each)}


class ArrayEvaluation(Evaluation):
    """Held-out inputs as arrays (one ``(N, ...)`` per model input), optional labels and calibration arrays."""

    def __init__(self, inputs: Arrays, outputs: int, labels: np.ndarray | None = None,
                 calibration: Arrays | None = None, source: str = "user inputs") -> None:
        self._inputs = tuple(np.ascontiguousarray(x, dtype=np.float32) for x in inputs)
        self.inputs = io_names("input", len(inputs))
        self.outputs = io_names("output", outputs)
        self._labels = labels
        self._calibration = calibration
        self.source = source

    def parity_inputs(self, count: int) -> Arrays:
        return tuple(x[:count] for x in self._inputs)

    def test_inputs(self, variant=None) -> Arrays:
        return self._inputs

    def calibration(self, count: int, seed: int) -> Arrays:
        if self._calibration is None:
            raise EgoedgeError("int8 needs calibration inputs: --calib-file X.npy (preprocessed, shaped like the "
                               "model's input) or --data SPEC")
        n = len(self._calibration[0])
        idx = np.sort(np.random.default_rng(seed).choice(n, min(count, n), replace=False))
        return tuple(x[idx] for x in self._calibration)

    def score(self, outputs: Arrays) -> dict:
        if self._labels is None:
            return {"accuracy": None}
        from egoedge.trainer.train import topk_accuracy

        return {"accuracy": topk_accuracy(outputs[0].reshape(len(outputs[0]), -1), self._labels)}

    def parity(self, reference: Arrays, candidate: Arrays, inputs: Arrays) -> dict:
        return output_parity(reference, candidate)

    def labels(self) -> np.ndarray | None:
        return self._labels

    def sample(self) -> dict:
        return {"label": "" if self._labels is None else str(int(self._labels[0]))}  # a class index, no names

    def save(self, path: Path) -> Path:
        """The held-out inputs (and labels) as ``samples.npz``, which :meth:`ModelTask.evaluation` reads back."""
        arrays = dict(zip(self.inputs, self._inputs, strict=True))
        if self._labels is not None:
            arrays["labels"] = self._labels
        return atomic_write(path, lambda p: np.savez(open(p, "wb"), outputs=np.array(len(self.outputs)), **arrays))


def read_samples(path: Path) -> ArrayEvaluation:
    """``samples.npz`` back as the evaluation it was saved from; a damaged file is one line."""
    z = read_arrays(path, "held-out samples")
    names = sorted((k for k in z if k.startswith("input")), key=lambda k: (len(k), k))
    inputs = tuple(z[k] for k in names)
    labels = z.get("labels")
    outputs = int(pick(z, ("outputs",), "held-out samples", path)[0])
    if not inputs:
        raise EgoedgeError(f"{path} holds no inputs; re-export")
    return ArrayEvaluation(inputs, outputs, labels, source=str(path))


class ModelTask(Task):
    """Any PyTorch model: outputs checked against PyTorch on the user's inputs; accuracy when labels are given."""

    def evaluation(self, ckpt: dict) -> ArrayEvaluation:
        """``ckpt`` is the manifest's source block with ``samples`` (the path of ``samples.npz``)."""
        return read_samples(Path(ckpt["samples"]))

    def ptq_job(self, path: Path, cfg, ckpt: dict):
        raise EgoedgeError("egoedge quantize takes egoedge checkpoints; for your own model use "
                           "egoedge export MODEL --int8 --calib-file X.npy")


TASKS.register("model")(ModelTask(
    "model", unit="sample", units="samples", app=False,
    # A pretrained model with many classes (ImageNet's 1,000) has near ties that any rounding flips: published
    # int8 results lose 0.7-1 top-1 points (EfficientNet-Lite0 75.1 -> 74.4 %), and flips both ways plus
    # changes between two wrong classes put such a model at 97-98 % agreement with its fp32 twin.
    gate=GateDefaults(int8_min_agreement=97.0),
    report_note="Latency is per call at batch 1 on the saved held-out inputs; agreement compares the argmax of each "
                "output's last axis with the fp32 PyTorch model, max abs Δ its values."))
