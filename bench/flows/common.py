"""Pieces every run flow shares: the run folder check and the event log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from trainer.common.io import EgoedgeError


class RunLog:
    """Append-only ``log.jsonl``: one JSON object per event, flushed as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.perf_counter()

    def __call__(self, event: str, **fields) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": round(time.perf_counter() - self.t0, 3), "event": event, **fields}) + "\n")


def check_out_dir(out: Path) -> None:
    """Create the run folder, or fail in one line if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EgoedgeError(f"cannot create run folder {out}: {e.strerror}; choose another --out") from None
    if not os.access(out, os.W_OK):
        raise EgoedgeError(f"run folder {out} is not writable; choose another --out")
