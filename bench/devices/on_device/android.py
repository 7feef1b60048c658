"""Run artifacts on an Android phone or emulator over adb: native tools or the demo app.

A format with a native tool given (``--tool tflite=./benchmark_model``) runs that binary from
``/data/local/tmp/egoedge/``; otherwise the demo app's benchmark activity runs it (see ``app.py``).
Every adb call has a timeout; the tools' own exit status comes back through the output so a
failing tool is reported with its message rather than as an adb error.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np

from egoedge.bench.devices.adb import adb
from egoedge.bench.devices.base import DeviceError, DeviceInfo
from egoedge.bench.devices.on_device.app_protocol import (
    ANDROID_ACTIVITY,
    ANDROID_PACKAGE,
    INPUTS_NAME,
    RESULT_NAME,
    AppRequest,
    StreamRequest,
    inputs_bytes,
)
from egoedge.bench.devices.on_device.native import NATIVE_TOOLS
from egoedge.bench.devices.on_device.parsers import parse_app_result
from egoedge.bench.host_bench import BenchConfig
from egoedge.edge.embed import ANDROID_FORMATS

REMOTE_DIR = "/data/local/tmp/egoedge"
APP_DIR = f"/sdcard/Android/data/{ANDROID_PACKAGE}/files/egoedge"  # the app's own storage: adb may write it
PUSH_MB_PER_S = 5.0  # slowest USB 2 link we allow for before a push counts as hung
POLL_S = 1.0
_EXIT = "__egoedge_exit="


class AndroidBench:
    """One adb device: push, run, pull; ``unsupported(format)`` says why a format cannot run here."""

    kind = "android"

    def __init__(self, device: DeviceInfo, cfg: BenchConfig, tools: dict[str, Path]) -> None:
        self.device, self.cfg, self.tools = device, cfg, tools
        self.serial = device.id
        self._pushed_tools: dict[str, str] = {}
        self._inputs: tuple[str, tuple[int, ...]] | None = None
        self._app_installed: bool | None = None

    # --- adb primitives -------------------------------------------------------------------------
    def shell(self, command: str, timeout: float | None = None) -> str:
        return adb("shell", command, serial=self.serial, timeout=timeout)

    def push(self, local: Path, remote: str) -> None:
        size_mb = local.stat().st_size / 2**20 if local.is_file() else sum(
            f.stat().st_size for f in local.rglob("*") if f.is_file()) / 2**20
        adb("push", str(local), remote, serial=self.serial, timeout=30.0 + size_mb / PUSH_MB_PER_S)

    def run_tool(self, command: str) -> str:
        """Run a command on the device; returns its output, raising with it if it exited non-zero."""
        out = self.shell(f"{command} 2>&1; echo {_EXIT}$?", timeout=self.cfg.device_timeout_s)
        m = re.search(_EXIT + r"(\d+)\s*$", out)
        body = out[:m.start()] if m else out
        if m is None or m[1] != "0":
            return body + f"\n(exit status {m[1] if m else 'unknown'})"
        return body

    def alive(self) -> str | None:
        """``None`` while adb still sees the device in the ``device`` state, else why not."""
        try:
            state = adb("get-state", serial=self.serial, timeout=10.0).strip()
        except DeviceError as e:
            return f"{self.serial} is gone ({e})"
        return None if state == "device" else f"{self.serial} is {state}"

    # --- what can run here ------------------------------------------------------------------------
    def app_installed(self) -> bool:
        if self._app_installed is None:
            try:
                self._app_installed = "package:" in self.shell(f"pm path {ANDROID_PACKAGE}")
            except DeviceError:
                self._app_installed = False
        return self._app_installed

    def unsupported(self, format: str) -> str | None:
        if format in self.tools:
            return None
        if format not in ANDROID_FORMATS:
            native = ", ".join(f"--tool {f}=PATH" for f in NATIVE_TOOLS.keys())
            return f"no Android runner for {format} (the demo app runs {', '.join(ANDROID_FORMATS)}; native: {native})"
        if not self.app_installed():
            return (f"the demo app ({ANDROID_PACKAGE}) is not installed: build and install android_demo, "
                    f"or pass --tool {format}=PATH to a native benchmark binary")
        return None

    def runtime(self, format: str) -> str:
        return NATIVE_TOOLS.get(format).runtime if format in self.tools else f"{format}-android-app"

    # --- running ------------------------------------------------------------------------------------
    def unsupported_stream(self, format: str) -> str | None:
        """Why a streaming artifact of ``format`` cannot run here: native tools time one call of one model, the app
        carries a step's window or a pair's ring buffer."""
        if format in self.tools:
            return f"--tool {format} times one model; streaming steps and pairs run in the demo app's streaming mode"
        return self.unsupported(format)

    def run(self, artifact: Path, format: str, inputs: np.ndarray | None, io: dict | None = None,
            stream=None) -> dict:
        if stream is not None:
            return self._run_app(artifact, inputs, stream)
        return self._run_native(artifact, format) if format in self.tools else self._run_app(artifact, inputs)

    def _run_native(self, artifact: Path, format: str) -> dict:
        tool = NATIVE_TOOLS.get(format)
        if format not in self._pushed_tools:
            binary = f"{REMOTE_DIR}/{tool.name}"
            self.shell(f"mkdir -p {REMOTE_DIR}")
            self.push(self.tools[format], binary)
            self.shell(f"chmod 755 {binary}")
            self._pushed_tools[format] = binary
        remote = f"{REMOTE_DIR}/{artifact.name}"
        self.push(artifact, remote)
        return tool.parse(self.run_tool(tool.command(self._pushed_tools[format], remote, self.cfg)), self.cfg)

    def _push_inputs(self, inputs: np.ndarray) -> tuple[str, tuple[int, ...]]:
        if self._inputs is None:
            with tempfile.TemporaryDirectory(prefix="egoedge-") as tmp:
                local = Path(tmp) / INPUTS_NAME
                local.write_bytes(inputs_bytes(inputs))
                self.push(local, f"{APP_DIR}/{INPUTS_NAME}")
            self._inputs = (f"{APP_DIR}/{INPUTS_NAME}", tuple(inputs.shape))
        return self._inputs

    def _run_app(self, artifact: Path, inputs: np.ndarray | None, stream=None) -> dict:
        """The demo app on one artifact, or on a streaming step or pair (``stream``: the host bench's StreamPair)."""
        self.shell(f"mkdir -p {APP_DIR}")
        model, result = f"{APP_DIR}/{artifact.name}", f"{APP_DIR}/{RESULT_NAME}"
        self.push(artifact, model)
        pushed = self._push_inputs(inputs) if inputs is not None else None
        streaming = None
        if stream is not None and stream.head is None:
            streaming = StreamRequest(None, stream.window, stream.dim, tuple(stream.frame_shape),
                                      step_inputs=stream.roles[0], step_outputs=stream.roles[1])
        elif stream is not None:
            head = f"{APP_DIR}/{stream.head.name}"
            self.push(stream.head, head)
            streaming = StreamRequest(head, stream.window, stream.dim, tuple(stream.frame_shape))
        request = AppRequest(model, result, pushed[0] if pushed else None, pushed[1] if pushed else None, self.cfg,
                             streaming)
        self.shell(f"rm -f {result}")
        started = self.shell(intent_command(request))
        if "Error:" in started:
            raise DeviceError(f"am start failed: {started.strip().splitlines()[-1]}")
        return parse_app_result(self._wait_for(result))

    def _wait_for(self, result: str) -> str:
        deadline = time.monotonic() + self.cfg.device_timeout_s
        while time.monotonic() < deadline:
            text = self.shell(f"cat {result} 2>/dev/null; true")
            if text.strip():
                return text
            if not self.shell(f"pidof {ANDROID_PACKAGE}; true").strip():
                # Written between the two checks? Then it is there now.
                text = self.shell(f"cat {result} 2>/dev/null; true")
                if text.strip():
                    return text
                raise DeviceError(f"the demo app exited without a result{self._crash_hint()}")
            time.sleep(POLL_S)
        raise DeviceError(f"no result from the demo app within {self.cfg.device_timeout_s:.0f} s")

    def _crash_hint(self) -> str:
        try:
            log = self.shell("logcat -d -b crash -t 50")
        except DeviceError:
            return ""
        lines = [line for line in log.splitlines() if "Exception" in line or "FATAL" in line or "signal" in line]
        return f" (crash log: {lines[-1].strip()})" if lines else ""


def intent_command(request: AppRequest) -> str:
    """``am start`` with the protocol's parameters as typed extras; ``-W`` waits for launch, ``-S`` restarts."""
    extras = []
    for key, value in request.params().items():
        flag = "--ez" if isinstance(value, bool) else "--ei" if isinstance(value, int) else "--es"
        extras.append(f"{flag} {key} {shlex.quote(str(value).lower() if isinstance(value, bool) else str(value))}")
    return f"am start -W -S -n {ANDROID_PACKAGE}/{ANDROID_ACTIVITY} " + " ".join(extras)
