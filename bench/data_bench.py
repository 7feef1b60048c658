"""The data pipeline's benchmark: decode throughput by worker count, and a training epoch's memory as data grows.

Run by ``egoedge data prepare --bench``. Decoding is timed on the same clips with 1 and 2
(or more) worker processes; the epoch is a real one (the engine's :func:`trainer.train.train_teacher`
on a small ResNet) over the prepared train shards, then over the same shards listed 10 times, each
in a fresh process so that its peak RSS is its own. Flat memory means the 10x peak stays within
10 % of the 1x peak; the epoch also counts video decodes, which must be zero after preparation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.clips import DataConfig
from egoedge.trainer.data.prepare import Prepared, decode_job, prepare
from egoedge.trainer.data.sources import source_for

FLAT_RSS = 0.10  # the 10x epoch may use at most this much more peak memory than the 1x one


def decode_throughput(cfg: DataConfig, workers: int, limit: int = 256) -> dict:
    """Clips per second decoding up to ``limit`` training segments with ``workers`` processes (nothing written)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    source, arg = source_for(cfg)
    segs = [s for s in source.catalog(arg, cfg).segments if s.split == "train"][:limit]
    jobs = [(s.path, s.start_s, s.end_s, cfg.frames, cfg.size, None) for s in segs]
    t0 = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(decode_job, jobs, chunksize=2))
    else:
        results = [decode_job(j) for j in jobs]
    seconds = time.perf_counter() - t0
    ok = sum(1 for clip, _ in results if clip is not None)
    return {"workers": workers, "clips": len(jobs), "decoded": ok, "seconds": round(seconds, 3),
            "clips_per_s": round(len(jobs) / seconds, 1) if seconds > 0 else None}


def epoch_rss(prepared: Prepared, repeat: int, batch_size: int = 32) -> dict:
    """Peak RSS (MiB) of one training epoch over the train shards listed ``repeat`` times, in a fresh process."""
    cmd = [sys.executable, "-m", "egoedge.bench.data_epoch", str(prepared.folder), str(repeat), str(batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EgoedgeError(f"the epoch benchmark failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def data_benchmark(cfg: DataConfig, workers: tuple[int, ...] = (1, 2), repeats: tuple[int, ...] = (1, 10),
                   progress: Progress = no_progress) -> dict:
    """Decode throughput per worker count and the epoch memory per data multiple, with the flat-memory verdict."""
    source, arg = source_for(cfg)
    prepared = prepare(source, arg, cfg, progress)
    decode = []
    for i, w in enumerate(workers):
        progress("bench: decode", i, len(workers), {"workers": w})
        decode.append(decode_throughput(cfg, w))
    progress("bench: decode", len(workers), len(workers), {})
    epochs = []
    for i, r in enumerate(repeats):
        progress("bench: epoch memory", i, len(repeats), {"x": r})
        epochs.append(epoch_rss(prepared, r))
    progress("bench: epoch memory", len(repeats), len(repeats), {})
    base, top = epochs[0]["peak_rss_mib"], epochs[-1]["peak_rss_mib"]
    growth = (top - base) / base
    return {"spec": cfg.name, "frames": cfg.frames, "size": cfg.size, "decode": decode, "epochs": epochs,
            "rss_growth": round(growth, 4), "flat": growth <= FLAT_RSS,
            "decodes_in_epochs": sum(e["video_decodes"] for e in epochs), "shards": str(prepared.folder)}


def write_benchmark(result: dict, path: str | Path) -> Path:
    """Save the benchmark as JSON."""
    from egoedge.trainer.common.io import write_json_atomic

    return write_json_atomic(path, result)
