"""VSLNet's objective and its distillation term.

Cross-entropy on the start and on the end index (over valid steps), plus ``highlight_weight`` ×
a weighted binary cross-entropy of the highlight scores against the answer window widened by
``extend`` of its length on each side. Distillation adds ``T²·KL`` between the teacher's and the
student's start (and end) distributions at temperature ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egoedge.trainer.distill import ResponseKL
from egoedge.trainer.models.vslnet import mask_logits
from egoedge.trainer.nlq.data import NLQSplit


@dataclass(frozen=True)
class SpanLoss:
    """Weights of VSLNet's objective and of the distillation term."""

    highlight_weight: float = 5.0
    extend: float = 0.1
    kd_weight: float = 1.0  # weight of the KL term when a teacher is given
    task_weight: float = 1.0  # weight of the supervised span loss when a teacher is given
    temperature: float = 4.0


def highlight_labels(split: NLQSplit, idx: np.ndarray, extend: float) -> np.ndarray:
    """1 on the answer window widened by ``extend`` of its length each side, 0 elsewhere."""
    t = split.video.shape[1]
    s, e = split.start_idx[idx], split.end_idx[idx]
    ext = np.round(extend * (e - s + 1)).astype(np.int64)
    lo, hi = np.maximum(0, s - ext), np.minimum(split.num_units[idx] - 1, e + ext)
    steps = np.arange(t)[None, :]
    return ((steps >= lo[:, None]) & (steps <= hi[:, None])).astype(np.float32)


def span_loss(out: dict, batch: dict, loss: SpanLoss) -> dict[str, torch.Tensor]:
    """VSLNet's supervised objective: start/end cross-entropy + weighted highlight BCE."""
    mask = batch["video_mask"]
    ce = (F.cross_entropy(mask_logits(out["start"], mask), batch["start"])
          + F.cross_entropy(mask_logits(out["end"], mask), batch["end"]))
    terms = {"span": ce}
    if out.get("highlight") is not None:
        labels = batch["highlight"]
        weights = torch.where(labels > 0, 2.0, 1.0) * mask
        bce = F.binary_cross_entropy_with_logits(out["highlight"], labels, weight=weights, reduction="sum")
        terms["highlight"] = bce / mask.sum()
        ce = ce + loss.highlight_weight * terms["highlight"]
    return {"loss": ce, **terms}


def kd_loss(student: dict, teacher: dict, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL`` of the teacher's start and end distributions to the student's, over valid steps."""
    kl = ResponseKL(temperature)
    return sum(kl({"student_logits": mask_logits(student[k], mask), "teacher_logits": mask_logits(teacher[k], mask)})
               for k in ("start", "end"))
