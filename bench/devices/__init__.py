"""Devices, one module per kind; importing this package registers all of them."""

from egoedge.bench.devices.base import DeviceError, DeviceInfo, DeviceKind
from egoedge.bench.devices.registry import DEVICES
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, __path__, skip=("base", "registry", "on_device", "ios_tool"))


def device_kinds() -> list[str]:
    """Every ``--device`` kind, host first."""
    return sorted(DEVICES.keys(), key=lambda k: k != "host")


def farms() -> list[str]:
    """The kinds that are device farms (hosted devices behind a service): listed only on request."""
    return [k for k in device_kinds() if DEVICES.get(k).farm]


def device_choices() -> str:
    """``host, android[:SERIAL], emulator[:SERIAL], ios[:UDID]``: the ``--device`` forms, from the registry."""
    return ", ".join(k + (f"[:{i}]" if (i := DEVICES.get(k).id_name) else "") for k in device_kinds())


__all__ = ["DEVICES", "DeviceError", "DeviceInfo", "DeviceKind", "device_choices", "device_kinds", "farms"]
