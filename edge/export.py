"""Export a checkpoint to every requested backend, gate each artifact on parity, write the manifest.

Reads top to bottom: load the checkpoint, its held-out data and the calibration set -> for each
backend and precision: export -> load -> run the parity batch and the test split -> compare with
PyTorch -> record ``ok`` or ``failed`` with the measured numbers and the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.calibration import as_samples, calibration_inputs, check_preprocess, load_calibration_file
from edge.exporters import CLIP_IO, EXPORTERS, ExportError, IONames, export_ready
from edge.parity import ParityGate, compare
from edge.schema import validate
from trainer.checkpoint import load_model
from trainer.common.io import (
    EgoedgeError,
    atomic_write,
    path_bytes,
    remove_path,
    sha256_file,
    sha256_path,
    write_json_atomic,
)
from trainer.common.progress import Progress, no_progress
from trainer.data import DataConfig, load_split, to_model_input
from trainer.train import predict, topk_accuracy


@dataclass(frozen=True)
class ExportConfig:
    """Which backends and precisions to produce, how to calibrate, and how strictly to check.

    ``precisions=None`` means each backend's float precisions, plus its int8 ones if ``int8``.
    """

    formats: tuple[str, ...] = ("executorch",)
    precisions: tuple[str, ...] | None = None
    int8: bool = False
    calibration: int = 256
    calibration_file: str | None = None
    calibration_seed: int = 0
    # Modules (by name, e.g. "pool", "head") that every int8 artifact leaves fp32: PT2E backends
    # (ExecuTorch, LiteRT, Core ML) skip their nodes, ONNX Runtime excludes the nodes traced in them.
    int8_keep_float: tuple[str, ...] = ()
    parity_samples: int = 32
    gate: ParityGate = field(default_factory=ParityGate)


def plan(cfg: ExportConfig) -> list[tuple[str, str]]:
    """The ``(format, precision)`` pairs ``cfg`` asks for; an unknown one fails before any work."""
    pairs = []
    for fmt in cfg.formats:
        exporter = EXPORTERS.get(fmt)
        wanted = cfg.precisions or exporter.float_precisions + (exporter.int8_precisions if cfg.int8 else ())
        for precision in wanted:
            if precision not in exporter.precisions:
                if cfg.precisions and len(cfg.formats) > 1:
                    continue  # --precision int8 with several backends: each makes the ones it has
                raise EgoedgeError(f"{fmt} cannot produce precision '{precision}'; "
                                   f"it makes: {', '.join(exporter.precisions)}")
            pairs.append((fmt, precision))
    if not pairs:
        raise EgoedgeError(f"none of {', '.join(cfg.formats)} can produce {', '.join(cfg.precisions or ())}")
    return pairs


def needs_calibration(pairs: list[tuple[str, str]]) -> bool:
    return any(p in ("int8", "w8a8") for _, p in pairs)


def io_spec(names: list[str], arrays: list[np.ndarray]) -> list[dict]:
    return [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype), "scale": None, "zero_point": None}
            for n, a in zip(names, arrays, strict=True)]


def run_session(session, inputs: np.ndarray, progress: Progress = no_progress, stage: str = "") -> np.ndarray:
    """Run a batch-1 session over every sample of ``inputs`` ``(N, ...)``; returns stacked outputs."""
    outs = []
    for i in range(len(inputs)):
        outs.append(session([inputs[i:i + 1]])[0])
        progress(stage, i + 1, len(inputs), {})
    return np.concatenate(outs)


# verify(exporter, path, precision, name) -> manifest fields: status, verified, parity, accuracy, reason
Verify = Callable[[object, Path, str, str], dict]


def export_artifact(fmt: str, precision: str, model: torch.nn.Module, example: tuple[torch.Tensor, ...],
                    out_dir: Path, stem: str, calibration: list, entry: dict, verify: Verify,
                    progress: Progress = no_progress, names: IONames = CLIP_IO) -> dict:
    """Export one ``(format, precision)`` artifact, hash it and verify it; returns its manifest entry.

    ``entry`` supplies the task's fields (IO specs, preprocess, labels); an export error becomes
    a ``failed`` entry with the reason, never an exception.
    """
    exporter = EXPORTERS.get(fmt)
    name = f"{stem}_{fmt}_{precision}"
    entry = {"name": name, "file": f"{name}.{exporter.ext}", "sha256": None, "bytes": None,
             "format": fmt, "precision": precision, **entry,
             "accuracy": None, "parity": None, "status": "failed", "reason": None, "verified": None}
    path = out_dir / entry["file"]
    t0 = time.perf_counter()
    progress(f"export {name}", 0, 1, {})
    try:
        backend = exporter.export(model, example, path, precision, calibration, names)
    except ExportError as e:
        entry["reason"] = str(e)
        remove_path(path)
        entry["file"] = None
        return entry
    entry["export_seconds"] = round(time.perf_counter() - t0, 2)
    entry["inputs"] = backend.pop("inputs", entry["inputs"])
    entry["outputs"] = backend.pop("outputs", entry["outputs"])
    entry["backend"] = backend
    entry["sha256"], entry["bytes"] = sha256_path(path), path_bytes(path)
    entry.update(verify(exporter, path, precision, name))
    return entry


def keep_float(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Add ``names`` to the modules ``model``'s int8 quantization leaves fp32; an unknown name is an error.

    Example: ``keep_float(model, ("pool", "head"))`` keeps a clip student's temporal pool and classifier fp32.
    """
    if not names:
        return
    modules = dict(model.named_modules())
    unknown = [n for n in names if not n or n not in modules]
    if unknown:
        top = ", ".join(n for n, _ in model.named_children())
        raise EgoedgeError(f"--int8-keep-float: no module named {', '.join(map(repr, unknown))} in this model; "
                           f"its top-level modules are {top}")
    model.float_modules = tuple(dict.fromkeys((*getattr(model, "float_modules", ()), *names)))


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, cfg: ExportConfig = ExportConfig(),
                      progress: Progress = no_progress) -> dict:
    """Export ``checkpoint`` per ``cfg`` into ``out_dir``; returns the manifest (also written there).

    Example::

        cfg = ExportConfig(formats=("executorch", "tflite", "onnx", "coreml"), int8=True, calibration=256)
        manifest = export_checkpoint("runs/quick/student.pt", "runs/quick/export", cfg)
        [(a["name"], a["status"]) for a in manifest["artifacts"]]
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    pairs = plan(cfg)
    model, ckpt = load_model(checkpoint)
    keep_float(model, cfg.int8_keep_float)
    data_cfg = DataConfig(**ckpt["config"]["data"])
    preprocess = ckpt["preprocess"]
    check_preprocess(preprocess, data_cfg)
    example_shape = tuple(model.example_inputs()[0].shape[1:])

    calibration, calib_info = [], None
    if needs_calibration(pairs):
        progress("calibration set", 0, 1, {})
        if cfg.calibration_file:
            calib_x = load_calibration_file(cfg.calibration_file, example_shape)
            calib_info = {"source": str(cfg.calibration_file), "samples": len(calib_x)}
        else:
            calib_x = calibration_inputs(data_cfg, preprocess, cfg.calibration, cfg.calibration_seed)
            calib_info = {"source": f"{data_cfg.name}/train", "samples": len(calib_x), "seed": cfg.calibration_seed}
        if cfg.int8_keep_float:
            calib_info["keep_float"] = list(cfg.int8_keep_float)
        calibration = as_samples(calib_x)

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
    # The same clip raw: an app runs its own preprocessing on it and must get sample_input.npy.
    atomic_write(out_dir / "sample_clip.npy", lambda p: np.save(open(p, "wb"), val.clips[0]))
    ready = export_ready(model)
    example = (torch.from_numpy(parity_x[:1]),)
    entry = {"inputs": io_spec(["clip"], [parity_x[:1]]), "outputs": io_spec(["logits"], [parity_ref[:1]]),
             "preprocess": preprocess, "labels": ckpt["label_names"]}

    def verify(exporter, path: Path, precision: str, name: str) -> dict:
        return _verify(exporter, path, precision, parity_x, parity_ref, test_x, test.labels,
                       ref_test_logits, ref_accuracy, cfg.gate, progress, name)

    artifacts = [export_artifact(fmt, precision, ready, example, out_dir, checkpoint.stem, calibration, entry,
                                 verify, progress) for fmt, precision in pairs]
    manifest = {"source": {"checkpoint": os.path.relpath(checkpoint.resolve(), out_dir.resolve()),
                           "sha256": sha256_file(checkpoint), "arch": ckpt["arch"],
                           "accuracy": ref_accuracy},
                "calibration": calib_info,
                "gate": {"fp32_max_abs": cfg.gate.fp32_max_abs, "int8_min_agreement": cfg.gate.int8_min_agreement,
                         "int8_max_accuracy_drop": cfg.gate.int8_max_accuracy_drop},
                "sample": {"clip": "sample_clip.npy", "input": "sample_input.npy", "output": "sample_output.npy",
                           "label": ckpt["label_names"][int(val.labels[0])]},
                "artifacts": artifacts}
    validate(manifest, "manifest", "the manifest being written")
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def runtime_failure(exporter, error: BaseException) -> dict:
    """Manifest fields of an artifact whose runtime loads but cannot execute it."""
    return {"status": "failed", "verified": "runtime",
            "reason": f"{exporter.format}: running the artifact failed: {type(error).__name__}: "
                      f"{(str(error).splitlines() or [''])[0][:300]}"}


def undecided_note(reference: np.ndarray, candidate: np.ndarray) -> str:
    """Why predictions flipped: how many clips the fp32 model itself barely decides.

    A clip whose top-2 logit margin is below the artifact's own error can flip under any
    reduced precision; many such clips point at an undertrained model, not a broken export.
    """
    top2 = np.sort(reference, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    error = np.abs(reference - candidate).max(axis=-1)
    flipped = int((reference.argmax(-1) != candidate.argmax(-1)).sum())
    undecided = float(100.0 * np.mean(margin < 2 * error))
    return (f"{flipped} of {len(reference)} test clips flipped; on {undecided:.1f}% of clips the fp32 top-2 margin "
            f"is under twice this artifact's logit error (median fp32 margin {np.median(margin):.3f})")


def _verify(exporter, path: Path, precision: str, parity_x: np.ndarray, parity_ref: np.ndarray,
            test_x: np.ndarray, labels: np.ndarray, ref_test_logits: np.ndarray, ref_accuracy: dict,
            gate: ParityGate, progress: Progress, name: str) -> dict:
    """Run the artifact next to PyTorch and apply the gate; an artifact this host cannot run is spec-checked only."""
    if reason := exporter.unavailable():
        return {"status": "ok", "verified": f"spec only ({reason})"}
    try:
        session = exporter.load(path)
        parity = compare(parity_ref, run_session(session, parity_x))
        test_logits = run_session(session, test_x, progress, f"verify {name}")
    except Exception as e:  # noqa: BLE001  (a runtime that loads but cannot execute the artifact)
        return runtime_failure(exporter, e)
    accuracy = topk_accuracy(test_logits, labels)
    parity["top1_agreement"] = compare(ref_test_logits, test_logits)["top1_agreement"]
    reason = gate.check(precision, parity, accuracy, ref_accuracy)
    if reason and parity["top1_agreement"] < 100.0:
        reason += "; " + undecided_note(ref_test_logits, test_logits)
    return {"accuracy": accuracy, "parity": parity, "verified": "runtime",
            "status": "ok" if reason is None else "failed", "reason": reason}
