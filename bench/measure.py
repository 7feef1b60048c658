"""Measurement primitives: latency statistics, peak memory while running, model cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import torch


def latency_stats(samples_ms: list[float], warmup: int) -> dict:
    """``{"mean", "median", "p90", "p99", "std", "iterations", "warmup"}`` in milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "std": float(a.std()), "iterations": int(a.size),
            "warmup": int(warmup)}


def time_calls(fn: Callable[[], object], warmup: int, iterations: int) -> dict:
    """Warm up, then time ``iterations`` calls of ``fn`` one by one."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return latency_stats(samples, warmup)


class PeakRSS:
    """Highest resident set size (MB) of this process while the ``with`` block runs.

    A sampling thread reads RSS every few milliseconds; it measures the whole process, so
    the value includes whatever was resident before the block (the Python runtime, other models).
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _read(self) -> None:
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def __enter__(self) -> PeakRSS:
        import psutil

        self._proc = psutil.Process()
        self._read()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._read()  # the block's last state, however short the block was
        self._stop.set()
        self._thread.join()


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass, from torch's FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(*example_inputs)
    return int(counter.get_total_flops() // 2)
