"""Export an NLQ span model (LightVSLNet and kin) to every backend, gated on parity like the clip models.

The artifacts take ``video`` ``(1, max_pos_len, D)`` float32 features, ``video_mask``
``(1, max_pos_len)`` float32 and ``query_ids`` ``(1, max_query_len)`` int32, and return unmasked
``start_logits`` and ``end_logits`` ``(1, max_pos_len)``. Tokenising the query (``words`` over the
manifest's ``vocab``), resampling the features and decoding the top windows
(:func:`trainer.nlq.train.top_windows`) happen outside the artifact, in Python or the app.
Parity: fp32 by max |logit diff| over valid steps; reduced precisions by agreement of the top-1
window with PyTorch's and by the drop of Recall@1 at IoU 0.3 on the test split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edge.calibration import as_samples
from edge.export import ExportConfig, export_artifact, io_spec, needs_calibration, plan, runtime_failure
from edge.exporters import IONames, export_ready
from edge.parity import ParityGate
from edge.schema import validate
from trainer.common.io import EgoedgeError, atomic_write, sha256_file, write_json_atomic
from trainer.common.progress import Progress, no_progress
from trainer.nlq.data import NLQSplit
from trainer.nlq.metrics import accuracy_block, metrics_row
from trainer.nlq.train import (
    NLQData,
    NLQDataSpec,
    calibration_queries,
    evaluate_logits,
    load_data,
    load_nlq_model,
    logits_of,
    query_ids,
    top1_window_agreement,
)

NLQ_IO = IONames(("video", "video_mask", "query_ids"), ("start_logits", "end_logits"))
# Span logits pass through more layers than a classifier's; a window's argmax is what users see.
NLQ_GATE = ParityGate(fp32_max_abs=1e-3, int8_min_agreement=80.0, int8_max_accuracy_drop=2.0)


def nlq_inputs(data: NLQData, split: str, idx: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(video, video_mask, query_ids)`` of some queries, in the artifacts' dtypes."""
    s: NLQSplit = data.splits[split]
    return s.video[idx], s.video_mask[idx], query_ids(data, split, "words", idx)


