"""Export a checkpoint to every requested backend, gate each artifact on parity, write the manifest.

Reads top to bottom: load the checkpoint, its held-out data and the calibration set -> for each
backend and precision: export -> load -> run the parity batch and the test split -> compare with
PyTorch -> record ``ok`` or ``failed`` with the measured numbers and the reason.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edge.artifact import export_artifact, io_spec, run_session, runtime_failure
from edge.calibration import as_samples, load_calibration_file
from edge.exporters import EXPORTERS, IONames, export_ready
from edge.parity import ParityGate
from edge.schema import validate
from edge.stream_export import export_pair, pair_checker, stream_calibration, streaming_block, write_stream_sample
from trainer.checkpoint import load_model, read_checkpoint
from trainer.common.io import (
    EgoedgeError,
    atomic_write,
    sha256_file,
    write_json_atomic,
)
from trainer.common.lock import locks_folder
from trainer.common.progress import Progress, no_progress
from trainer.models.streaming import split_streaming
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
    # Also a frame encoder + temporal head per backend and precision, for a live camera (edge/stream_export.py).
    streaming: bool = False


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
    source = {"checkpoint": os.path.relpath(checkpoint.resolve(), out_dir.resolve()),
              "sha256": sha256_file(checkpoint), "arch": ckpt["arch"]}
    entry = {"preprocess": ckpt["preprocess"], "labels": ckpt["label_names"], "role": "clip"}
    return export_model(model, task, task.evaluation(ckpt), out_dir, cfg, pairs, checkpoint.stem, source, entry,
                        f"{checkpoint} ({ckpt['arch']})", progress)


def export_model(model: torch.nn.Module, task, ev, out_dir: Path, cfg: ExportConfig, pairs: list[tuple[str, str]],
                 stem: str, source: dict, entry: dict, where: str, progress: Progress = no_progress) -> dict:
    """Export ``model`` to every ``(format, precision)`` of ``pairs``, each gated on ``ev``; writes the manifest.

    ``source`` is the manifest's source block (the file the model came from); ``entry`` the
    task's fields of every artifact (preprocess, labels, role).
    """
    keep_float(model, cfg.int8_keep_float)
    ready = export_ready(model)
    # A model that cannot stream fails here, before any work.
    halves = split_streaming(ready, where) if cfg.streaming else None
    gate = cfg.gate or ParityGate(**asdict(task.gate))
    calibration, calib_info = [], None
    if needs_calibration(pairs):
        progress("calibration set", 0, 1, {})
        if cfg.calibration_file:
            if len(ev.inputs) != 1:
                raise EgoedgeError(f"--calib-file holds one input array; this {task.name} model takes "
                                   f"{len(ev.inputs)} ({', '.join(ev.inputs)}): calibrate from its dataset instead")
            calib_x = (load_calibration_file(cfg.calibration_file, tuple(ev.parity_inputs(1)[0].shape[1:])),)
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
             "outputs": io_spec(list(ev.outputs), [x[:1] for x in parity_ref]), **entry}

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

    example = tuple(torch.from_numpy(x[:1]) for x in parity_x)
    names = IONames(tuple(ev.inputs), tuple(ev.outputs))
    artifacts = [export_artifact(fmt, precision, ready, example, out_dir, stem, calibration, entry,
                                 verify, progress, names) for fmt, precision in pairs]
    streaming = None
    if halves is not None:
        encoder, head = halves
        stream_calib = stream_calibration(encoder, calib_x[0]) if calibration else ([], [])
        frames, expected, fields = write_stream_sample(out_dir, ready, encoder, head, parity_x[0])
        check = pair_checker(ev, gate, reference, (parity_x, parity_ref), (test_x, ref_test), (frames, expected),
                             head.frames, head.embed_dim, progress)
        for fmt, precision in pairs:
            artifacts += export_pair(fmt, precision, encoder, head, out_dir, stem, stream_calib,
                                     {k: v for k, v in entry.items() if k not in ("inputs", "outputs", "role")},
                                     check, progress)
        streaming = streaming_block(encoder, head, fields)
    manifest = {"task": task.name,
                "source": {**source, **reference},
                "calibration": calib_info,
                "gate": asdict(gate),
                "sample": sample,
                "artifacts": artifacts}
    if streaming is not None:
        manifest["streaming"] = streaming
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
