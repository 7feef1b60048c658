"""What every CLI command shares: the consoles, rich progress bars and the one-line failure."""

from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Every run flow has these presets (a test holds each flow's table to them); kept here, not imported
# from the flows, so that `egoedge --help` does not load PyTorch.
PRESET_NAMES = ("mini", "quick", "full")

console = Console()
Preset = Enum("Preset", {name: name for name in PRESET_NAMES}, type=str)
err_console = Console(stderr=True)


class RichProgress:
    """Turns the library's ``progress(stage, done, total, info)`` calls into rich progress bars."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
                            transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int, info: dict) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total, info="")
        text = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
        self.bar.update(self.tasks[stage], completed=done, total=total, info=text)


def parse_backends(to: str) -> tuple[str, ...]:
    """``--to "executorch, onnx"`` as backend names, each checked against the exporter registry."""
    from edge.exporters import EXPORTERS
    from trainer.common.io import EgoedgeError

    formats = tuple(f.strip() for f in to.split(",") if f.strip())
    for f in formats:
        if f not in EXPORTERS:
            raise EgoedgeError(f"unknown backend '{f}' in --to; valid: {', '.join(EXPORTERS.keys())}")
    return formats


def quiet_third_party() -> None:
    """Keep third-party notices out of the terminal: Python warnings, library logging below ERROR, and what
    native runtimes write straight to file descriptor 2 (XNNPACK, LiteRT, ExecuTorch log lines).

    egoedge's own stderr (errors, progress bars) keeps a duplicate of the real descriptor. Called by
    the console script unless ``--verbose``; never inside tests, whose runner captures ``sys.stderr``.
    """
    import logging
    import os
    import sys
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = real
    err_console.file = real


def fail(message: str) -> None:
    """Print one clear error line and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
