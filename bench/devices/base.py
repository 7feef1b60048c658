"""What a device kind provides: discovery, with the reason a found device cannot be used."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from egoedge.trainer.common.io import EgoedgeError


class DeviceError(EgoedgeError):
    """A device or its tool is missing, unusable or stopped answering."""


@dataclass
class DeviceInfo:
    """One place models can run: ``usable`` is False with ``reason`` saying why (and what to do)."""

    kind: str
    id: str
    name: str
    state: str
    usable: bool
    reason: str | None = None
    details: dict = field(default_factory=dict)


class DeviceKind:
    """A kind of device (``--device KIND[:ID]``): how to find the devices of the kind and how to bench on one.

    A new kind is one module of this package that registers an instance in ``DEVICES``; its bench
    (pushing artifacts and timing them) lives in :mod:`egoedge.bench.devices.on_device`, reached
    lazily by :meth:`bench`.
    """

    id_name: str | None = None  # what ``:ID`` names (SERIAL, UDID, NAME); None: the kind takes no ID
    farm: bool = False  # hosted devices behind a service: listed only on request (``egoedge devices --farm``)
    base: str | None = None  # a view of another kind (emulator: the Android devices that are emulators)

    def discover(self) -> list[DeviceInfo]:
        """Every device of this kind that can be seen, usable or not (with the reason)."""
        raise NotImplementedError

    def pick(self, found: list[DeviceInfo], wanted: str) -> list[DeviceInfo]:
        """The devices ``KIND:wanted`` names among ``found`` (default: the one whose id is ``wanted``)."""
        return [d for d in found if d.id == wanted]

    def keep(self, device: DeviceInfo) -> bool:
        """Whether ``device``, found by the ``base`` kind's discovery, belongs to this kind."""
        return True

    def bench(self, device: DeviceInfo, cfg, tools: dict):
        """The object that pushes artifacts to ``device`` and times them (``alive``, ``unsupported``, ``run``)."""
        raise DeviceError(f"{device.kind} is benched in this process, not through a device bench")


def run_tool(argv: list[str], timeout: float) -> str:
    """Run a device tool; a missing binary, a timeout or a failure is a one-line ``DeviceError``."""
    return run_tool_output(argv, timeout)[0]


def run_tool_output(argv: list[str], timeout: float) -> tuple[str, str]:
    """``run_tool`` that also returns what the tool wrote to stderr (some tools report problems there and exit 0)."""
    if shutil.which(argv[0]) is None:
        raise DeviceError(f"'{argv[0]}' not found on PATH")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"'{' '.join(argv)}' did not answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise DeviceError(f"'{' '.join(argv)}' failed: {message[-1] if message else f'exit {done.returncode}'}")
    return done.stdout, done.stderr