def run_nlq_session(session, inputs: tuple[np.ndarray, ...], progress: Progress = no_progress,
                    stage: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits ``(N, T)`` of a batch-1 session over every query of ``inputs``."""
    starts, ends = [], []
    n = len(inputs[0])
    for i in range(n):
        st, en = session([x[i:i + 1] for x in inputs])
        starts.append(st.reshape(1, -1))
        ends.append(en.reshape(1, -1))
        progress(stage, i + 1, n, {})
    return np.concatenate(starts), np.concatenate(ends)


def span_parity(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], mask: np.ndarray) -> dict:
    """``max_abs`` logit difference over valid steps and % of queries whose top-1 window is PyTorch's."""
    valid = mask > 0
    diff = max(float(np.abs(r - g)[valid].max()) for r, g in zip(ref, got, strict=True))
    return {"max_abs": diff, "top1_agreement": top1_window_agreement(ref, got, mask)}


def export_nlq_checkpoint(checkpoint: str | Path, out_dir: str | Path, cfg: ExportConfig = ExportConfig(),
                          progress: Progress = no_progress, gate: ParityGate = NLQ_GATE) -> dict:
    """Export an NLQ checkpoint per ``cfg`` into ``out_dir``; returns the manifest (also written there).

    Example::

        export_nlq_checkpoint("runs/nlq/lightvslnet_kd.pt", "runs/nlq/export",
                              ExportConfig(formats=("executorch", "tflite", "onnx"), int8=True))
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    pairs = plan(cfg)
    model, ckpt = load_nlq_model(checkpoint)
    pre = ckpt["preprocess"]
    if pre["tokenizer"] != "words":
        raise EgoedgeError(f"{checkpoint} reads queries with {pre['tokenizer']}; only word-embedding models "
                           "(lightvslnet, vslnet, vslbase) export whole; train the student with --text words")
    data = load_data(NLQDataSpec(**ckpt["config"]["data"]), vocab=pre["vocab"])
    if cfg.parity_samples > len(data.splits["val"]):
        raise EgoedgeError(f"parity batch of {cfg.parity_samples} exceeds the {len(data.splits['val'])} val queries")
    parity_x = nlq_inputs(data, "val", slice(0, cfg.parity_samples))
    test_x = nlq_inputs(data, "test", slice(None))
    with torch.no_grad():
        parity_ref = tuple(t.numpy() for t in model(*(torch.from_numpy(x) for x in parity_x)))
    ref_test = logits_of(model, data, "test", "words")
    ref_row = metrics_row(evaluate_logits(data, "test", *ref_test)[1])
    calibration, calib_info = [], None
    if needs_calibration(pairs):
        n = min(cfg.calibration, len(data.splits["train"]))
        calibration = as_samples(*nlq_inputs(data, "train", calibration_queries(data, n, cfg.calibration_seed)))
        calib_info = {"source": f"{data.spec.root}/train", "samples": n, "seed": cfg.calibration_seed}

    out_dir.mkdir(parents=True, exist_ok=True)
    samples = {"sample_input.npz": dict(zip(NLQ_IO.inputs, (x[:1] for x in parity_x), strict=True)),
               "sample_output.npz": dict(zip(NLQ_IO.outputs, (x[:1] for x in parity_ref), strict=True))}
    for name, arrays in samples.items():
        atomic_write(out_dir / name, lambda p, a=arrays: np.savez(open(p, "wb"), **a))
    entry = {"inputs": io_spec(list(NLQ_IO.inputs), [x[:1] for x in parity_x]),
             "outputs": io_spec(list(NLQ_IO.outputs), [x[:1] for x in parity_ref]),
             "preprocess": pre, "labels": []}

    def verify(exporter, path: Path, precision: str, name: str) -> dict:
        if reason := exporter.unavailable():
            return {"status": "ok", "verified": f"spec only ({reason})"}
        try:
            session = exporter.load(path)
            got = run_nlq_session(session, parity_x)
            test = run_nlq_session(session, test_x, progress, f"verify {name}")
        except Exception as e:  # noqa: BLE001  (a runtime that loads but cannot execute the artifact)
            return runtime_failure(exporter, e)
        parity = span_parity(parity_ref, got, parity_x[1])
        parity["top1_agreement"] = span_parity(ref_test, test, test_x[1])["top1_agreement"]
        row = metrics_row(evaluate_logits(data, "test", *test)[1])
        reason = gate.check(precision, parity, accuracy_block(row), accuracy_block(ref_row))
        return {"accuracy": accuracy_block(row), "metrics": row, "parity": parity,
                "verified": "runtime", "status": "ok" if reason is None else "failed", "reason": reason}

    ready = export_ready(model)
    example = tuple(torch.from_numpy(x[:1]) for x in parity_x)
    artifacts = [export_artifact(fmt, precision, ready, example, out_dir, checkpoint.stem, calibration, entry,
                                 verify, progress, NLQ_IO) for fmt, precision in pairs]
    manifest = {"task": "nlq",
                "source": {"checkpoint": os.path.relpath(checkpoint.resolve(), out_dir.resolve()),
                           "sha256": sha256_file(checkpoint), "arch": ckpt["arch"],
                           "accuracy": accuracy_block(ref_row), "metrics": ref_row},
                "calibration": calib_info,
                "gate": {"fp32_max_abs": gate.fp32_max_abs, "int8_min_agreement": gate.int8_min_agreement,
                         "int8_max_accuracy_drop": gate.int8_max_accuracy_drop},
                "sample": {"clip": "sample_input.npz", "input": "sample_input.npz", "output": "sample_output.npz",
                           "label": data.splits["val"].queries[0].query},
                "artifacts": artifacts}
    validate(manifest, "manifest", "the manifest being written")
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest
