"""Android phones and emulators over adb: discovery and properties.

Which ``adb``: ``$EGOEDGE_ADB`` if set, else one on ``PATH`` (Android platform-tools, Debian's
``adb``), else the one inside the ``adbutils`` wheel that egoedge installs, so that phones work
right after ``pip install``. Every call has a timeout.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

from egoedge.bench.devices.base import DeviceError, DeviceInfo, DeviceKind, run_tool
from egoedge.bench.devices.registry import DEVICES

TIMEOUT_S = 15.0
SUPPORTED_ABIS = ("arm64-v8a", "x86_64")  # what the exported XNNPACK/LiteRT kernels are built for
_STATE_HELP = {
    "unauthorized": "accept the 'Allow USB debugging' prompt on the phone",
    "offline": "reconnect the cable or restart the emulator (adb reports it offline)",
    "no permissions": "fix udev rules / plugdev group so adb may open the USB device",
    "bootloader": "the device is in the bootloader; boot Android",
    "recovery": "the device is in recovery; boot Android",
    "sideload": "the device is in sideload mode; boot Android",
}


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


def describe(row: dict, props: dict[str, str] | None) -> DeviceInfo:
    """A device row plus its properties, judged usable or not."""
    serial, state = row["serial"], row["state"]
    emulator = serial.startswith("emulator-") or (props or {}).get("ro.kernel.qemu") == "1"
    name = (props or {}).get("ro.product.model") or row.get("model", "").replace("_", " ") or serial
    details = {"emulator": emulator}
    if state != "device":
        return DeviceInfo("android", serial, name, state, False,
                          _STATE_HELP.get(state, f"adb reports state '{state}'"), details)
    props = props or {}
    abi = props.get("ro.product.cpu.abi", "")
    details.update({"abi": abi, "android": props.get("ro.build.version.release"),
                    "sdk": props.get("ro.build.version.sdk"), "soc": props.get("ro.soc.model")})
    if abi not in SUPPORTED_ABIS:
        return DeviceInfo("android", serial, name, state, False,
                          f"ABI '{abi}' is not one of {', '.join(SUPPORTED_ABIS)}", details)
    return DeviceInfo("android", serial, name, state, True, None, details)


def discover_android() -> list[DeviceInfo]:
    """Every phone and emulator adb knows, or one unusable entry saying why none can be seen."""
    binary, source = adb_source()
    tool = {"adb": f"{binary} ({source})"}
    try:
        rows = parse_devices(adb("devices", "-l"))
    except DeviceError as e:
        return [DeviceInfo("android", "-", "adb", "unavailable", False,
                           f"{e}; install Android platform-tools (or Debian's `adb`) or set EGOEDGE_ADB", tool)]
    if not rows:
        return [DeviceInfo("android", "-", "adb", "no device", False,
                           f"adb ({source}) sees no phone or emulator: plug one in with USB debugging on, or start "
                           "an emulator", tool)]
    found = []
    for row in rows:
        props = None
        if row["state"] == "device":
            try:
                props = parse_getprop(adb("shell", "getprop", serial=row["serial"]))
            except DeviceError as e:
                found.append(DeviceInfo("android", row["serial"], row.get("model", row["serial"]), "error", False,
                                        str(e)))
                continue
        found.append(describe(row, props))
    for d in found:
        d.details.update(tool)
    return found




def is_emulator(d: DeviceInfo) -> bool:
    """An emulator, or the one placeholder row that says why adb sees nothing."""
    return bool(d.details.get("emulator")) or (not d.usable and d.id == "-")


class Android(DeviceKind):
    """Phones and emulators over adb."""

    id_name = "SERIAL"

    def discover(self) -> list[DeviceInfo]:
        return discover_android()

    def bench(self, device: DeviceInfo, cfg, tools: dict):
        from egoedge.bench.devices.on_device.android import AndroidBench

        return AndroidBench(device, cfg, tools)


class Emulator(Android):
    """The Android emulators adb knows (a view of ``android``: ``egoedge devices`` lists them there)."""

    base = "android"

    def discover(self) -> list[DeviceInfo]:
        return [d for d in discover_android() if is_emulator(d)]

    def keep(self, device: DeviceInfo) -> bool:
        return is_emulator(device)


DEVICES.register("android")(Android())
DEVICES.register("emulator")(Emulator())
