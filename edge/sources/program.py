"""A ``torch.export`` program saved with ``torch.export.save`` (``model.pt2``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from egoedge.edge.sources.base import ModelSource
from egoedge.edge.sources.registry import MODEL_SOURCES
from egoedge.trainer.common.io import EgoedgeError, first_line


class Program(nn.Module):
    """An exported program's module, held so that ``.eval()`` returns a module (the patched one returns None)."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, *xs):
        if not xs or xs[0].shape[0] == 1:
            return self.program(*xs)
        # A program is exported at batch 1: a batch runs sample by sample.
        outs = [self.program(*(x[i:i + 1] for x in xs)) for i in range(xs[0].shape[0])]
        if isinstance(outs[0], tuple | list):
            return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))
        return torch.cat(outs)


class ProgramSource(ModelSource):
    name = "program"
    example = "model.pt2"

    def matches(self, spec: str) -> bool:
        from egoedge.trainer.quantize.program import program_record

        # egoedge's own PTQ programs carry a record and are the ``ptq`` source's
        return Path(spec).suffix == ".pt2" and program_record(spec) is None

    def load(self, spec: str, weights: str | None) -> nn.Module:
        if weights is not None:
            raise EgoedgeError("--weights does not apply to a .pt2 program: its weights are inside it")
        if not Path(spec).is_file():
            raise EgoedgeError(f"program not found: {spec}")
        from torchao.quantization.pt2e import allow_exported_model_train_eval

        try:
            module = torch.export.load(spec).module()
        except Exception as e:  # noqa: BLE001 - not a program, another torch's, damaged
            raise EgoedgeError(f"{spec} is not a readable torch.export program (torch.export.save): "
                               f"{first_line(e)[:200]}") from None
        allow_exported_model_train_eval(module)  # else eval() on an exported module raises
        return Program(module)

    def stem(self, spec: str) -> str:
        return Path(spec).stem


MODEL_SOURCES.register("program")(ProgramSource())
