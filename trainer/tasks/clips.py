"""Clip classification tasks: ``recognition`` (the action in the clip) and ``anticipation`` (the next one).

Both read a preprocessed clip ``(1, T, 3, H, W)`` and return class logits; they differ only in
which label the dataset attaches to a clip (``DataConfig.task``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.tasks.base import Arrays, Evaluation, Task
from egoedge.trainer.tasks.registry import TASKS

if TYPE_CHECKING:  # the data and training stack load when a task does work, not when tasks are listed
    from egoedge.trainer.data import ClipSplit
    from egoedge.trainer.quantize.ptq import PTQJob


# A class the fp32 model rates under 2 % less likely than its top one (a logit within ln 1.02) ties with it: which
# of the two wins is a coin that any reduced precision tosses again, whatever it keeps fp32 (docs/int8.md).
TIE_MARGIN = float(np.log(1.02))


def logit_parity(reference: np.ndarray, candidate: np.ndarray, tie: float | None = None) -> dict[str, float]:
    """``{"max_abs", "top1_agreement", "tie_flips"}`` of candidate logits against reference logits.

    A row agrees when the candidate's top class is the reference's, or one the reference ties with it
    (a logit less than ``tie`` below its top; default :data:`TIE_MARGIN`, ``tie=0``: exact top-1);
    ``tie_flips`` counts those rows.

    Example: ``logit_parity(np.array([[2.0, 1.99, 0]]), np.array([[1.9, 2.0, 0]]))["top1_agreement"]`` is ``100.0``.
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"output shape {candidate.shape} != reference {reference.shape}")
    flipped, tied = _flips(reference, candidate, TIE_MARGIN if tie is None else tie)
    return {"max_abs": float(np.max(np.abs(reference - candidate))),
            "top1_agreement": float(100.0 * np.mean(~flipped | tied)), "tie_flips": int(np.sum(flipped & tied))}


