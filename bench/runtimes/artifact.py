"""Exported artifacts run through their exporter's own loader, so bench and parity gate share one code path."""

from __future__ import annotations

from pathlib import Path

from egoedge.bench.runtimes.registry import RUNTIMES
from egoedge.edge.exporters import EXPORTERS, Session
from egoedge.trainer.common.io import EgoedgeError


class ArtifactRuntime:
    """Runs one exporter's artifacts on the host; ``available()`` says why not where it cannot."""

    def __init__(self, format: str, runtime: str) -> None:
        self.format, self.runtime = format, runtime

    def available(self) -> str | None:
        return EXPORTERS.get(self.format).unavailable()

    def open(self, target: Path, threads: int | None, options: dict | None = None) -> Session:
        try:
            return EXPORTERS.get(self.format).load(Path(target), threads=threads, **(options or {}))
        except TypeError as e:
            if options and "unexpected keyword" in str(e):
                raise EgoedgeError(f"{self.format} runtime takes no options {sorted(options)}") from None
            raise


for _format in EXPORTERS.keys():  # a new exporter is benchmarked by being registered
    RUNTIMES.register(_format)(ArtifactRuntime(_format, EXPORTERS.get(_format).runtime))
