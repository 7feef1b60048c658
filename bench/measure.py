"""Measurement primitives: latency statistics, peak memory while running, model cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

MAX_SAMPLES_KEPT = 1000  # report.json keeps every timed call up to this many (an even subset beyond)


def latency_stats(samples_ms: list[float], warmup: int) -> dict:
    """``{"mean", "median", "p90", "p99", "std", "iterations", "warmup", "samples"}`` in milliseconds.

    ``samples`` are the timed calls in order (4 significant digits), for the report's distribution plot.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    kept = a if a.size <= MAX_SAMPLES_KEPT else a[np.linspace(0, a.size - 1, MAX_SAMPLES_KEPT).astype(int)]
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "std": float(a.std()), "iterations": int(a.size),
            "warmup": int(warmup), "samples": [float(f"{x:.4g}") for x in kept]}


MIN_BUDGET_ITERATIONS = 5  # a budget never yields fewer samples than this: p90 needs some
MAX_BUDGET_ITERATIONS = 100_000


def _check_count(iterations: int, budget_s: float | None) -> None:
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if budget_s is not None and budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")


def _enough(calls: int, spent_s: float, iterations: int, budget_s: float | None) -> bool:
    """Whether ``calls`` timed calls taking ``spent_s`` end the timing: ``iterations``, or the budget's seconds."""
    if budget_s is None:
        return calls >= iterations
    return (spent_s >= budget_s and calls >= MIN_BUDGET_ITERATIONS) or calls >= MAX_BUDGET_ITERATIONS


def _stats(samples: list[float], warmup: int, budget_s: float | None) -> dict:
    stats = latency_stats(samples, warmup)
    if budget_s is not None:
        stats["budget_s"] = budget_s
    return stats


def _time_one(fn: Callable[[], object], samples: list[float]) -> float:
    """One timed call of ``fn``: its milliseconds appended to ``samples``, its seconds returned."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    samples.append(seconds * 1000.0)
    return seconds


def time_calls(fn: Callable[[], object], warmup: int, iterations: int, budget_s: float | None = None) -> dict:
    """Warm up, then time calls of ``fn`` one by one.

    Without a budget exactly ``iterations`` calls are timed; with ``budget_s`` calls go on until
    that many seconds of timed calls have passed (at least ``MIN_BUDGET_ITERATIONS``).
    """
    _check_count(iterations, budget_s)
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    spent = 0.0
    while not _enough(len(samples), spent, iterations, budget_s):
        spent += _time_one(fn, samples)
    return _stats(samples, warmup, budget_s)


TURN_CALLS = 5  # timed calls per turn in ``time_in_turns``


def time_in_turns(fns: Sequence[Callable[[], object]], warmup: int, iterations: int,
                  budget_s: float | None = None) -> list[dict]:
    """Time callables in turns, ``TURN_CALLS`` calls each, until each has what ``time_calls`` would time; their stats.

    A change in the machine's speed (a busy neighbour, the clock) then falls on every callable
    alike, so the ratio of their medians holds where medians timed minutes apart do not. Each turn
    opens with one untimed call, so a callable is not charged for the last one's idle spinning
    threads or the caches it left cold; the order flips every round so none always goes first.
    With ``budget_s``, turns go on until each callable has that many seconds of timed calls.
    """
    _check_count(iterations, budget_s)
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    spent = [0.0 for _ in fns]
    order = list(range(len(fns)))
    while not all(_enough(len(s), t, iterations, budget_s) for s, t in zip(samples, spent, strict=True)):
        for i in order:
            fns[i]()
            for _ in range(TURN_CALLS):
                spent[i] += _time_one(fns[i], samples[i])
        order.reverse()
    return [_stats(s, warmup, budget_s) for s in samples]


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
