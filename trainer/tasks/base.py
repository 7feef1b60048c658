"""What a task owns: its model IO, held-out data, metric, parity-gate defaults, PTQ job and report wording.

Every stage (export, bench, quantize, report, embed) asks the task of a checkpoint what differs
instead of testing its name. A task's outputs are always a tuple of arrays, one per model output,
each ``(N, ...)``; its inputs likewise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from egoedge.trainer.common.io import EgoedgeError

if TYPE_CHECKING:  # torch loads only when a task does work, so that listing the tasks stays fast
    import torch

Arrays = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class GateDefaults:
    """The parity gate a task's artifacts get unless the user sets one (see ``edge.parity.ParityGate``)."""

    fp32_max_abs: float = 1e-4
    int8_min_agreement: float = 99.0
    int8_max_accuracy_drop: float = 1.0


class Evaluation(ABC):
    """One checkpoint's held-out data in the form its model takes, and how outputs on it are scored."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str  # where the data comes from, for the manifest's calibration block

    @abstractmethod
    def parity_inputs(self, count: int) -> Arrays:
        """The first ``count`` validation samples (the parity batch); fails if there are fewer."""

    @abstractmethod
    def test_inputs(self, variant: Any = None) -> Arrays:
        """Every test sample; ``variant`` (from :meth:`Task.input_variant`) picks e.g. a tokenizer."""

    @abstractmethod
    def calibration(self, count: int, seed: int) -> Arrays:
        """``count`` seeded training samples, preprocessed as the model takes them."""

    @abstractmethod
    def score(self, outputs: Arrays) -> dict:
        """``{"accuracy": {"top1", "top5"}, ...}`` of test outputs; a task may add its own figures."""

    @abstractmethod
    def parity(self, reference: Arrays, candidate: Arrays, inputs: Arrays) -> dict:
        """``{"max_abs", "top1_agreement"}`` of candidate outputs against reference outputs."""

    def flip_note(self, reference: Arrays, candidate: Arrays) -> str | None:
        """Why predictions flipped, appended to a refused artifact's reason (``None``: nothing to add)."""
        return None

    def sample(self) -> dict:
        """The manifest's sample block fields beyond input/output: what a person reads (``label``)."""
        return {}

    def reference(self) -> Arrays | None:
        """Outputs every measured target is compared with, when they are known beforehand (``None``: the
        first measured reference target's)."""
        return None

    def labels(self) -> np.ndarray | None:
        """The test split's class per sample, for scores beyond :meth:`score` (``None``: not a classifier)."""
        return None

    def raw_sample(self) -> np.ndarray | None:
        """The parity batch's first sample before preprocessing (an app replays its own preprocessing on it)."""
        return None


@dataclass(frozen=True)
class Task(ABC):
    """One kind of problem: what goes in, what comes out, how it is scored."""

    name: str
    unit: str = "clip"  # what one latency figure is for
    units: str = "clips"  # the plural, for counts
    agreement_column: str = "agreement %"  # what top-1 agreement with fp32 means for this task
    metric_column: str = "top-1 %"  # the accuracy column of the report (its ``top1``)
    ptq_columns: tuple[str, ...] = ("top1", "top5")  # the PTQ table's figures, from the PTQ report
    gate: GateDefaults = field(default_factory=GateDefaults)
    app: bool = True  # whether the Android demo runs this task's artifacts
    flow: str | None = None  # the `egoedge run` pipeline that trains its models (egoedge/pipeline); None: none does
    report_field: str | None = None  # report rows keep ``score()``'s ``metrics`` under this key
    report_note: str = ""

    @abstractmethod
    def evaluation(self, ckpt: dict) -> Evaluation:
        """The held-out data of a checkpoint of this task."""

    @abstractmethod
    def ptq_job(self, path: Path, cfg, ckpt: dict):
        """The :class:`~trainer.quantize.ptq.PTQJob` of a checkpoint of this task."""

    def with_data(self, ckpt: dict, spec: str) -> dict:
        """The checkpoint with its held-out and calibration data taken from ``--data spec`` instead."""
        raise EgoedgeError(f"--data does not apply to --task {self.name} checkpoints")

    def input_variant(self, ckpt: dict) -> Any:
        """Which form of the test inputs this checkpoint's model reads (``None``: the exported one)."""
        return None

    def load(self, path: str | Path, ckpt: dict | None = None) -> tuple[torch.nn.Module, dict]:
        """Rebuild a checkpoint's model in eval mode."""
        from egoedge.trainer.checkpoint import load_model

        return load_model(path, ckpt=ckpt)


def checkpoint_task_name(ckpt: dict) -> str:
    """The task a checkpoint records (``config.task``; older clip checkpoints only in ``config.data.task``)."""
    config = ckpt.get("config") or {}
    name = config.get("task") or (config.get("data") or {}).get("task") or "recognition"
    if not isinstance(name, str):
        raise EgoedgeError(f"the checkpoint's task is {name!r}, not a name")
    return name


def model_outputs(model: torch.nn.Module, inputs: Arrays, batch_size: int = 64) -> Arrays:
    """A PyTorch model's outputs on ``inputs`` in batches, one ``(N, ...)`` array per output, in eval mode."""
    import torch

    model.eval()
    dev = next(model.parameters()).device
    parts: list[list[np.ndarray]] = []
    for i in range(0, len(inputs[0]), batch_size):
        with torch.no_grad():
            out = model(*(torch.from_numpy(x[i:i + batch_size]).to(dev) for x in inputs))
        parts.append([t.float().cpu().numpy() for t in (out if isinstance(out, tuple | list) else (out,))])
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))
