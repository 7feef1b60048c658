"""The machine egoedge runs on."""

from __future__ import annotations

import os

from egoedge.bench.devices.base import DeviceInfo
from egoedge.bench.devices.registry import DEVICES
from egoedge.bench.machine import cpu_name


@DEVICES.register("host")
def discover_host() -> list[DeviceInfo]:
    """The host CPU: always usable."""
    return [DeviceInfo("host", "host", cpu_name(), "ready", True, None, {"cores": os.cpu_count()})]
