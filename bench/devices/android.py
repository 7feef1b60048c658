"""Android phones and emulators over adb: discovery, properties, and the ``android`` and ``emulator`` kinds."""

from __future__ import annotations

from egoedge.bench.devices.adb import adb, adb_source, parse_devices, parse_getprop
from egoedge.bench.devices.base import DeviceError, DeviceInfo, DeviceKind
from egoedge.bench.devices.registry import DEVICES

SUPPORTED_ABIS = ("arm64-v8a", "x86_64")  # what the exported XNNPACK/LiteRT kernels are built for
_STATE_HELP = {
    "unauthorized": "accept the 'Allow USB debugging' prompt on the phone",
    "offline": "reconnect the cable or restart the emulator (adb reports it offline)",
    "no permissions": "fix udev rules / plugdev group so adb may open the USB device",
    "bootloader": "the device is in the bootloader; boot Android",
    "recovery": "the device is in recovery; boot Android",
    "sideload": "the device is in sideload mode; boot Android",
}


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
