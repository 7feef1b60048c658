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
        self.runtime_modules = tuple(getattr(EXPORTERS.get(format), "runtime_modules", ()))

    def available(self) -> str | None:
        return EXPORTERS.get(self.format).unavailable()

    def open(self, target: Path, threads: int | None, options: dict | None = None) -> Session:
        return self._load(EXPORTERS.get(self.format).load, Path(target), threads, options)

    def open_in_turns(self, targets: list[Path], threads: int | None, options: dict | None = None) -> list[Session]:
        exporter = EXPORTERS.get(self.format)
        together = getattr(exporter, "load_in_turns", None)  # optional: a runtime whose sessions share threads
        if together is None:
            return [self.open(t, threads, options) for t in targets]
        return self._load(together, [Path(t) for t in targets], threads, options)

    def _load(self, load, target, threads: int | None, options: dict | None):
        try:
            return load(target, threads=threads, **(options or {}))
        except TypeError as e:
            if options and "unexpected keyword" in str(e):
                raise EgoedgeError(f"{self.format} runtime takes no options {sorted(options)}") from None
            raise


for _format in EXPORTERS.keys():  # a new exporter is benchmarked by being registered
    RUNTIMES.register(_format)(ArtifactRuntime(_format, EXPORTERS.get(_format).runtime))
