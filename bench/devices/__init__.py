"""Devices, one module per kind; importing this package registers all of them."""

from bench.devices.base import DeviceError, DeviceInfo
from bench.devices.registry import DEVICES
from trainer.common.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["DEVICES", "DeviceError", "DeviceInfo"]
