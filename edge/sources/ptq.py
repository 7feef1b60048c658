"""A PTQ program of an egoedge checkpoint (``runs/quick/student_int8.pt2`` with its ``.json``), lowered as it is.

Its int8 artifacts are that program in each backend; its fp32 ones come from the checkpoint it
was quantized from, whose data, labels, task and gate come along (:func:`edge.export.export_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from egoedge.edge.sources.base import ModelSource
from egoedge.edge.sources.registry import MODEL_SOURCES
from egoedge.trainer.quantize.program import program_record


class PTQSource(ModelSource):
    name = "ptq"
    example = "runs/quick/student_int8.pt2 (from egoedge quantize)"
    checkpoint = True

    def matches(self, spec: str) -> bool:
        return Path(spec).suffix == ".pt2" and program_record(spec) is not None

    def load(self, spec: str, weights: str | None) -> nn.Module:
        from egoedge.trainer.quantize.program import load_program

        return load_program(spec)

    def stem(self, spec: str) -> str:
        return Path(spec).stem

    def default_out(self, spec: str) -> Path:
        return Path(spec).parent / f"export_{Path(spec).stem}"


MODEL_SOURCES.register("ptq")(PTQSource())
