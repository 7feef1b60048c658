"""What ``egoedge run`` hands a task's flow, and what the flow gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError


@dataclass(frozen=True)
class RunRequest:
    """``egoedge run``'s options: the preset, the task, where to write, and the options the user set.

    ``options`` holds only what was given (``--recipe``, ``--film`` ...); a flow refuses those it
    has no use for, so an option never silently does nothing.
    """

    preset: str
    task: str
    out: Path | None = None
    data: str = "synthetic"
    config: Path | None = None
    options: dict = field(default_factory=dict)

    def refuse(self, *names: str) -> None:
        """Fail on any of ``names`` the user set: this task's flow does not use them."""
        given = [n for n in names if self.options.get(n) is not None]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise EgoedgeError(f"{flags} does not apply to --task {self.task}")


@dataclass(frozen=True)
class RunResult:
    """The report and the files a run wrote (name -> path), in the order worth reading them."""

    report: dict
    files: dict[str, Path]
