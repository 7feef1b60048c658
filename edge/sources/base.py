"""What a model source is: a kind of ``MODEL`` argument and how to turn it into an ``nn.Module``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from torch import nn


class ModelSource(ABC):
    """One kind of ``MODEL`` argument (a file suffix or a ``prefix:``) and how it becomes a module in eval mode."""

    name: str
    example: str  # shown in --help and in the error for a MODEL no source takes
    checkpoint: bool = False  # an egoedge checkpoint: its own data, labels and task come with it

    @abstractmethod
    def matches(self, spec: str) -> bool:
        """Whether ``spec`` is this kind of model."""

    @abstractmethod
    def load(self, spec: str, weights: str | None) -> nn.Module:
        """The model of ``spec`` (``weights``: a weights file to load into it, strictly)."""

    def stem(self, spec: str) -> str:
        """The artifacts' file-name stem."""
        return spec.rsplit("/", 1)[-1].rsplit(":", 1)[-1].split(".")[0] or "model"

    def default_out(self, spec: str) -> Path:
        """Where ``egoedge export`` writes without ``--out``."""
        if self.checkpoint:
            return Path(spec).parent / "export"
        return Path("export") / spec.replace(":", "_").replace("/", "_")
