"""ExecuTorch ``.pte`` through ``executorch.runtime`` with the XNNPACK delegate."""

from __future__ import annotations

from pathlib import Path

from bench.runners.registry import RUNNERS
from edge.exporters import EXPORTERS, Session


class ExecuTorchRunner:
    format = "executorch"
    runtime = "executorch-xnnpack"

    def open(self, target: Path, threads: int) -> Session:
        return EXPORTERS.get("executorch").load(Path(target), threads=threads)


RUNNERS.register("executorch")(ExecuTorchRunner())
