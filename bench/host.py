"""Benchmark targets side by side on the host CPU: same inputs, same threads, one process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.machine import machine_info
from bench.measure import PeakRSS, count_macs, count_params, time_calls
from bench.peak import add_throughput, measure_peaks
from bench.runners import RUNNERS
from edge.export import run_session
from edge.parity import compare
from trainer.checkpoint import load_model
from trainer.common.io import EgoedgeError
from trainer.common.progress import Progress, no_progress
from trainer.data import DataConfig, load_split, to_model_input
from trainer.train import topk_accuracy


@dataclass(frozen=True)
class BenchConfig:
    """How long to measure and with how many threads."""

    warmup: int = 5
    iterations: int = 30
    threads: int = 2
    accuracy: bool = True


@dataclass
class Target:
    """One thing to measure: an eager model or an exported artifact."""

    name: str
    format: str
    precision: str
    target: torch.nn.Module | Path
    size_bytes: int
    params: int | None
    macs: int | None
    compare_to_reference: bool  # derived from the reference model: report agreement and parity
    refused: str | None = None  # the export's parity-gate verdict: measured, but reported as failed


def checkpoint_target(path: Path, name: str, compare_to_reference: bool) -> Target:
    """An eager PyTorch target from a checkpoint file."""
    model, _ = load_model(path)
    macs = count_macs(model, model.example_inputs())
    return Target(name, "pytorch", "fp32", model, path.stat().st_size, count_params(model), macs,
                  compare_to_reference)


def manifest_targets(export_dir: Path, manifest: dict, params: int | None, macs: int | None) -> list[Target]:
    """Targets for every artifact on disk whose format this host can run.

    An artifact the parity gate refused is still measured (its size and speed are facts about
    the backend) but its row is reported as failed, with the gate's reason.
    """
    out = []
    for a in manifest["artifacts"]:
        if a["file"] and a["format"] in RUNNERS and RUNNERS.get(a["format"]).available() is None:
            refused = None if a["status"] == "ok" else (a["reason"] or "failed at export")
            out.append(Target(a["name"], a["format"], a["precision"], export_dir / a["file"], a["bytes"],
                              params, macs, True, refused))
    return out


def bench_targets(targets: list[Target], data_cfg: DataConfig, preprocess: dict, cfg: BenchConfig,
                  progress: Progress = no_progress) -> list[dict]:
    """Measure every target; the first target with ``compare_to_reference`` is the reference.

    A target that fails to load or run gets ``status: "failed"`` and its error; the others go on.
    """
    test = load_split(data_cfg, "test")
    inputs = to_model_input(test.clips, preprocess).numpy()
    sample = [inputs[:1]]
    reference: np.ndarray | None = None
    results = []
    for tgt in targets:
        runner = RUNNERS.get(tgt.format)
        row = {"name": tgt.name, "format": tgt.format, "precision": tgt.precision, "device": "host",
               "runtime": runner.runtime, "size_bytes": tgt.size_bytes, "params": tgt.params, "macs": tgt.macs,
               "load_ms": None, "latency_ms": None, "peak_rss_mb": None, "accuracy": None,
               "top1_agreement": None, "parity_max_abs": None, "status": "failed", "error": None}
        try:
            progress(f"time {tgt.name}", 0, 1, {})
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                session = runner.open(tgt.target, cfg.threads)
                session(sample)  # first call included in load: lazy allocation happens there
                row["load_ms"] = (time.perf_counter() - t0) * 1000.0
                row["latency_ms"] = time_calls(lambda s=session: s(sample), cfg.warmup, cfg.iterations)
            row["peak_rss_mb"] = round(rss.peak_mb, 1)
            if cfg.accuracy:
                logits = run_session(session, inputs, progress, f"accuracy {tgt.name}")
                row["accuracy"] = topk_accuracy(logits, test.labels)
                if tgt.compare_to_reference:
                    if reference is None:
                        reference = logits
                    parity = compare(reference, logits)
                    row["top1_agreement"], row["parity_max_abs"] = parity["top1_agreement"], parity["max_abs"]
            row["status"] = "ok"
            if tgt.refused:
                row["status"], row["error"] = "failed", f"refused by the parity gate: {tgt.refused}"
        except (EgoedgeError, RuntimeError, ValueError, OSError) as e:
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        results.append(row)
    return results


def host_report(targets: list[Target], data_cfg: DataConfig, preprocess: dict, cfg: BenchConfig,
                progress: Progress = no_progress) -> dict:
    """``{"machine", "results"}``: the targets measured side by side, each set against this CPU's GEMM peak."""
    progress("GEMM peak", 0, 1, {})
    peaks = measure_peaks(cfg.threads)
    progress("GEMM peak", 1, 1, {})
    results = bench_targets(targets, data_cfg, preprocess, cfg, progress)
    add_throughput(results, peaks)
    return {"machine": {**machine_info(cfg.threads), "peak_gmacs": peaks}, "results": results}


def teacher_of(source: Path, ckpt: dict) -> Path | None:
    """The teacher checkpoint a student was distilled from, if it is still beside it."""
    name = (ckpt.get("config") or {}).get("teacher")
    path = source.parent / name if isinstance(name, str) else None
    return path if path is not None and path.is_file() else None
