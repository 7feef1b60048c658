"""Per-op profiles of one benchmark target: where its time goes, from each runtime's own profiler.

- ExecuTorch: an ETDump recorded by the runtime and read with the devtools ``Inspector``; XNNPACK
  reports each of its kernels inside a delegate call, portable kernels appear as ``native_call_*``.
- ONNX Runtime: its session profiler (a Chrome-trace JSON with one ``Node`` event per kernel run).
- PyTorch eager: ``torch.profiler``, self CPU time per ATen op.

Each gives ``{"tool", "runs", "total_ms", "ops": [{"op", "where", "calls", "ms", "pct"}]}``: ``calls``
and ``ms`` are per inference (averaged over ``runs``), ``total_ms`` sums every op, ``pct`` is an
op's share of it. LiteRT's Python interpreter exposes no op profiler (``benchmark_model
--enable_op_profiling`` is the native way), so a ``.tflite`` gets none here.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import Registry

PROFILERS: Registry = Registry("op profiler")
TOP_OPS = 10  # rows kept per target: the head of the distribution is what a reader acts on


def summarize_ops(events: Iterable[tuple[str, str, float]], runs: int, tool: str, top: int = TOP_OPS) -> dict:
    """Aggregate ``(op, where, ms)`` kernel events recorded over ``runs`` inferences into a top-ops profile."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    ms: dict[tuple[str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    for op, where, t in events:
        ms[(op, where)] += t
        calls[(op, where)] += 1
    total = sum(ms.values())
    ranked = sorted(ms, key=lambda k: -ms[k])
    ops = [{"op": k[0], "where": k[1], "calls": round(calls[k] / runs, 2), "ms": round(ms[k] / runs, 4),
            "pct": round(100.0 * ms[k] / total, 1) if total else 0.0} for k in ranked[:top]]
    return {"tool": tool, "runs": runs, "total_ms": round(total / runs, 4), "distinct_ops": len(ms), "ops": ops}


# --- ExecuTorch ------------------------------------------------------------------------------------------

_NUMBERED = re.compile(r" #\d+$")  # XNNPACK numbers each kernel instance: "Convolution (NHWC, F32) IGEMM #3"
_ET_WRAPPERS = ("OPERATOR_CALL", "DELEGATE_CALL", "Method::", "Program::")  # spans around the kernels


def etdump_events(event_blocks, skip: int = 0) -> list[tuple[str, str, float]]:
    """An ExecuTorch ``Inspector``'s kernel events as ``(op, where, ms)``, the first ``skip`` runs dropped."""
    out = []
    for block in event_blocks:
        for ev in block.events:
            if ev.perf_data is None or ev.name.startswith(_ET_WRAPPERS):
                continue
            if ev.is_delegated_op:
                op, where = _NUMBERED.sub("", ev.name), ev.delegate_backend_name or "xnnpack"
            elif ev.name.startswith("native_call_"):
                op, where = ev.name.removeprefix("native_call_").removesuffix(".out"), "portable"
            else:
                continue
            out += [(op, where, float(t)) for t in ev.perf_data.raw[skip:]]  # one timing per execution
    return out


@PROFILERS.register("executorch")
def profile_executorch(target: Path, sample: list[np.ndarray], threads: int, runs: int) -> dict:
    """ETDump of ``runs`` executions of a ``.pte`` (after one warm-up), read back with the devtools Inspector."""
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from egoedge.edge.exporters.executorch import set_threads

    set_threads(threads)
    program = Runtime.get().load_program(Path(target), enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    inputs = [torch.from_numpy(np.ascontiguousarray(x)) for x in sample]
    for _ in range(runs + 1):
        method.execute(inputs)
    with tempfile.TemporaryDirectory(prefix="egoedge-etdump-") as tmp:
        path = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(path), str(Path(tmp) / "debug.bin"))
        blocks = Inspector(etdump_path=str(path)).event_blocks
        events = etdump_events(blocks, skip=1)
    return {**summarize_ops(events, runs, "executorch etdump"), **delegate_calls(blocks, skip=1)}


def delegate_calls(event_blocks, skip: int = 0) -> dict:
    """Delegate calls per inference and their time, and the time in portable kernels between them.

    Each ``DELEGATE_CALL`` span is one hand-over to XNNPACK: a graph cut into islands makes many,
    each with its copies in and out. ``delegate_ms`` includes the kernels inside the calls.
    """
    calls, ms, portable = 0, 0.0, 0.0
    for block in event_blocks:
        for ev in block.events:
            if ev.perf_data is None:
                continue
            raw = ev.perf_data.raw[skip:]
            if ev.name == "DELEGATE_CALL":
                calls += 1
                ms += float(np.mean(raw)) if len(raw) else 0.0
            elif ev.name.startswith("native_call_"):
                portable += float(np.mean(raw)) if len(raw) else 0.0
    return {"delegate_calls": calls, "delegate_ms": round(ms, 4), "portable_ms": round(portable, 4)}


# --- ONNX Runtime ----------------------------------------------------------------------------------------

def ort_trace_events(trace: list[dict], skip: int = 0) -> list[tuple[str, str, float]]:
    """An ONNX Runtime trace's kernel events as ``(op, where, ms)``, the first ``skip`` runs dropped."""
    starts = sorted(ev["ts"] for ev in trace if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    after = starts[skip] if 0 < skip < len(starts) else (float("inf") if skip else 0)
    out = []
    for ev in trace:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time") or ev["ts"] < after:
            continue
        args = ev.get("args") or {}
        provider = str(args.get("provider", "CPUExecutionProvider")).removesuffix("ExecutionProvider").lower()
        out.append((args.get("op_name", "?"), provider, float(ev.get("dur", 0)) / 1000.0))
    return out


@PROFILERS.register("onnx")
def profile_onnx(target: Path, sample: list[np.ndarray], threads: int, runs: int) -> dict:
    """ONNX Runtime's session profiler over ``runs`` calls; the warm-up call before them is recorded, then dropped."""
    from egoedge.edge.exporters.onnx import ort_session

    with tempfile.TemporaryDirectory(prefix="egoedge-ort-") as tmp:
        session = ort_session(target, threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = dict(zip([i.name for i in session.get_inputs()], sample, strict=True))
        session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
    return summarize_ops(ort_trace_events(trace, skip=1), runs, "onnxruntime profiler")


# --- PyTorch eager ---------------------------------------------------------------------------------------

@PROFILERS.register("pytorch")
def profile_pytorch(target: torch.nn.Module | Path, sample: list[np.ndarray], threads: int, runs: int) -> dict:
    """``torch.profiler`` self CPU time per ATen op over ``runs`` calls."""
    from torch.profiler import ProfilerActivity, profile

    from egoedge.bench.runtimes import RUNTIMES

    session = RUNTIMES.get("pytorch").open(target, threads)
    session(sample)  # warm-up, unprofiled
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            session(sample)
    averages = [e for e in prof.key_averages() if e.key.startswith("aten::") and e.self_cpu_time_total > 0]
    out = summarize_ops([(e.key, "cpu", e.self_cpu_time_total / 1000.0) for e in averages], runs, "torch.profiler")
    counts = {e.key: e.count for e in averages}
    for op in out["ops"]:  # key_averages already sums each op: its call count is the profiler's
        op["calls"] = round(counts[op["op"]] / runs, 2)
    return out


def profile_target(format: str, target: torch.nn.Module | Path, sample: list[np.ndarray], threads: int,
                   runs: int) -> dict:
    """The top-ops profile of one target, or ``{"error"}`` saying why there is none."""
    if format not in PROFILERS:
        return {"error": f"no op profiler for {format} on the host"
                + ("; LiteRT's Python interpreter has none (use benchmark_model --enable_op_profiling)"
                   if format == "tflite" else "")}
    try:
        return PROFILERS.get(format)(target, sample, threads, runs)
    except Exception as e:  # noqa: BLE001 - runtimes raise their own types; a profile is extra, the row goes on
        text = str(e).splitlines()[0] if str(e) else ""
        return {"error": text if isinstance(e, EgoedgeError) else f"{type(e).__name__}: {text}"}
