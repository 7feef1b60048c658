"""What ``egoedge run`` and ``egoedge train cbkd`` hand a task's pipeline, and what it gives back."""

from __future__ import annotations

from collections.abc import Callable
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
        _refuse(self.options, names, f"--task {self.task}")


@dataclass(frozen=True)
class RunResult:
    """The report and the files a run wrote (name -> path), in the order worth reading them."""

    report: dict
    files: dict[str, Path]


@dataclass(frozen=True)
class CBKDRequest:
    """``egoedge train cbkd``'s options for a checkpoint of the pipeline's task; unset options are ``None``."""

    checkpoint: Path
    out: Path
    task: str
    preset: str = "quick"
    options: dict = field(default_factory=dict)  # config, min_ratio, max_ratio, finetune_epochs, data

    def refuse(self, *names: str) -> None:
        """Fail on any of ``names`` the user set: this task's compression does not use them."""
        _refuse(self.options, names, f"{self.task} checkpoints")


@dataclass(frozen=True)
class Pipeline:
    """A task's application flows: the whole ``egoedge run``, and ``egoedge train cbkd`` of one checkpoint.

    ``cbkd`` returns the compressed checkpoint's path and the CBKD summary (its stage table's source).
    """

    run: Callable[..., RunResult]
    cbkd: Callable[..., tuple[Path, dict]]


def _refuse(options: dict, names: tuple[str, ...], what: str) -> None:
    given = [n for n in names if options.get(n) is not None]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise EgoedgeError(f"{flags} does not apply to {what}")
