"""Ensembles of frozen teachers' logits: a plain mean or learned weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENSEMBLE_MODES = ("mean", "learned")


class LogitEnsemble(nn.Module):
    """``sum_i w_i z_i`` over ``n`` teachers' logits, ``w = softmax(v)``.

    ``mean`` keeps ``v = 0`` (equal weights). ``learned`` fits ``v`` once, before distillation,
    by minimising the ensemble's cross-entropy on the training labels (the teachers are frozen,
    so this is a tiny convex-ish problem on cached logits), so a weak modality gets a small
    weight instead of dragging the ensemble down.
    """

    def __init__(self, n: int, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"unknown ensemble mode '{mode}'; valid: {', '.join(ENSEMBLE_MODES)}")
        if n < 1:
            raise ValueError("an ensemble needs at least one teacher")
        self.mode = mode
        self.v = nn.Parameter(torch.zeros(n), requires_grad=False)

    @property
    def weights(self) -> torch.Tensor:
        """The teachers' weights (sum to 1)."""
        return self.v.softmax(0)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` ``(n, B, C)`` -> ensembled ``(B, C)``."""
        return torch.einsum("n,nbc->bc", self.weights, logits)

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, steps: int = 200, lr: float = 0.1) -> list[float]:
        """Fit the weights to ``labels`` (only in ``learned`` mode); returns the weights."""
        if self.mode == "learned":
            v = torch.zeros_like(self.v, requires_grad=True)
            opt = torch.optim.Adam([v], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(torch.einsum("n,nbc->bc", v.softmax(0), logits), labels).backward()
                opt.step()
            self.v.data.copy_(v.detach())
        return [round(float(w), 4) for w in self.weights]
