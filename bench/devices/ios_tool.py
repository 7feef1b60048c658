"""The pymobiledevice3 command, resolved once for discovery (``ios.py``) and the bench (``on_device/ios.py``)."""

from __future__ import annotations

import importlib.util
import shutil
import sys


def ios_tool() -> list[str] | None:
    """The pymobiledevice3 command: on PATH, else the installed package run by this Python (a venv's
    scripts need not be on PATH)."""
    if found := shutil.which("pymobiledevice3"):
        return [found]
    if importlib.util.find_spec("pymobiledevice3") is not None:
        return [sys.executable, "-m", "pymobiledevice3"]
    return None
