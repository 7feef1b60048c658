"""The progress callback every long-running library function accepts; the CLI draws bars from it."""

from __future__ import annotations

from collections.abc import Callable

# progress(stage, done, total, info): library functions report, they never print.
Progress = Callable[[str, int, int, dict], None]


def no_progress(stage: str, done: int, total: int, info: dict) -> None:
    """The default callback: report nothing."""
