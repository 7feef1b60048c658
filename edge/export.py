"""Export a checkpoint to every requested backend, gate each artifact on parity, write the manifest.

Reads top to bottom: load the checkpoint, its held-out data and the calibration set -> for each
backend and precision: export -> load -> run the parity batch and the test split -> compare with
PyTorch -> record ``ok`` or ``failed`` with the measured numbers and the reason.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from egoedge.edge.artifact import export_artifact, io_spec, run_session, runtime_failure
from egoedge.edge.exporters import EXPORTERS, IONames, export_ready
from egoedge.edge.int8 import Int8Recipe, chosen_recipe, program_recipe, save_recipe
from egoedge.edge.parity import ParityGate
from egoedge.edge.schema import validate
from egoedge.edge.stream_export import (
    export_pair,
    pair_checker,
    pair_programs,
    stream_calibration,
    streaming_block,
    write_stream_sample,
)
from egoedge.trainer.checkpoint import load_model, read_checkpoint
from egoedge.trainer.common.io import (
    EgoedgeError,
    atomic_write,
    sha256_file,
    write_json_atomic,
)
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.calibration import as_samples, load_calibration_file
from egoedge.trainer.models.exportable import int8_ready
from egoedge.trainer.models.streaming import split_streaming
from egoedge.trainer.quantize.program import read_ptq
from egoedge.trainer.tasks import task_of
from egoedge.trainer.tasks.base import model_outputs


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
    """Export a checkpoint of any task, or a PTQ program of one (``NAME_int8.pt2``), per ``cfg`` into ``out_dir``.

    The checkpoint's task supplies the held-out data, the calibration draw, the scoring and the
    default parity gate; everything else is the same for every task. A PTQ program is lowered as
    it is for every int8 artifact (and implies ``int8``); the fp32 artifacts come from the
    checkpoint it was quantized from. Returns the manifest (also written there).

    Example::

        cfg = ExportConfig(formats=("executorch", "tflite", "onnx", "coreml"), int8=True, calibration=256)
        manifest = export_checkpoint("runs/quick/student.pt", "runs/quick/export", cfg)
        [(a["name"], a["status"]) for a in manifest["artifacts"]]
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    program = checkpoint if checkpoint.suffix == ".pt2" else None
    record = None
    if program is not None:
        report, checkpoint = read_ptq(program)
        record = report["record"]
        if cfg.int8_keep_float:
            raise EgoedgeError(f"{program.name} keeps {', '.join(record['keep_float']) or 'nothing'} fp32 already; "
                               "--int8-keep-float is for exporting a checkpoint")
        if cfg.calibration_file:
            raise EgoedgeError(f"{program.name} was calibrated when it was made; --calib-file is for a checkpoint")
        cfg = replace(cfg, int8=True, data=cfg.data or record.get("data"))
    pairs = plan(cfg)
    ckpt = read_checkpoint(checkpoint)
    task = task_of(ckpt)
    if cfg.data:
        ckpt = task.with_data(ckpt, cfg.data)
    model, ckpt = load_model(checkpoint, ckpt=ckpt)
    source = {"checkpoint": os.path.relpath(checkpoint.resolve(), out_dir.resolve()),
              "sha256": sha256_file(checkpoint), "arch": ckpt["arch"], "task": task.name, "data": cfg.data}
    entry = {"preprocess": ckpt["preprocess"], "labels": ckpt["label_names"], "role": "clip"}
    ev = task.evaluation(ckpt)
    recipe = None
    if program is not None and needs_calibration(pairs):
        progress("calibration set", 0, 1, {})
        recipe, _ = program_recipe(program, lambda n, seed: as_samples(*ev.calibration(n, seed)))
        recipe = replace(recipe, file=os.path.relpath(program.resolve(), out_dir.resolve()))
        source["program"] = recipe.file
    return export_model(model, task, ev, out_dir, cfg, pairs, checkpoint.stem, source, entry,
                        f"{checkpoint} ({ckpt['arch']})", progress, recipe)


