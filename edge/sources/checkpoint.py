"""An egoedge checkpoint (``runs/quick/student.pt``): exported with its own data, labels, task and gate."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from egoedge.edge.sources.base import ModelSource
from egoedge.edge.sources.registry import MODEL_SOURCES


class CheckpointSource(ModelSource):
    name = "checkpoint"
    example = "runs/quick/student.pt"
    checkpoint = True

    def matches(self, spec: str) -> bool:
        return Path(spec).suffix in (".pt", ".pth")

    def load(self, spec: str, weights: str | None) -> nn.Module:
        from egoedge.trainer.checkpoint import load_model

        return load_model(spec)[0]

    def stem(self, spec: str) -> str:
        return Path(spec).stem


MODEL_SOURCES.register("checkpoint")(CheckpointSource())
