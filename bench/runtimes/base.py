"""A host runtime opens a benchmark target (an eager model or an artifact file) as a session."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from egoedge.edge.exporters import Session


class HostRuntime(Protocol):
    """``format`` names the report's format column, ``runtime`` the engine that executes it, ``runtime_modules``
    what ``open`` imports (the bench's fork server imports them once for every isolated target)."""

    format: str
    runtime: str
    runtime_modules: tuple[str, ...]

    def available(self) -> str | None:
        """Why this host cannot run the format (``None`` if it can)."""
        ...

    def open(self, target: torch.nn.Module | Path, threads: int | None, options: dict | None = None) -> Session:
        """Load ``target`` ready for inference with ``threads`` threads and runtime ``options``."""
        ...

    def open_in_turns(self, targets: list[Path], threads: int | None, options: dict | None = None) -> list[Session]:
        """Load ``targets`` to run one after another in this process, sharing the runtime's threads where it can."""
        ...
