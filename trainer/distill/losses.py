"""Distillation loss terms (a registry) and the combined student objective.

Each term maps a dict of model outputs to a scalar. The combined objective follows the
CLIP -> MobileViT recipe: ``L = alpha * L_feature + beta * L_response + gamma * L_task``,
plus ``delta * L_hint`` when intermediate-layer hints are distilled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from egoedge.trainer.common.registry import Registry

LOSSES: Registry = Registry("distillation loss")


def _check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


@LOSSES.register("response_kl")
class ResponseKL(nn.Module):
    """Hinton et al. 2015: ``temperature**2 * KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean.

    The ``T**2`` factor keeps the gradient scale independent of the temperature.
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        t = self.temperature
        s = F.log_softmax(out["student_logits"] / t, dim=-1)
        p = F.log_softmax(out["teacher_logits"] / t, dim=-1)
        return F.kl_div(s, p, log_target=True, reduction="batchmean") * t * t


@LOSSES.register("topk_kl")
class TopKKL(nn.Module):
    """Top-K KD: ``T**2 * KL`` over the teacher's ``top_k`` classes plus one "rest" bucket, batch mean.

    For large label spaces (Ego4D's thousands of verb-noun pairs) the teacher's tail is noise;
    keeping its ``K`` most likely classes and lumping the remaining mass into one bin distils
    the ranking that matters. Both distributions are coarsened the same way, so with
    ``top_k`` equal to the number of classes the rest bucket is empty and this is exactly
    :class:`ResponseKL`.
    """

    def __init__(self, temperature: float = 4.0, top_k: int = 5) -> None:
        super().__init__()
        _check_temperature(temperature)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.temperature, self.top_k = temperature, top_k

    def _coarse_log_probs(self, logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``(B, K+1)`` log-probabilities: the classes in ``idx`` then the rest."""
        logp = F.log_softmax(logits / self.temperature, dim=-1)
        kept = logp.gather(-1, idx)
        rest = logp.scatter(-1, idx, float("-inf")).logsumexp(dim=-1, keepdim=True)  # -inf when nothing is left
        return torch.cat([kept, rest], dim=-1)

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        t_logits = out["teacher_logits"]
        k = min(self.top_k, t_logits.shape[-1])
        idx = t_logits.topk(k, dim=-1).indices
        p = self._coarse_log_probs(t_logits, idx)
        q = self._coarse_log_probs(out["student_logits"], idx)
        # 0 * log 0 = 0: an empty rest bucket contributes nothing (and no NaN gradient).
        pe = p.exp()
        terms = torch.where(pe > 0, pe * (p - q.clamp_min(-1e4)), torch.zeros_like(pe))
        return terms.sum(dim=-1).mean() * self.temperature**2


class _Projected(nn.Module):
    """A learned projection from the student's width to the teacher's (identity when equal).

    It belongs to the loss, not to the deployed student.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    def pair(self, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised ``(W s, t)``."""
        s = F.normalize(self.proj(out["student_features"]), dim=-1)
        return s, F.normalize(out["teacher_features"], dim=-1)


@LOSSES.register("feature_mse")
class FeatureMSE(_Projected):
    """FitNets-style hint on embeddings: ``|| l2norm(W s) - l2norm(t) ||^2`` per sample, batch mean.

    On unit vectors the squared distance equals ``2 - 2 cos(Ws, t)``.
    """

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        s, t = self.pair(out)
        return (s - t).pow(2).sum(dim=-1).mean()


@LOSSES.register("feature_cosine")
class FeatureCosine(_Projected):
    """Cosine embedding distillation (CLIP-KD style): ``1 - cos(W s, t)``, batch mean."""

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        s, t = self.pair(out)
        return (1.0 - (s * t).sum(dim=-1)).mean()


def as_feature_map(x: torch.Tensor) -> torch.Tensor:
    """An intermediate activation as ``(N, C, H, W)``.

    Conv maps pass through; ViT token sequences ``(N, L, D)`` drop their prefix tokens (class
    token) and fold the ``g*g`` patch tokens into a grid; ``(N, D)`` vectors become ``1x1`` maps.
    """
    if x.dim() == 4:
        return x
    if x.dim() == 2:
        return x[:, :, None, None]
    if x.dim() == 3:
        n, length, d = x.shape
        g = math.isqrt(length)
        prefix = length - g * g
        if prefix > 4:  # a square grid plus at most a class token and a few register tokens
            raise ValueError(f"cannot fold {length} tokens into a square patch grid")
        return x[:, prefix:].transpose(1, 2).reshape(n, d, g, g)
    raise ValueError(f"cannot use a {x.dim()}-d activation of shape {tuple(x.shape)} as a hint")


@LOSSES.register("hint_mse")
class HintMSE(nn.Module):
    """FitNets (Romero et al. 2015) intermediate hints: ``mean_i || r_i(s_i) - t_i ||^2``.

    ``channels`` lists ``(student_channels, teacher_channels)`` per hooked layer pair; ``r_i``
    is a learned 1x1 conv regressor between them. Both maps are average-pooled to the coarser
    of the two grids and the teacher map is standardised per channel over the batch, so layers
    of different scale weigh alike.
    """

    def __init__(self, channels: list[tuple[int, int]]) -> None:
        super().__init__()
        if not channels:
            raise ValueError("hint_mse needs at least one (student, teacher) layer pair")
        self.regressors = nn.ModuleList([nn.Conv2d(cs, ct, 1) for cs, ct in channels])

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        s_maps, t_maps = out["student_hints"], out["teacher_hints"]
        n = len(self.regressors)
        if len(s_maps) != n or len(t_maps) != n:
            raise ValueError(f"expected {n} hint pairs, got {len(s_maps)} student / {len(t_maps)} teacher")
        total = s_maps[0].new_zeros(())
        for reg, s, t in zip(self.regressors, s_maps, t_maps, strict=True):
            s, t = reg(as_feature_map(s)), as_feature_map(t.detach())
            size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
            s, t = F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
            t = (t - t.mean(dim=(0, 2, 3), keepdim=True)) / (t.std(dim=(0, 2, 3), keepdim=True) + 1e-5)
            total = total + (s - t).pow(2).mean()
        return total / n


@LOSSES.register("task_ce")
class TaskCE(nn.Module):
    """Cross-entropy on the hard labels, optionally label-smoothed."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(out["student_logits"], out["labels"], label_smoothing=self.label_smoothing)


RESPONSE_LOSSES = ("response_kl", "topk_kl")
FEATURE_LOSSES = ("feature_mse", "feature_cosine")


class DistillationLoss(nn.Module):
    """``alpha * feature + beta * response + gamma * task + delta * hint``; returns the loss and each term.

    A weight of 0 skips its term entirely (no teacher features needed when ``alpha == 0``).
    ``response`` is ``response_kl`` or ``topk_kl``; ``feature`` is ``feature_mse`` or
    ``feature_cosine``; ``hint_channels`` lists ``(student, teacher)`` channels per hooked layer pair.

    Example::

        kd = DistillationLoss(student_dim=320, teacher_dim=256, alpha=1.0, beta=1.0, gamma=0.5, temperature=4.0)
        terms = kd({"student_logits": s, "teacher_logits": t, "student_features": fs,
                    "teacher_features": ft, "labels": y})
        terms["loss"].backward()
    """

    def __init__(self, student_dim: int, teacher_dim: int, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 0.5, temperature: float = 4.0, label_smoothing: float = 0.0,
                 response: str = "response_kl", top_k: int = 5, feature: str = "feature_mse",
                 hint_channels: list[tuple[int, int]] | None = None, delta: float = 1.0) -> None:
        super().__init__()
        for name, w in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("delta", delta)):
            if w < 0:
                raise ValueError(f"{name} must be >= 0, got {w}")
        if response not in RESPONSE_LOSSES:
            raise ValueError(f"unknown response loss '{response}'; valid: {', '.join(RESPONSE_LOSSES)}")
        if feature not in FEATURE_LOSSES:
            raise ValueError(f"unknown feature loss '{feature}'; valid: {', '.join(FEATURE_LOSSES)}")
        response_kwargs = {"top_k": top_k} if response == "topk_kl" else {}
        self.weights = {"feature": alpha, "response": beta, "task": gamma, "hint": delta if hint_channels else 0.0}
        terms = {
            "feature": LOSSES.get(feature)(student_dim, teacher_dim),
            "response": LOSSES.get(response)(temperature, **response_kwargs),
            "task": LOSSES.get("task_ce")(label_smoothing),
        }
        if hint_channels:
            terms["hint"] = LOSSES.get("hint_mse")(hint_channels)
        self.terms = nn.ModuleDict(terms)

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
