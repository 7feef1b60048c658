"""The adb tool: which binary, running it with a timeout, and parsing what it prints.

Which ``adb``: ``$EGOEDGE_ADB`` if set, else one on ``PATH`` (Android platform-tools, Debian's
``adb``), else what ``adbutils.adb_path()`` gives (``$ADBUTILS_ADB_PATH``, or the adb inside the
``adbutils`` wheel that egoedge installs), so that phones work right after ``pip install``.
Every call has a timeout. Shared by discovery (``android.py``) and the on-device bench
(``on_device/android.py``).
"""

from __future__ import annotations

import os
import re
import shutil

from egoedge.bench.devices.base import run_tool

TIMEOUT_S = 15.0


def adb_source() -> tuple[str, str]:
    """``(adb binary, where it came from)``: ``EGOEDGE_ADB``, ``PATH`` or the ``adbutils`` wheel."""
    if env := os.environ.get("EGOEDGE_ADB"):
        return env, "EGOEDGE_ADB"
    if found := shutil.which("adb"):
        return found, "PATH"
    try:
        import adbutils

        path = adbutils.adb_path()
    except Exception:  # noqa: BLE001 - not installed, or its AdbError: none found; running "adb" says so
        return "adb", "PATH"
    return path, ("ADBUTILS_ADB_PATH" if os.environ.get("ADBUTILS_ADB_PATH") else "adbutils wheel")


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