def _flips(reference: np.ndarray, candidate: np.ndarray, tie: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: did the top class change, and is the new one within ``tie`` of the reference's top logit."""
    reference = reference.astype(np.float64)
    picked = candidate.argmax(-1)
    below = reference.max(-1) - np.take_along_axis(reference, picked[..., None], -1)[..., 0]
    return reference.argmax(-1) != picked, below < tie


def tie_agreement(reference: np.ndarray, candidate: np.ndarray, inputs: tuple = ()) -> float:
    """% of rows whose top class is the reference's or ties with it: the gate's agreement (:func:`logit_parity`)."""
    return logit_parity(reference, candidate)["top1_agreement"]


def undecided_note(reference: np.ndarray, candidate: np.ndarray) -> str:
    """Why predictions flipped: how many clips the fp32 model itself barely decides.

    A clip whose top-2 logit margin is below the artifact's own error can flip under any
    reduced precision; many such clips point at an undertrained model, not a broken export.
    """
    top2 = np.sort(reference, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    error = np.abs(reference - candidate).max(axis=-1)
    changed, tied = _flips(reference, candidate, TIE_MARGIN)
    flipped, ties = int(changed.sum()), int((changed & tied).sum())
    undecided = float(100.0 * np.mean(margin < 2 * error))
    return (f"{flipped} of {len(reference)} test clips flipped ({ties} of them ties, not counted); on {undecided:.1f}% "
            f"of clips the fp32 top-2 margin "
            f"is under twice this artifact's logit error (median fp32 margin {np.median(margin):.3f})")


class ClipEvaluation(Evaluation):
    """The validation and test clips of a clip checkpoint's dataset, preprocessed as it expects."""

    inputs = ("clip",)
    outputs = ("logits",)

    def __init__(self, ckpt: dict) -> None:
        from egoedge.trainer.data import DataConfig
        from egoedge.trainer.data.calibration import check_preprocess

        try:
            self.data = DataConfig(**ckpt["config"]["data"])
        except (KeyError, TypeError) as e:
            raise EgoedgeError(f"the checkpoint does not record its dataset ({e}); retrain it with egoedge") from None
        self.preprocess = ckpt["preprocess"]
        self.label_names = list(ckpt["label_names"])
        self.source = self.data.name
        check_preprocess(self.preprocess, self.data)

    @cached_property
    def val(self) -> ClipSplit:
        from egoedge.trainer.data import load_split

        return load_split(self.data, "val")

    @cached_property
    def test(self) -> ClipSplit:
        from egoedge.trainer.data import load_split

        return load_split(self.data, "test")

    def model_input(self, clips: np.ndarray) -> np.ndarray:
        """uint8 clips as the model takes them (:func:`trainer.data.to_model_input`)."""
        from egoedge.trainer.data import to_model_input

        return to_model_input(clips, self.preprocess).numpy()

    def parity_inputs(self, count: int) -> Arrays:
        if count > len(self.val):
            raise EgoedgeError(f"parity batch of {count} exceeds the {len(self.val)} held-out clips")
        return (self.model_input(self.val.clips[:count]),)

    @cached_property
    def _test_inputs(self) -> Arrays:
        return (self.model_input(self.test.clips),)

    def test_inputs(self, variant=None) -> Arrays:
        return self._test_inputs

    def calibration(self, count: int, seed: int) -> Arrays:
        from egoedge.trainer.data.calibration import calibration_inputs

        return (calibration_inputs(self.data, self.preprocess, count, seed),)

    def score(self, outputs: Arrays) -> dict:
        from egoedge.trainer.train import topk_accuracy

        return {"accuracy": topk_accuracy(outputs[0], self.test.labels)}

    def parity(self, reference: Arrays, candidate: Arrays, inputs: Arrays) -> dict:
        return logit_parity(reference[0], candidate[0])

    def flip_note(self, reference: Arrays, candidate: Arrays) -> str | None:
        return undecided_note(reference[0], candidate[0])

    def labels(self) -> np.ndarray:
        return self.test.labels

    def sample(self) -> dict:
        return {"label": self.label_names[int(self.val.labels[0])]}

    def raw_sample(self) -> np.ndarray:
        return self.val.clips[0]


@dataclass(frozen=True)
class ClipTask(Task):
    """A clip classifier: top-1/top-5 on the test split, 99 % top-1 agreement for int8.

    Its clips' labels come from the labeling registered under its name (``trainer.data.labeling``), and
    ``egoedge run`` trains it with the clip flow.
    """

    flow: str | None = "clips"

    def evaluation(self, ckpt: dict) -> ClipEvaluation:
        return ClipEvaluation(ckpt)

    def with_data(self, ckpt: dict, spec: str) -> dict:
        from egoedge.trainer.data import DataConfig, label_names, normalize_spec

        data = {**ckpt["config"]["data"], "name": normalize_spec(spec)}
        names = label_names(DataConfig(**data))
        if names != list(ckpt["label_names"]):
            raise EgoedgeError(f"--data {spec} has {len(names)} classes ({', '.join(names[:4])}...) but the "
                               f"checkpoint {len(ckpt['label_names'])} ({', '.join(ckpt['label_names'][:4])}...); "
                               "calibrate and check on data with the checkpoint's classes")
        return {**ckpt, "config": {**ckpt["config"], "data": data}}

    def ptq_job(self, path: Path, cfg, ckpt: dict) -> PTQJob:
        """Calibration clips from train, agreement on val, top-1/5 on test."""
        import torch

        from egoedge.trainer.data.calibration import as_samples
        from egoedge.trainer.quantize.ptq import OutputMatch, PTQJob
        from egoedge.trainer.train import topk_accuracy

        model, ckpt = self.load(path, ckpt)
        ev = ClipEvaluation(ckpt)
        calib = torch.from_numpy(ev.calibration(cfg.calibration, cfg.seed)[0])
        val = (torch.from_numpy(ev.model_input(ev.val.clips[:cfg.val_samples])),)
        test = (torch.from_numpy(ev.test_inputs()[0]),)
        return PTQJob(model, as_samples(calib), val, test, lambda out: topk_accuracy(out, ev.test.labels),
                      source=ev.source, match=OutputMatch(agreement=tie_agreement))


_NOTE = ("Latency is per clip at batch 1 (warm-up, then timed iterations); accuracy is on the test split; agreement "
         "and max abs Δ compare logits with the fp32 PyTorch student.")
TASKS.register("recognition")(ClipTask("recognition", report_note=_NOTE))
TASKS.register("anticipation")(ClipTask("anticipation", report_note=_NOTE))
