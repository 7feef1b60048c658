"""Export a checkpoint to every requested backend, gate each artifact on parity, write the manifest.

Reads top to bottom: load the checkpoint and its data -> for each backend and precision:
export -> load -> run the held-out batch and the test split -> compare with PyTorch -> record.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.exporters import EXPORTERS, ExportError, export_ready
from edge.parity import ParityGate, compare
from trainer.checkpoint import load_model
from trainer.common.io import EgoedgeError, atomic_write, sha256_file, write_json_atomic
from trainer.common.progress import Progress, no_progress
from trainer.data import DataConfig, load_split, to_model_input
from trainer.train import predict, topk_accuracy


@dataclass(frozen=True)
class ExportConfig:
    """Which backends and precisions to produce and how strictly to check them."""

    formats: tuple[str, ...] = ("executorch",)
    precisions: tuple[str, ...] = ("fp32",)
    parity_samples: int = 32
    gate: ParityGate = field(default_factory=ParityGate)


def _io_spec(names: list[str], arrays: list[np.ndarray]) -> list[dict]:
    return [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype), "scale": None, "zero_point": None}
            for n, a in zip(names, arrays, strict=True)]


def run_session(session, inputs: np.ndarray, progress: Progress = no_progress, stage: str = "") -> np.ndarray:
    """Run a batch-1 session over every sample of ``inputs`` ``(N, ...)``; returns stacked outputs."""
    outs = []
    for i in range(len(inputs)):
        outs.append(session([inputs[i:i + 1]])[0])
        progress(stage, i + 1, len(inputs), {})
    return np.concatenate(outs)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, cfg: ExportConfig = ExportConfig(),
                      progress: Progress = no_progress) -> dict:
    """Export ``checkpoint`` per ``cfg`` into ``out_dir``; returns the manifest (also written there).

    Example::

        manifest = export_checkpoint("runs/quick/student.pt", "runs/quick/export")
        [a["status"] for a in manifest["artifacts"]]  # ["ok"]
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    for fmt in cfg.formats:
        EXPORTERS.get(fmt)  # unknown backend: fail before any work
    model, ckpt = load_model(checkpoint)
    data_cfg = DataConfig(**ckpt["config"]["data"])
    preprocess = ckpt["preprocess"]
    val, test = load_split(data_cfg, "val"), load_split(data_cfg, "test")
    if cfg.parity_samples > len(val):
        raise EgoedgeError(f"parity batch of {cfg.parity_samples} exceeds the {len(val)} held-out clips")
    parity_x = to_model_input(val.clips[:cfg.parity_samples], preprocess).numpy()
    test_x = to_model_input(test.clips, preprocess).numpy()
    with torch.no_grad():
        parity_ref = model(torch.from_numpy(parity_x)).numpy()
    ref_test_logits, _ = predict(model, test, preprocess)
    ref_accuracy = topk_accuracy(ref_test_logits, test.labels)

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "sample_input.npy", lambda p: np.save(open(p, "wb"), parity_x[:1]))
    atomic_write(out_dir / "sample_output.npy", lambda p: np.save(open(p, "wb"), parity_ref[:1]))
    ready = export_ready(model)
    example = (torch.from_numpy(parity_x[:1]),)
    stem = checkpoint.stem
    artifacts = []
    for fmt in cfg.formats:
        exporter = EXPORTERS.get(fmt)
        for precision in cfg.precisions:
            name = f"{stem}_{fmt}_{precision}"
            entry = {"name": name, "file": f"{name}.{exporter.ext}", "sha256": None, "bytes": None,
                     "format": fmt, "precision": precision,
                     "inputs": _io_spec(["clip"], [parity_x[:1]]), "outputs": _io_spec(["logits"], [parity_ref[:1]]),
                     "preprocess": preprocess, "labels": ckpt["label_names"],
                     "accuracy": None, "parity": None, "status": "failed", "reason": None}
            path = out_dir / entry["file"]
            t0 = time.perf_counter()
            try:
                progress(f"export {name}", 0, 1, {})
                entry["backend"] = exporter.export(ready, example, path, precision)
                entry["export_seconds"] = round(time.perf_counter() - t0, 2)
                session = exporter.load(path)
                parity = compare(parity_ref, run_session(session, parity_x))
                test_logits = run_session(session, test_x, progress, f"verify {name}")
                entry["accuracy"] = topk_accuracy(test_logits, test.labels)
                parity["top1_agreement"] = compare(ref_test_logits, test_logits)["top1_agreement"]
                entry["parity"] = parity
                entry["sha256"], entry["bytes"] = sha256_file(path), path.stat().st_size
                reason = cfg.gate.check(precision, parity, entry["accuracy"], ref_accuracy)
                entry["status"], entry["reason"] = ("ok", None) if reason is None else ("failed", reason)
            except ExportError as e:
                entry["reason"] = str(e)
                path.unlink(missing_ok=True)
                entry["file"] = None
            artifacts.append(entry)
    manifest = {"source": {"checkpoint": os.path.relpath(checkpoint.resolve(), out_dir.resolve()),
                           "sha256": sha256_file(checkpoint), "arch": ckpt["arch"],
                           "accuracy": ref_accuracy},
                "artifacts": artifacts}
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest
