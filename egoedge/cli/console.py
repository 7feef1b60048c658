"""What every CLI command shares: the consoles, rich progress bars and the one-line failure."""

from __future__ import annotations

import io
import re
from enum import Enum

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from egoedge.trainer.common.io import EgoedgeError

# Every run pipeline has these presets (a test holds each pipeline's table to them); kept here, not imported
# from the pipelines, so that `egoedge --help` does not load PyTorch.
PRESET_NAMES = ("mini", "quick", "full")

# --data's help (kept literal so that `egoedge --help` does not import the sources); `egoedge data sources`
# lists the registry itself.
DATA_HELP = ("Dataset: synthetic (generated), folder:PATH (PATH/<class>/<clip>.mp4 or PATH/labels.csv), "
             "epic100:PATH (EPIC-KITCHENS-100 CSVs + videos); `egoedge data sources` lists all.")

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
    from egoedge.edge.exporters import EXPORTERS
    from egoedge.trainer.common.io import EgoedgeError

    formats = tuple(f.strip() for f in to.split(",") if f.strip())
    for f in formats:
        if f not in EXPORTERS:
            raise EgoedgeError(f"unknown backend '{f}' in --to; valid: {', '.join(EXPORTERS.keys())}")
    return formats


# Log lines native runtimes print, some straight to a file descriptor, some through Python's sys.stderr
# (ExecuTorch's pybind sink): "[cpuinfo_utils.cpp:71] ...", glog/absl "W1129 18:36:28.27 ...", LiteRT's "INFO: ...".
_NATIVE_LOG = re.compile(r"^(\[[\w./-]+\.(cpp|cc|c|h|hpp|mm):\d+\]"  # ExecuTorch
                         r"|[IWEF]\d{4} \d\d:\d\d:\d\d"  # glog / absl / torch's logging
                         r"|INFO: |WARNING: All log messages)")  # LiteRT


class _DropNativeLogs(io.TextIOBase):
    """A text stream that passes whole lines on to ``target`` unless they are a native runtime's log line."""

    def __init__(self, target) -> None:
        self.target, self.pending = target, ""

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            if not _NATIVE_LOG.match(line):
                self.target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def fileno(self) -> int:  # rich points a closed pipe (`egoedge --help | head`) at /dev/null through it
        return self.target.fileno()

    @property
    def encoding(self) -> str:
        return self.target.encoding


def quiet_third_party() -> None:
    """Keep third-party notices out of the terminal: Python warnings, library logging up to WARNING, and the
    log lines native runtimes write (to file descriptors 1 and 2, or through ``sys.stderr``).

    egoedge's own output (tables, errors, progress bars) goes to duplicates of the real descriptors.
    Called by the console script unless ``--verbose``; never inside tests, whose runner captures
    ``sys.stdout`` and ``sys.stderr``.
    """
    import logging
    import os
    import sys
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # also loggers with their own handlers and levels (torch's)
    for fd, name, rich in ((1, "stdout", console), (2, "stderr", err_console)):
        stream = getattr(sys, name)
        real = os.fdopen(os.dup(fd), "w", buffering=1, encoding=stream.encoding or "utf-8", errors="replace")
        stream.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        setattr(sys, name, _DropNativeLogs(real))  # what other libraries print still shows, their log lines do not
        rich.file = real


def moved(old: str, new: str) -> None:
    """The note a moved command prints before doing its work (it still answers, hidden from the help)."""
    err_console.print(f"note: `{old}` moved to `{new}`; the old spelling still works for now", highlight=False,
                      soft_wrap=True)


def fail(message: str) -> None:
    """Print one clear error line and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


class OneLineErrors(TyperGroup):
    """The root command group: an ``EgoedgeError`` from any command (sub-groups included) is one ``error:`` line.

    The one place the library's errors meet the terminal; commands raise, they never catch to print.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EgoedgeError as e:
            fail(str(e))
