"""Distillation loss terms (a registry) and the combined student objective.

Each term maps a dict of model outputs to a scalar. The combined objective follows the
CLIP -> MobileViT recipe: ``L = alpha * L_feature + beta * L_response + gamma * L_task``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.common.registry import Registry

LOSSES: Registry = Registry("distillation loss")


@LOSSES.register("response_kl")
class ResponseKL(nn.Module):
    """Hinton et al. 2015: ``temperature**2 * KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean.

    The ``T**2`` factor keeps the gradient scale independent of the temperature.
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.temperature
        s = F.log_softmax(out["student_logits"] / t, dim=-1)
        p = F.log_softmax(out["teacher_logits"] / t, dim=-1)
        return F.kl_div(s, p, log_target=True, reduction="batchmean") * t * t


@LOSSES.register("feature_mse")
class FeatureMSE(nn.Module):
    """FitNets-style hint on embeddings: ``|| l2norm(W s) - l2norm(t) ||^2`` per sample, batch mean.

    ``W`` is a learned projection from the student's width to the teacher's (identity when the
    widths match); it is part of the loss, not of the deployed student. On unit vectors the
    squared distance equals ``2 - 2 cos(Ws, t)``.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        s = F.normalize(self.proj(out["student_features"]), dim=-1)
        t = F.normalize(out["teacher_features"], dim=-1)
        return (s - t).pow(2).sum(dim=-1).mean()


@LOSSES.register("task_ce")
class TaskCE(nn.Module):
    """Cross-entropy on the hard labels, optionally label-smoothed."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(out["student_logits"], out["labels"], label_smoothing=self.label_smoothing)


class DistillationLoss(nn.Module):
    """``alpha * feature + beta * response + gamma * task``; returns ``{"loss", "feature", "response", "task"}``.

    A weight of 0 skips its term entirely (no teacher features needed when ``alpha == 0``).

    Example::

        kd = DistillationLoss(student_dim=320, teacher_dim=256, alpha=1.0, beta=1.0, gamma=0.5, temperature=4.0)
        terms = kd({"student_logits": s, "teacher_logits": t, "student_features": fs,
                    "teacher_features": ft, "labels": y})
        terms["loss"].backward()
    """

    def __init__(self, student_dim: int, teacher_dim: int, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 0.5, temperature: float = 4.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        for name, w in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if w < 0:
                raise ValueError(f"{name} must be >= 0, got {w}")
        self.weights = {"feature": alpha, "response": beta, "task": gamma}
        self.terms = nn.ModuleDict({
            "feature": LOSSES.get("feature_mse")(student_dim, teacher_dim),
            "response": LOSSES.get("response_kl")(temperature),
            "task": LOSSES.get("task_ce")(label_smoothing),
        })

    def forward(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        result: dict[str, torch.Tensor] = {}
        total = out["student_logits"].new_zeros(())
        for name, term in self.terms.items():
            if self.weights[name] == 0:
                continue
            value = term(out)
            result[name] = value.detach()
            total = total + self.weights[name] * value
        result["loss"] = total
        return result
