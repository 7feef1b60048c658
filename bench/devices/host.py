"""The machine egoedge runs on."""

from __future__ import annotations

import os

from egoedge.bench.devices.base import DeviceInfo, DeviceKind
from egoedge.bench.devices.registry import DEVICES
from egoedge.bench.machine import cpu_name


class Host(DeviceKind):
    """The machine egoedge runs on: always usable; its bench is the host bench itself."""

    def discover(self) -> list[DeviceInfo]:
        return [DeviceInfo("host", "host", cpu_name(), "ready", True, None, {"cores": os.cpu_count()})]


DEVICES.register("host")(Host())