def export_model(model: torch.nn.Module, task, ev, out_dir: Path, cfg: ExportConfig, pairs: list[tuple[str, str]],
                 stem: str, source: dict, entry: dict, where: str, progress: Progress = no_progress,
                 recipe: Int8Recipe | None = None) -> dict:
    """Export ``model`` to every ``(format, precision)`` of ``pairs``, each gated on ``ev``; writes the manifest.

    ``source`` is the manifest's source block (the file the model came from); ``entry`` the
    task's fields of every artifact (preprocess, labels, role). ``recipe``: the int8 program to
    lower (a PTQ file); without one it is made here (:mod:`edge.int8`) and saved beside the artifacts.
    """
    keep_float(model, cfg.int8_keep_float)
    ready = export_ready(model)
    quantizable = int8_ready(model) if needs_calibration(pairs) and recipe is None else None
    if cfg.streaming:  # a model that cannot stream fails here, before any work
        split_streaming(ready, where)
    gate = cfg.gate or ParityGate(**asdict(task.gate))
    calib_x = None
    if needs_calibration(pairs) and recipe is None:
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
    parity_x, test_x = ev.parity_inputs(cfg.parity_samples), ev.test_inputs()
    example = tuple(torch.from_numpy(x[:1]) for x in parity_x)
    if calib_x is not None:
        recipe = chosen_recipe(quantizable, example, as_samples(*calib_x), calib_info, cfg.int8_keep_float, ev,
                               gate.int8_min_agreement, progress)
    if recipe is not None:
        keep_float(ready, recipe.keep_float)

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
            # On this process's thread budget: a run exporting two students at once gives each half the cores.
            session = exporter.load(path, threads=torch.get_num_threads())
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

    names = IONames(tuple(ev.inputs), tuple(ev.outputs))

    def export_all(which: list[tuple[str, str]]) -> list[dict]:
        program = recipe.program if recipe is not None else None
        return [export_artifact(fmt, precision, ready, example, out_dir, stem, recipe.calibration if recipe else [],
                                entry, verify, progress, names, program) for fmt, precision in which]

    artifacts = export_all(pairs)
    # The gate decides how much stays fp32: while an int8 artifact misses it, keep the next module float.
    while recipe is not None and (missed := [a for a in artifacts if _missed_gate(a)]):
        worst = min(a["parity"]["top1_agreement"] for a in missed)
        progress("int8: keeping more fp32", 0, 1, {})
        wider = recipe.widened(worst, gate.int8_min_agreement)
        if wider is None:
            break
        recipe = wider
        keep_float(ready, recipe.keep_float)
        keep_float(quantizable, recipe.keep_float)
        progress(f"int8: keeping {', '.join(recipe.keep_float)} fp32", 0, 1, {})
        redo = [(f, p) for f, p in pairs if p in EXPORTERS.get(f).int8_precisions]
        again = dict(zip(redo, export_all(redo), strict=True))
        artifacts = [again.get((a["format"], a["precision"]), a) for a in artifacts]
    if recipe is not None and recipe.file is None:
        recipe = save_recipe(recipe, out_dir, stem, example, source)

    streaming = None
    if cfg.streaming:
        encoder, head = split_streaming(ready, where)  # after the int8 recipe is final: it names what stays fp32
        stream_calib = stream_calibration(encoder, _clips(recipe.calibration)) if recipe is not None else ([], [])
        frames, expected, fields = write_stream_sample(out_dir, ready, encoder, head, parity_x[0])
        check = pair_checker(ev, gate, reference, (parity_x, parity_ref), (test_x, ref_test), (frames, expected),
                             head.frames, head.embed_dim, progress)
        static_int8 = [(f, p) for f, p in pairs if p == getattr(EXPORTERS.get(f), "program_precision", None)]
        programs = pair_programs(encoder, head, stream_calib, progress) if recipe is not None and static_int8 \
            else None
        for fmt, precision in pairs:
            artifacts += export_pair(fmt, precision, encoder, head, out_dir, stem, stream_calib,
                                     {k: v for k, v in entry.items() if k not in ("inputs", "outputs", "role")},
                                     check, progress, programs)
        streaming = streaming_block(encoder, head, fields)
    manifest = {"task": task.name,
                "source": {**{k: v for k, v in source.items() if v is not None}, **reference},
                "calibration": None if recipe is None else {
                    **recipe.calib_info, **({"keep_float": list(recipe.keep_float)} if recipe.keep_float else {})},
                "gate": asdict(gate),
                "sample": sample,
                "artifacts": artifacts}
    if recipe is not None:
        manifest["int8"] = recipe.block()
    if streaming is not None:
        manifest["streaming"] = streaming
    validate(manifest, "manifest", "the manifest being written")
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def _missed_gate(artifact: dict) -> bool:
    """An int8 artifact that ran and was refused by the parity gate (not one that failed to export or run)."""
    return artifact["status"] == "failed" and artifact.get("parity") is not None and artifact["precision"] != "fp32"


def _clips(calibration: list[tuple[torch.Tensor, ...]]) -> np.ndarray:
    """The calibration samples' single input as one ``(N, ...)`` array (the streaming halves calibrate on it)."""
    return torch.cat([sample[0] for sample in calibration]).numpy()


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
            named = dict(zip(names, first, strict=True))
            atomic_write(out_dir / files[stem], lambda p, a=named: np.savez(open(p, "wb"), **a))
    raw = ev.raw_sample()
    if raw is not None:
        atomic_write(out_dir / "sample_clip.npy", lambda p: np.save(open(p, "wb"), raw))
    return {"clip": "sample_clip.npy" if raw is not None else files["sample_input"],
            "input": files["sample_input"], "output": files["sample_output"], **ev.sample()}
