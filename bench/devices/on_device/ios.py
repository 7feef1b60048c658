"""Run Core ML artifacts on an iPhone through the demo app, driven by pymobiledevice3.

Files go into the app's Documents folder (``apps push --documents``), the app is launched with the
protocol's parameters as ``EGOEDGE_*`` environment variables (``developer dvt launch``, which
needs Developer Mode and, on iOS 17+, a running ``tunneld``), and the result JSON is pulled back.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from egoedge.bench.devices.base import DeviceError, DeviceInfo, run_tool
from egoedge.bench.devices.ios_tool import ios_tool
from egoedge.bench.devices.on_device.app_protocol import INPUTS_NAME, IOS_BUNDLE, RESULT_NAME, AppRequest, inputs_bytes
from egoedge.bench.devices.on_device.parsers import parse_app_result
from egoedge.bench.host_bench import BenchConfig

TIMEOUT_S = 60.0
# The pymobiledevice3 subcommands the bench runs, each with --udid (tests/test_clients.py checks every one, and
# the options in it, against the installed tool's own --help).
COMMANDS = {"list": ("usbmux", "list"), "push": ("apps", "push", "--documents"),
            "pull": ("apps", "pull", "--documents"), "rm": ("apps", "rm", "--documents"),
            "launch": ("developer", "dvt", "launch", "--env")}
POLL_S = 2.0
DOCS = "egoedge"  # folder inside the app's Documents


class IOSBench:
    """One iPhone: Core ML packages only."""

    kind = "ios"

    def __init__(self, device: DeviceInfo, cfg: BenchConfig, tools: dict[str, Path]) -> None:
        if tools:
            raise DeviceError("iOS has no native benchmark tools: drop --tool (the demo app runs Core ML)")
        self.device, self.cfg, self.udid = device, cfg, device.id
        # The very command discovery ran: a venv's scripts need not be on PATH.
        self.tool = ios_tool()
        if self.tool is None:
            raise DeviceError("no iOS tool: pip install pymobiledevice3")
        self._inputs: tuple[str, tuple[int, ...]] | None = None

    def pmd(self, *args: str, timeout: float = TIMEOUT_S) -> str:
        return run_tool([*self.tool, *args, "--udid", self.udid], timeout)

    def push(self, local: Path, remote: str) -> None:
        """Push a file, or every file of a directory (an .mlpackage) under ``remote``."""
        files = [local] if local.is_file() else sorted(f for f in local.rglob("*") if f.is_file())
        for f in files:
            target = remote if f == local else f"{remote}/{f.relative_to(local).as_posix()}"
            self.pmd(*COMMANDS["push"], IOS_BUNDLE, str(f), target,
                     timeout=TIMEOUT_S + f.stat().st_size / 2**20)

    def alive(self) -> str | None:
        try:
            listed = run_tool([*self.tool, *COMMANDS["list"]], 20.0)
        except DeviceError as e:
            return f"{self.udid} cannot be reached ({e})"
        return None if self.udid in listed else f"{self.udid} is no longer connected"

    def unsupported(self, format: str) -> str | None:
        return None if format == "coreml" else f"the iOS demo app runs Core ML only, not {format}"

    def runtime(self, format: str) -> str:
        return "coreml-ios-app"

    def run(self, artifact: Path, format: str, inputs: np.ndarray | None, io: dict | None = None) -> dict:
        model, result = f"{DOCS}/{artifact.name}", f"{DOCS}/{RESULT_NAME}"
        self.push(artifact, model)
        if inputs is not None and self._inputs is None:
            with tempfile.TemporaryDirectory(prefix="egoedge-") as tmp:
                local = Path(tmp) / INPUTS_NAME
                local.write_bytes(inputs_bytes(inputs))
                self.push(local, f"{DOCS}/{INPUTS_NAME}")
            self._inputs = (f"{DOCS}/{INPUTS_NAME}", tuple(inputs.shape))
        try:  # a result left by an earlier run must not be read as this one's
            self.pmd(*COMMANDS["rm"], IOS_BUNDLE, result)
        except DeviceError:
            pass
        request = AppRequest(model, result, *(self._inputs or (None, None)), self.cfg)
        self.pmd(*COMMANDS["launch"][:-1], *launch_env(request), IOS_BUNDLE)
        return parse_app_result(self._wait_for(result))

    def _wait_for(self, result: str) -> str:
        deadline = time.monotonic() + self.cfg.device_timeout_s
        with tempfile.TemporaryDirectory(prefix="egoedge-") as tmp:
            local = Path(tmp) / RESULT_NAME
            while time.monotonic() < deadline:
                try:
                    self.pmd(*COMMANDS["pull"], IOS_BUNDLE, result, str(local))
                    if local.is_file() and local.read_text().strip():
                        return local.read_text()
                except DeviceError:
                    pass  # not written yet
                time.sleep(POLL_S)
        raise DeviceError(f"no result from the iOS demo app within {self.cfg.device_timeout_s:.0f} s")


def launch_env(request: AppRequest) -> list[str]:
    """``--env EGOEDGE_KEY=value`` pairs for ``dvt launch``."""
    out = []
    for key, value in request.params().items():
        out += ["--env", f"EGOEDGE_{key.upper()}={str(value).lower() if isinstance(value, bool) else value}"]
    return out
