"""What every exporter provides: ``export`` (model -> file) and ``load`` (file -> callable)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from trainer.common.io import EgoedgeError

# A loaded artifact: float32 inputs in, float32 outputs out (quantisation handled inside).
Session = Callable[[list[np.ndarray]], list[np.ndarray]]


class Exporter(Protocol):
    """One backend. ``format`` is the manifest's format name, ``ext`` the file extension."""

    format: str
    ext: str
    precisions: tuple[str, ...]

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str) -> dict:
        """Write the artifact to ``path``; return backend details for the manifest."""
        ...

    def load(self, path: Path, threads: int | None = None) -> Session:
        """Load the artifact for inference."""
        ...


class ExportError(EgoedgeError):
    """An artifact could not be produced; the message names the backend and the cause."""


def export_ready(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode with timm's fused attention switched off.

    Fused scaled-dot-product attention lowers to a boolean-mask op chain that delegates
    cannot take; the explicit matmul/softmax path computes the same function and lowers whole.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model
