"""Export a checkpoint to every requested backend, gate each artifact on parity, write the manifest.

Reads top to bottom: load the checkpoint, its held-out data and the calibration set -> for each
backend and precision: export -> load -> run the parity batch and the test split -> compare with
PyTorch -> record ``ok`` or ``failed`` with the measured numbers and the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edge.calibration import as_samples, load_calibration_file
from edge.exporters import CLIP_IO, EXPORTERS, ExportError, IONames, export_ready
from edge.parity import ParityGate
from edge.schema import validate
from trainer.checkpoint import load_model, read_checkpoint
from trainer.common.io import (
    EgoedgeError,
    atomic_write,
    path_bytes,
    remove_path,
    sha256_file,
    sha256_path,
    write_json_atomic,
)
from trainer.common.lock import locks_folder
from trainer.common.progress import Progress, no_progress
from trainer.tasks import task_of
from trainer.tasks.base import model_outputs


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
    gate: ParityGate | None = None  # None: the checkpoint's task's default gate
    data: str | None = None  # a --data spec for calibration and parity; None: the checkpoint's own dataset


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


def run_session(session, inputs: tuple[np.ndarray, ...], progress: Progress = no_progress,
                stage: str = "") -> tuple[np.ndarray, ...]:
    """Run a batch-1 session over every sample of ``inputs`` (one ``(N, ...)`` array per model input).

    Returns one ``(N, ...)`` array per model output.
    """
    outs: list[list[np.ndarray]] = []
    n = len(inputs[0])
    for i in range(n):
        got = session([x[i:i + 1] for x in inputs])
        outs.append([o.reshape(1, -1) if o.ndim < 2 else o for o in got])  # some runtimes drop the batch axis
        progress(stage, i + 1, n, {})
    return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))


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


@locks_folder("out_dir", "egoedge export")
def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, cfg: ExportConfig = ExportConfig(),
                      progress: Progress = no_progress) -> dict:
    """Export a checkpoint of any task per ``cfg`` into ``out_dir``; returns the manifest (also written there).

    The checkpoint's task supplies the held-out data, the calibration draw, the scoring and the
    default parity gate; everything else is the same for every task.

    Example::

        cfg = ExportConfig(formats=("executorch", "tflite", "onnx", "coreml"), int8=True, calibration=256)
        manifest = export_checkpoint("runs/quick/student.pt", "runs/quick/export", cfg)
        [(a["name"], a["status"]) for a in manifest["artifacts"]]
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    pairs = plan(cfg)
    ckpt = read_checkpoint(checkpoint)
    task = task_of(ckpt)
    if cfg.data:
        ckpt = task.with_data(ckpt, cfg.data)
    model, ckpt = load_model(checkpoint, ckpt=ckpt)
    keep_float(model, cfg.int8_keep_float)
    ev = task.evaluation(ckpt)
    gate = cfg.gate or ParityGate(**asdict(task.gate))
    calibration, calib_info = [], None
    if needs_calibration(pairs):
        progress("calibration set", 0, 1, {})
        if cfg.calibration_file:
            if len(ev.inputs) != 1:
                raise EgoedgeError(f"--calib-file holds one input array; this {task.name} model takes "
                                   f"{len(ev.inputs)} ({', '.join(ev.inputs)}): calibrate from its dataset instead")
            sample_shape = tuple(model.example_inputs()[0].shape[1:])
            calib_x = (load_calibration_file(cfg.calibration_file, sample_shape),)
            calib_info = {"source": str(cfg.calibration_file), "samples": len(calib_x[0])}
        else:
            calib_x = ev.calibration(cfg.calibration, cfg.calibration_seed)
            calib_info = {"source": f"{ev.source}/train", "samples": len(calib_x[0]), "seed": cfg.calibration_seed}
        if cfg.int8_keep_float:
            calib_info["keep_float"] = list(cfg.int8_keep_float)
        calibration = as_samples(*calib_x)

    parity_x, test_x = ev.parity_inputs(cfg.parity_samples), ev.test_inputs()
    parity_ref, ref_test = model_outputs(model, parity_x), model_outputs(model, test_x)
    reference = ev.score(ref_test)

    out_dir.mkdir(parents=True, exist_ok=True)
    sample = write_samples(out_dir, ev, parity_x, parity_ref)
    entry = {"inputs": io_spec(list(ev.inputs), [x[:1] for x in parity_x]),
             "outputs": io_spec(list(ev.outputs), [x[:1] for x in parity_ref]),
             "preprocess": ckpt["preprocess"], "labels": ckpt["label_names"]}

    def verify(exporter, path: Path, precision: str, name: str) -> dict:
        """Run the artifact next to PyTorch and apply the gate; one this host cannot run is spec-checked only."""
        if reason := exporter.unavailable():
            return {"status": "ok", "verified": f"spec only ({reason})"}
        try:
            session = exporter.load(path)
            got = run_session(session, parity_x)
            test = run_session(session, test_x, progress, f"verify {name}")
        except Exception as e:  # noqa: BLE001  (a runtime that loads but cannot execute the artifact)
            return runtime_failure(exporter, e)
        scored = ev.score(test)
        parity = ev.parity(parity_ref, got, parity_x)
        parity["top1_agreement"] = ev.parity(ref_test, test, test_x)["top1_agreement"]
        reason = gate.check(precision, parity, scored["accuracy"], reference["accuracy"])
        if reason and parity["top1_agreement"] < 100.0 and (note := ev.flip_note(ref_test, test)):
            reason += "; " + note
        return {**scored, "parity": parity, "verified": "runtime",
                "status": "ok" if reason is None else "failed", "reason": reason}

    ready = export_ready(model)
    example = tuple(torch.from_numpy(x[:1]) for x in parity_x)
    names = IONames(tuple(ev.inputs), tuple(ev.outputs))
    artifacts = [export_artifact(fmt, precision, ready, example, out_dir, checkpoint.stem, calibration, entry,
                                 verify, progress, names) for fmt, precision in pairs]
    manifest = {"task": task.name,
                "source": {"checkpoint": os.path.relpath(checkpoint.resolve(), out_dir.resolve()),
                           "sha256": sha256_file(checkpoint), "arch": ckpt["arch"], **reference},
                "calibration": calib_info,
                "gate": asdict(gate),
                "sample": sample,
                "artifacts": artifacts}
    validate(manifest, "manifest", "the manifest being written")
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def write_samples(out_dir: Path, ev, inputs: tuple[np.ndarray, ...], outputs: tuple[np.ndarray, ...]) -> dict:
    """Save the parity batch's first sample (inputs and PyTorch's outputs) beside the artifacts; the manifest block.

    One array is saved as ``.npy``, several as ``.npz`` keyed by tensor name. A task with a raw
    form of the sample (a uint8 clip) saves it too, so an app can replay its own preprocessing.
    """
    files = {}
    for stem, names, arrays in (("sample_input", ev.inputs, inputs), ("sample_output", ev.outputs, outputs)):
        first = [a[:1] for a in arrays]
        if len(first) == 1:
            files[stem] = f"{stem}.npy"
            atomic_write(out_dir / files[stem], lambda p, a=first[0]: np.save(open(p, "wb"), a))
        else:
            files[stem] = f"{stem}.npz"
            atomic_write(out_dir / files[stem], lambda p, a=dict(zip(names, first, strict=True)):
                         np.savez(open(p, "wb"), **a))
    raw = ev.raw_sample()
    if raw is not None:
        atomic_write(out_dir / "sample_clip.npy", lambda p: np.save(open(p, "wb"), raw))
    return {"clip": "sample_clip.npy" if raw is not None else files["sample_input"],
            "input": files["sample_input"], "output": files["sample_output"], **ev.sample()}


def runtime_failure(exporter, error: BaseException) -> dict:
    """Manifest fields of an artifact whose runtime loads but cannot execute it."""
    return {"status": "failed", "verified": "runtime",
            "reason": f"{exporter.format}: running the artifact failed: {type(error).__name__}: "
                      f"{(str(error).splitlines() or [''])[0][:300]}"}
