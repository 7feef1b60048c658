"""iPhones: discovery through pymobiledevice3 (any OS, macOS included)."""

from __future__ import annotations

import json

from egoedge.bench.devices.base import DeviceError, DeviceInfo, DeviceKind, run_tool_output
from egoedge.bench.devices.ios_tool import ios_tool
from egoedge.bench.devices.registry import DEVICES

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


# What pymobiledevice3 says when no usbmuxd runs (Linux without an iPhone ever plugged in): the tool
# works, nothing is attached.
_NO_USBMUXD = ("usbmuxd", "ConnectionFailedToUsbmuxdError", "No such file or directory")


def discover_ios() -> list[DeviceInfo]:
    """Paired iPhones, or one unusable entry saying why none can be seen."""
    tool = ios_tool()
    if tool is None:
        return [DeviceInfo("ios", "-", "iOS", "unavailable", False,
                           "no iOS tool: pip install pymobiledevice3 (the only iOS discovery egoedge parses)")]
    details = {"tool": " ".join(tool[-3:] if len(tool) > 1 else tool)}
    try:
        out, err = run_tool_output([*tool, "usbmux", "list"], TIMEOUT_S)
        if not out.strip() and any(marker in err for marker in _NO_USBMUXD):  # it logs the error and exits 0
            raise DeviceError(err.strip().splitlines()[-1])
        found = parse_pymobiledevice3(out)
    except DeviceError as e:
        if any(marker in str(e) for marker in _NO_USBMUXD):
            return [DeviceInfo("ios", "-", "iOS", "no device", False,
                               "no iPhone: usbmuxd is not running (it starts when an iPhone is plugged in; "
                               "install Debian's usbmuxd on Linux)", details)]
        return [DeviceInfo("ios", "-", "iOS", "unavailable", False, str(e), details)]
    return found or [DeviceInfo("ios", "-", "iOS", "no device", False, "no paired iPhone is connected", details)]


class IOS(DeviceKind):
    """iPhones through pymobiledevice3."""

    id_name = "UDID"

    def discover(self) -> list[DeviceInfo]:
        return discover_ios()

    def bench(self, device: DeviceInfo, cfg, tools: dict):
        from egoedge.bench.devices.on_device.ios import IOSBench

        return IOSBench(device, cfg, tools)


DEVICES.register("ios")(IOS())
