"""What machine the numbers were taken on."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict:
    """The ``machine`` block of report.json."""
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "torch": torch.__version__}
