"""Turn what on-device benchmark tools print into the report's metrics.

Each parser returns ``{"load_ms", "latency_ms", "peak_rss_mb", "rss_added_mb", "details"}`` with
``latency_ms`` shaped like the host's (``mean, median, p90, p99, std, iterations, warmup``); a
statistic the tool does not print is ``None``, except ``median``, which falls back to the mean
and says so in ``details["median_from"]`` (the throughput and Pareto columns need one number).
"""

from __future__ import annotations

import json
import re

import numpy as np

from egoedge.bench.devices.base import DeviceError
from egoedge.bench.measure import latency_stats

_NUM = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
APP_PROTOCOL = 1


def _stats(mean: float, iterations: int, warmup: int, std: float | None = None, median: float | None = None,
           **extra: float | None) -> dict:
    return {"mean": mean, "median": median if median is not None else mean, "p90": None, "p99": None,
            "std": std, "iterations": iterations, "warmup": warmup, **extra}


def _fields(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=" + _NUM, line)}


def parse_benchmark_model(text: str) -> dict:
    """LiteRT/TFLite ``benchmark_model`` output (plain, ``INFO:``-prefixed or logcat-prefixed lines)."""
    runs = [_fields(line) for line in text.splitlines() if re.search(r"\bcount=\d+ ", line)]
    summary = re.search(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM, text)
    if not runs or summary is None:
        errors = [m.strip() for m in re.findall(r"ERROR: (.*)", text)]
        raise DeviceError("benchmark_model did not finish: "
                          + (errors[0] if errors else "no timing lines in its output"))
    timed, warm = runs[-1], runs[0] if len(runs) > 1 else {}
    us = 1000.0
    details: dict = {"tool": "benchmark_model"}
    latency = _stats(timed["avg"] / us, int(timed["count"]), int(warm.get("count", 0)),
                     std=timed.get("std", 0.0) / us, median=timed["median"] / us if "median" in timed else None,
                     min=timed.get("min", 0.0) / us or None, max=timed.get("max", 0.0) / us or None,
                     p95=timed["p95"] / us if "p95" in timed else None)
    if "median" not in timed:
        details["median_from"] = "mean (this benchmark_model prints no median)"
    if m := re.search(r"XNNPACK delegate: (\d+) nodes delegated out of (\d+) nodes", text):
        details["xnnpack_nodes"] = f"{m[1]}/{m[2]}"
    peak = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM, text)
    delta = re.search(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                      r"init=" + _NUM + r" overall=" + _NUM, text)
    return {"load_ms": (float(summary[1]) + float(summary[2])) / us, "latency_ms": latency,
            "peak_rss_mb": float(peak[1]) if peak else None, "rss_added_mb": float(delta[2]) if delta else None,
            "details": details}


def parse_executor_runner(text: str, warmup: int) -> dict:
    """ExecuTorch ``executor_runner`` log; the first ``warmup`` executions are dropped from the statistics.

    Recent runners log every iteration (``Iteration i of n: x ms``); older ones only a total, whose
    mean then stands for every statistic.
    """
    done = re.search(r"Model executed successfully (\d+) time\(s\) in " + _NUM + " ms", text)
    if done is None:
        failed = re.findall(r"^[EF] [0-9:.]+ \S+\] (.*)$", text, flags=re.MULTILINE)
        if not failed:
            raise DeviceError("executor_runner failed: no 'Model executed' line in its output")
        # The first error usually names the cause (a missing operator), the last one the failed step.
        cause = failed[0] if len(failed) == 1 else f"{failed[0]} ({failed[-1]})"
        raise DeviceError(f"executor_runner failed: {cause}")
    samples = [float(v) for v in re.findall(r"Iteration \d+ of \d+: " + _NUM + " ms", text)]
    loaded = re.search(r"Model loaded in " + _NUM + " ms", text)
    details: dict = {"tool": "executor_runner"}
    if m := re.search(r"num threads = (\d+)", text):
        details["threads"] = int(m[1])
    if len(samples) > warmup:
        latency = latency_stats(samples[warmup:], warmup)
        load = float(loaded[1]) + samples[0] if loaded else None
    else:
        count = int(done[1])
        latency = _stats(float(done[2]) / count, count, 0)
        details["median_from"] = "mean (this executor_runner logs only a total, warm-up included)"
        load = float(loaded[1]) if loaded else None
    return {"load_ms": load, "latency_ms": latency, "peak_rss_mb": None, "rss_added_mb": None,
            "details": details}


def parse_app_result(text: str) -> dict:
    """The JSON the demo app's benchmark activity writes (protocol 1: ``bench/devices/on_device/app_protocol.py``)."""
    from egoedge.edge.schema import schema_errors

    try:
        result = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeviceError(f"the app's result is not JSON ({e.msg} at {e.pos})") from None
    if not isinstance(result, dict) or result.get("protocol") != APP_PROTOCOL:
        raise DeviceError(f"the app speaks protocol {result.get('protocol') if isinstance(result, dict) else '?'}, "
                          f"egoedge expects {APP_PROTOCOL}: update the app or egoedge")
    if result.get("status") == "error" and isinstance(result.get("error"), str):
        raise DeviceError(f"the app could not run the model: {result['error']}")
    if errors := schema_errors(result, "app_result"):
        raise DeviceError(f"the app's result breaks the protocol: {errors[0]}")
    samples = result["latency_samples_ms"]
    logits = result.get("logits")
    return {"load_ms": result["load_ms"], "latency_ms": latency_stats(samples, result["latency_ms"]["warmup"]),
            "peak_rss_mb": result["peak_rss_mb"], "rss_added_mb": None,
            "logits": np.asarray(logits, dtype=np.float32) if logits is not None else None,
            "details": {"tool": "app", "runtime": result["runtime"], "threads": result["threads"],
                        "device": result["device"], "app_latency_ms": result["latency_ms"]}}
