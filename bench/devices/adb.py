"""The adb tool: which binary, running it with a timeout, and parsing what it prints.

Which ``adb``: ``$EGOEDGE_ADB`` if set, else one on ``PATH`` (Android platform-tools, Debian's
``adb``), else the one inside the ``adbutils`` wheel that egoedge installs, so that phones work
right after ``pip install``. Every call has a timeout. Shared by discovery (``android.py``) and
the on-device bench (``on_device/android.py``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

from egoedge.bench.devices.base import run_tool

TIMEOUT_S = 15.0


def adb_source() -> tuple[str, str]:
    """``(adb binary, where it came from)``: ``EGOEDGE_ADB``, ``PATH`` or the ``adbutils`` wheel."""
    if env := os.environ.get("EGOEDGE_ADB"):
        return env, "EGOEDGE_ADB"
    if found := shutil.which("adb"):
        return found, "PATH"
    bundled = bundled_adb()
    return (str(bundled), "adbutils wheel") if bundled else ("adb", "PATH")


def bundled_adb() -> Path | None:
    """The adb binary the ``adbutils`` wheel carries (Linux x86-64, macOS, Windows), if it is installed."""
    spec = importlib.util.find_spec("adbutils")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("adb", "adb.exe"):
            path = Path(folder) / "binaries" / name
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def adb_binary() -> str:
    return adb_source()[0]


def adb(*args: str, serial: str | None = None, timeout: float | None = None) -> str:
    """Run ``adb [-s SERIAL] ARGS`` (default timeout ``TIMEOUT_S``); returns stdout."""
    return run_tool([adb_binary(), *(["-s", serial] if serial else []), *args], timeout or TIMEOUT_S)


def parse_devices(text: str) -> list[dict]:
    """Rows of ``adb devices -l``: serial, state, and the ``key:value`` fields (model, product, ...)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*", "adb server", "adb: ")):
            continue
        serial, _, rest = line.partition(" ") if "\t" not in line else line.partition("\t")
        rest = rest.strip()
        state = "no permissions" if rest.startswith("no permissions") else rest.split()[0] if rest else "unknown"
        fields = dict(kv.split(":", 1) for kv in rest.split() if ":" in kv and not kv.startswith("("))
        rows.append({"serial": serial, "state": state, **fields})
    return rows


def parse_getprop(text: str) -> dict[str, str]:
    """``adb shell getprop`` lines ``[key]: [value]`` as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, flags=re.MULTILINE))
