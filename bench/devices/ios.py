"""iPhones: discovery through pymobiledevice3 (any OS, macOS included)."""

from __future__ import annotations

import json
import shutil

from bench.devices.base import DeviceError, DeviceInfo, run_tool
from bench.devices.registry import DEVICES

TIMEOUT_S = 20.0


def parse_pymobiledevice3(text: str) -> list[DeviceInfo]:
    """``pymobiledevice3 usbmux list`` JSON: one entry per paired device."""
    try:
        entries = json.loads(text or "[]")
    except json.JSONDecodeError as e:
        raise DeviceError(f"pymobiledevice3 printed something that is not JSON: {e}") from None
    return [DeviceInfo("ios", e.get("UniqueDeviceID") or e.get("Identifier", "?"),
                       e.get("DeviceName") or e.get("ProductType", "iPhone"), "connected", True, None,
                       {"product": e.get("ProductType"), "ios": e.get("ProductVersion"),
                        "connection": e.get("ConnectionType")}) for e in entries]


@DEVICES.register("ios")
def discover_ios() -> list[DeviceInfo]:
    """Paired iPhones, or one unusable entry saying why none can be seen."""
    try:
        if shutil.which("pymobiledevice3"):
            found = parse_pymobiledevice3(run_tool(["pymobiledevice3", "usbmux", "list"], TIMEOUT_S))
        else:
            raise DeviceError("no iOS tool: pip install pymobiledevice3 (the only iOS discovery egoedge parses)")
    except DeviceError as e:
        return [DeviceInfo("ios", "-", "iOS", "unavailable", False, str(e))]
    return found or [DeviceInfo("ios", "-", "iOS", "no device", False, "no paired iPhone is connected")]


discover_ios.id_name = "UDID"
