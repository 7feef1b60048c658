"""Pick a device from ``--device KIND[:ID]`` and measure artifacts on it, keeping partial results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from egoedge.bench.devices import DEVICES, DeviceError, DeviceInfo, device_choices
from egoedge.bench.host_bench import BenchConfig, Target, add_stream_ratios, finish_row, new_row, stream_fields
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.tasks import Evaluation


def parse_device_specs(text: str) -> list[str]:
    """``host,android:SERIAL`` → ``["host", "android:SERIAL"]``, each kind checked."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise DeviceError(f"--device is empty; valid: {device_choices()}")
    for spec in specs:
        kind, sep, _ = spec.partition(":")
        if kind not in DEVICES:
            raise DeviceError(f"unknown device '{spec}'; valid: {device_choices()}")
        if sep and not DEVICES.get(kind).id_name:
            raise DeviceError(f"'{kind}' takes no :ID")
    if len(set(specs)) != len(specs):
        raise DeviceError(f"--device names a device twice: {text}")
    return specs


def select_device(spec: str, discover: Callable[[str], list[DeviceInfo]] | None = None) -> DeviceInfo:
    """The one usable device ``spec`` means, or a ``DeviceError`` saying what is attached and why not."""
    kind, _, wanted = spec.partition(":")
    entry = DEVICES.get(kind)
    # A kind may be a view of another (emulator: the Android devices that are emulators).
    found = [d for d in (discover or (lambda k: DEVICES.get(k).discover()))(entry.base or kind) if entry.keep(d)]
    if wanted:
        match = entry.pick(found, wanted)
        if not match:
            seen = ", ".join(d.id for d in found if d.id != "-") or "none"
            why = "; ".join(d.reason for d in found if d.id == "-" and d.reason)  # e.g. the tool is missing
            raise DeviceError(f"no {kind} device '{wanted}' (attached: {seen})" + (f": {why}" if why else ""))
        found = match
    usable = [d for d in found if d.usable]
    if not usable:
        reasons = "; ".join(f"{d.id if d.id != '-' else d.name}: {d.reason}" for d in found) or "nothing attached"
        raise DeviceError(f"no usable {kind} device — {reasons}")
    if len(usable) > 1:
        id_name = entry.id_name or "ID"
        shown = ", ".join(d.id for d in usable[:8]) + (f", ... ({len(usable)} in all)" if len(usable) > 8 else "")
        raise DeviceError(f"several {kind} devices are available; pick one with {kind}:{id_name} ({shown})")
    return usable[0]


def device_label(device: DeviceInfo) -> str:
    return f"{device.kind}:{device.id}"


def bench_on_device(device: DeviceInfo, targets: list[Target], ev: Evaluation, reference: np.ndarray | None,
                    cfg: BenchConfig, tools: dict[str, Path] | None = None,
                    on_row: Callable[[dict], None] = lambda row: None,
                    progress: Progress = no_progress) -> tuple[list[dict], dict[str, str]]:
    """Measure every artifact target the device can run; returns (rows, skipped name → reason).

    A failing artifact gets a failed row with the tool's message and the run goes on; once the
    device itself is gone (unplugged, adb offline) the remaining artifacts are reported as not run.
    ``on_row`` sees each row as soon as it exists, so a caller can save partial results. Phones
    run single-input models (``ev``'s test inputs are one array); ``reference`` is PyTorch's output on them.
    """
    test_inputs = ev.test_inputs()
    if len(test_inputs) != 1:
        raise DeviceError(f"phones run single-input models; this one takes {len(test_inputs)} inputs "
                          f"({', '.join(ev.inputs)})")
    inputs = test_inputs[0]
    backend = DEVICES.get(device.kind).bench(device, cfg, tools or {})
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    gone: str | None = None
    for tgt in targets:
        if not isinstance(tgt.target, Path):
            raise TypeError(f"{tgt.name}: only exported artifacts run on devices")
        if reason := (backend.unsupported(tgt.format) if tgt.stream is None else stream_unsupported(backend, tgt)):
            skipped[tgt.name] = reason
            continue
        row = new_row(tgt, f"{tgt.name}@{device.kind}", device_label(device), backend.runtime(tgt.format))
        if tgt.stream is not None:
            row["streaming"] = stream_fields(tgt.stream, None, None, ev)
            row["streaming"]["clip"] = f"{tgt.stream.clip}@{device.kind}"
        if gone:
            row["error"] = f"not run: {gone}"
        elif tgt.damaged:
            row["error"] = tgt.damaged
        else:
            progress(f"{device.kind} {tgt.name}", 0, 1, {})
            try:
                extra = {} if tgt.stream is None else {"stream": tgt.stream}
                measured = backend.run(tgt.target, tgt.format, inputs if cfg.accuracy else None, tgt.io, **extra)
                logits = measured.pop("logits", None)
                row.update({k: v for k, v in measured.items() if k != "details"}, tool=measured.get("details"))
                if logits is not None and logits.shape[0] != len(inputs):
                    raise DeviceError(f"the app returned {logits.shape[0]} logit rows for {len(inputs)} clips")
                finish_row(row, tgt, None if logits is None else (logits,), ev, test_inputs,
                           None if reference is None else (reference,))
                if tgt.stream is not None:
                    row["streaming"]["frame_ms"] = row["latency_ms"]
            except DeviceError as e:
                row["error"] = str(e)
                gone = backend.alive()
            progress(f"{device.kind} {tgt.name}", 1, 1, {})
        rows.append(row)
        on_row(row)
    add_stream_ratios(rows)
    return rows, skipped


def stream_unsupported(backend, tgt: Target) -> str | None:
    """Why ``backend`` cannot time the streaming artifact ``tgt`` (a backend without a streaming mode says so)."""
    check = getattr(backend, "unsupported_stream", None)
    if check is None:
        return f"{backend.kind} runs no streaming artifacts (the Android demo app's streaming mode does)"
    return check(tgt.format)
