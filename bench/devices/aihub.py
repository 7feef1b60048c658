"""Qualcomm AI Hub: a farm of hosted phones, reached through the official ``qai-hub`` client.

Credentials come from the client's own configuration (``qai-hub configure --api_token TOKEN``,
stored in ``~/.qai_hub/client.ini``); egoedge never asks for or stores a token. A farm is not
listed by a plain ``egoedge devices`` (that would query the network on every call): ``egoedge
devices --farm aihub`` lists its devices, and ``--device aihub:NAME`` picks one.
"""

from __future__ import annotations

from egoedge.bench.devices.base import DeviceInfo, DeviceKind
from egoedge.bench.devices.hub_client import client, hub_error
from egoedge.bench.devices.registry import DEVICES


def chipset(attributes: list[str]) -> str | None:
    """``chipset:qualcomm-snapdragon-8gen3`` from a device's attributes, without the prefix."""
    return next((a.split(":", 1)[1] for a in attributes if a.startswith("chipset:")), None)


def _version(os: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(os).split(".") if p.isdigit())


def discover_aihub() -> list[DeviceInfo]:
    """The hosted devices the configured client may use (one per name: its newest OS), or why none."""
    try:
        devices = client().get_devices()
    except Exception as e:  # noqa: BLE001 - configuration, network or service: one unusable row with the reason
        return [DeviceInfo("aihub", "-", "Qualcomm AI Hub", "unavailable", False, hub_error(e))]
    found: dict[str, DeviceInfo] = {}
    for d in sorted(devices, key=lambda d: _version(d.os), reverse=True):  # the newest OS of each name first
        attributes = list(d.attributes) if not isinstance(d.attributes, str) else [d.attributes]
        details = {"os": d.os, "chipset": chipset(attributes),
                   "form": next((a.split(":", 1)[1] for a in attributes if a.startswith("format:")), None),
                   "frameworks": ",".join(a.split(":", 1)[1] for a in attributes if a.startswith("framework:")),
                   "attributes": attributes}
        found.setdefault(d.name, DeviceInfo("aihub", d.name, d.name, "hosted", True, None, details))
    return list(found.values()) or [DeviceInfo("aihub", "-", "Qualcomm AI Hub", "no device", False,
                                               "the client lists no device for this account")]


class AIHub(DeviceKind):
    """Qualcomm AI Hub's hosted phones (a farm: listed only with ``egoedge devices --farm aihub``)."""

    id_name, farm = "NAME", True  # or ATTR:VALUE[+ATTR:VALUE] (see pick)

    def discover(self) -> list[DeviceInfo]:
        return discover_aihub()

    def pick(self, found: list[DeviceInfo], wanted: str) -> list[DeviceInfo]:
        """A device by name (``aihub:Google Pixel 8``), or the first by name that has every attribute
        (``aihub:chipset:qualcomm-snapdragon-8gen3+framework:onnx``), as the service would pick one."""
        named = [d for d in found if d.id == wanted]
        wants = [w.strip() for w in wanted.split("+") if w.strip()]
        if named or not all(":" in w for w in wants):
            return named
        having = [d for d in found if set(wants) <= set(d.details.get("attributes") or ())]
        return sorted(having, key=lambda d: d.id)[:1]

    def bench(self, device: DeviceInfo, cfg, tools: dict):
        from egoedge.bench.devices.on_device.aihub import AIHubBench

        return AIHubBench(device, cfg, tools)


DEVICES.register("aihub")(AIHub())
