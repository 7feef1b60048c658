"""Pick a device from ``--device KIND[:ID]`` and measure artifacts on it, keeping partial results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.devices import DEVICES, DeviceError, DeviceInfo
from bench.host import BenchConfig, Target, finish_row, new_row
from bench.ondevice.registry import BACKENDS
from trainer.common.progress import Progress, no_progress

DEVICE_KINDS = ("host", "android", "emulator", "ios")


def parse_device_specs(text: str) -> list[str]:
    """``host,android:SERIAL`` → ``["host", "android:SERIAL"]``, each kind checked."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise DeviceError(f"--device is empty; valid: {', '.join(DEVICE_KINDS)} (with :ID for a phone)")
    for spec in specs:
        kind = spec.partition(":")[0]
        if kind not in DEVICE_KINDS:
            raise DeviceError(f"unknown device '{spec}'; valid: host, android[:SERIAL], emulator[:SERIAL], ios[:UDID]")
        if kind == "host" and spec != "host":
            raise DeviceError("'host' takes no :ID")
    if len(set(specs)) != len(specs):
        raise DeviceError(f"--device names a device twice: {text}")
    return specs


def select_device(spec: str, discover: Callable[[str], list[DeviceInfo]] | None = None) -> DeviceInfo:
    """The one usable device ``spec`` means, or a ``DeviceError`` saying what is attached and why not."""
    kind, _, wanted = spec.partition(":")
    found = (discover or (lambda k: DEVICES.get(k)()))("android" if kind == "emulator" else kind)
    if kind == "emulator":
        found = [d for d in found if d.details.get("emulator") or not d.usable and d.id == "-"]
    if wanted:
        match = [d for d in found if d.id == wanted]
        if not match:
            seen = ", ".join(d.id for d in found if d.id != "-") or "none"
            raise DeviceError(f"no {kind} device '{wanted}' (attached: {seen})")
        found = match
    usable = [d for d in found if d.usable]
    if not usable:
        reasons = "; ".join(f"{d.id if d.id != '-' else d.name}: {d.reason}" for d in found) or "nothing attached"
        raise DeviceError(f"no usable {kind} device — {reasons}")
    if len(usable) > 1:
        raise DeviceError(f"several {kind} devices are attached; pick one with {kind}:ID "
                          f"({', '.join(d.id for d in usable)})")
    return usable[0]


def device_label(device: DeviceInfo) -> str:
    return f"{device.kind}:{device.id}"


def bench_on_device(device: DeviceInfo, targets: list[Target], inputs: np.ndarray, labels: np.ndarray,
                    reference: np.ndarray | None, cfg: BenchConfig, tools: dict[str, Path] | None = None,
                    on_row: Callable[[dict], None] = lambda row: None,
                    progress: Progress = no_progress) -> tuple[list[dict], dict[str, str]]:
    """Measure every artifact target the device can run; returns (rows, skipped name → reason).

    A failing artifact gets a failed row with the tool's message and the run goes on; once the
    device itself is gone (unplugged, adb offline) the remaining artifacts are reported as not run.
    ``on_row`` sees each row as soon as it exists, so a caller can save partial results.
    """
    backend = BACKENDS.get(device.kind)(device, cfg, tools or {})
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    gone: str | None = None
    for tgt in targets:
        if not isinstance(tgt.target, Path):
            raise TypeError(f"{tgt.name}: only exported artifacts run on devices")
        if reason := backend.unsupported(tgt.format):
            skipped[tgt.name] = reason
            continue
        row = new_row(tgt, f"{tgt.name}@{device.kind}", device_label(device), backend.runtime(tgt.format))
        if gone:
            row["error"] = f"not run: {gone}"
        else:
            progress(f"{device.kind} {tgt.name}", 0, 1, {})
            try:
                measured = backend.run(tgt.target, tgt.format, inputs if cfg.accuracy else None)
                logits = measured.pop("logits", None)
                row.update({k: v for k, v in measured.items() if k != "details"}, tool=measured.get("details"))
                if logits is not None and logits.shape[0] != len(labels):
                    raise DeviceError(f"the app returned {logits.shape[0]} logit rows for {len(labels)} clips")
                finish_row(row, tgt, logits, labels, reference)
            except DeviceError as e:
                row["error"] = str(e)
                gone = backend.alive()
            progress(f"{device.kind} {tgt.name}", 1, 1, {})
        rows.append(row)
        on_row(row)
    return rows, skipped
