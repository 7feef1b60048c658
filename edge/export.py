"""Export a checkpoint to every requested backend, gate each artifact on parity, write the manifest.

Reads top to bottom: an :class:`ExportPlan` (the model, its task's data, the backends and
precisions, where int8 comes from) is settled first; :func:`carry_out` then resolves the model's
forms, quantizes (the int8 recipe of :mod:`edge.int8`), lowers per backend and verifies each
artifact against PyTorch on the parity batch and the test split, keeps more modules fp32 while an
int8 artifact misses its gate, adds the streaming pairs, and writes the manifest.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from egoedge.edge.artifact import export_artifact, io_spec, run_session, runtime_failure
from egoedge.edge.exporters import EXPORTERS, IONames, export_ready, from_recipe, lowers_program
from egoedge.edge.gap import attach_gap, gap_path
from egoedge.edge.int8 import OBSERVER, Int8Recipe, chosen_recipe, program_recipe, save_recipe
from egoedge.edge.parity import ParityGate, on_test_split
from egoedge.edge.schema import validate
from egoedge.edge.stream_export import (
    embed_clips,
    export_pair,
    export_step,
    frame_checker,
    pair_checker,
    pair_gaps,
    pair_programs,
    recommended_forms,
    step_calibration,
    step_checker,
    step_gap,
    step_program,
    stream_calibration,
    streaming_block,
    write_stream_sample,
)
from egoedge.trainer.checkpoint import load_model, read_checkpoint
from egoedge.trainer.common.io import (
    EgoedgeError,
    atomic_write,
    remove_path,
    sha256_file,
    write_json_atomic,
)
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.calibration import as_samples, load_calibration_file
from egoedge.trainer.models.exportable import int8_ready
from egoedge.trainer.models.streaming import split_streaming, stream_step
from egoedge.trainer.quantize.program import read_ptq
from egoedge.trainer.quantize.ptq import GAP_SAMPLES
from egoedge.trainer.tasks import task_of
from egoedge.trainer.tasks.base import Evaluation, Task, model_outputs


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
    # Also a fused per-frame step and a frame encoder + temporal head pair per backend and precision, for a live
    # camera (edge/stream_export.py); pairs only for ``pair_formats`` where given (None: every backend).
    streaming: bool = False
    pair_formats: tuple[str, ...] | None = None


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


STATIC_INT8 = ("int8", "w8a8")  # precisions with int8 activations: calibrated, and made from the int8-ready form


def needs_calibration(pairs: list[tuple[str, str]]) -> bool:
    return any(p in STATIC_INT8 for _, p in pairs)


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
    return carry_out(ExportPlan(model, task, ev, out_dir, cfg, checkpoint.stem, source, entry,
                                f"{checkpoint} ({ckpt['arch']})", recipe), progress)


@dataclass(frozen=True)
class ExportPlan:
    """One export, settled before any work: the model, its task's data, the backends and precisions, the int8 source.

    :func:`carry_out` does it stage by stage: resolve the model's forms, quantize (the int8 recipe),
    lower per backend and verify each artifact, keep more modules fp32 while an int8 artifact misses
    its gate, the streaming pairs, the manifest.

    Example::

        plan = ExportPlan(model, task, task.evaluation(ckpt), Path("export"), ExportConfig(int8=True), "student",
                          source={"checkpoint": "../student.pt", "sha256": "..."}, entry={"preprocess": ...},
                          where="student.pt (resnet)")
        manifest = carry_out(plan)
    """

    model: torch.nn.Module  # the source in eval mode: the reference every artifact is compared with
    task: Task
    ev: Evaluation
    out_dir: Path
    cfg: ExportConfig
    stem: str  # artifact names start with it
    source: dict  # the manifest's source block: the file the model came from
    entry: dict  # the task's fields of every artifact (preprocess, labels, role)
    where: str  # how a one-line error names the model
    recipe: Int8Recipe | None = None  # a PTQ program to lower as it is; None: made here if int8 is asked for

    @cached_property
    def pairs(self) -> list[tuple[str, str]]:
        """Every ``(format, precision)`` to produce."""
        return plan(self.cfg)

    @cached_property
    def gate(self) -> ParityGate:
        """The parity gate: the config's, else the task's default."""
        return self.cfg.gate or ParityGate(**asdict(self.task.gate))

    @property
    def calibrates(self) -> bool:
        """Whether int8 is asked for and must be calibrated here (no PTQ program was given)."""
        return needs_calibration(self.pairs) and self.recipe is None


@dataclass
class _Forms:
    """The model in the forms the stages use; both carry the modules that stay fp32."""

    ready: torch.nn.Module  # export-ready: what fp32 and weight-only artifacts lower
    # int8-ready: what the gate's search quantizes and every static int8 artifact starts from (None: no int8)
    quantizable: torch.nn.Module | None

    def follow(self, recipe: Int8Recipe) -> None:
        """Both forms keep the recipe's modules fp32 (:func:`keep_float`) and carry its bias correction, which the
        int8 a backend makes on its own repeats (ONNX Runtime's QDQ model, LiteRT's weight-only w8)."""
        for model in (self.ready, self.quantizable):
            if model is not None:
                keep_float(model, recipe.keep_float)
                model.int8_bias_correction = recipe.bias_correction


@dataclass(frozen=True)
class _HeldOut:
    """The parity batch and test split, PyTorch's outputs on them, and the batch-1 example every lowering traces."""

    parity_x: tuple[np.ndarray, ...]
    test_x: tuple[np.ndarray, ...]
    example: tuple[torch.Tensor, ...]
    parity_ref: tuple[np.ndarray, ...] = ()
    ref_test: tuple[np.ndarray, ...] = ()
    reference: dict = field(default_factory=dict)  # the source's scores on the test split


def carry_out(plan: ExportPlan, progress: Progress = no_progress) -> dict:
    """Do an export plan: resolve, quantize, lower per backend and verify, widen, stream, write the manifest."""
    forms = _resolve(plan)
    calibration = _calibration_set(plan, progress)
    held = _held_out(plan)
    recipe = _int8_recipe(plan, forms, held, calibration, progress)
    held = _reference(plan, held)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    sample = write_samples(plan.out_dir, plan.ev, held.parity_x, held.parity_ref)
    entry = {"inputs": io_spec(list(plan.ev.inputs), [x[:1] for x in held.parity_x]),
             "outputs": io_spec(list(plan.ev.outputs), [x[:1] for x in held.parity_ref]), **plan.entry}
    artifacts, recipe = _lower_all(plan, forms, held, recipe, entry, progress)
    if recipe is not None and recipe.file is None:
        recipe = save_recipe(recipe, plan.out_dir, plan.stem, held.example, plan.source)
    streaming = None
    if plan.cfg.streaming:
        pairs, streaming = _streaming_pairs(plan, forms, held, recipe, entry, progress)
        artifacts += pairs
    return _write_manifest(plan, held, recipe, sample, artifacts, streaming)


def _resolve(plan: ExportPlan) -> _Forms:
    """The model's export-ready and int8-ready forms, with the user's fp32 modules; a model that cannot stream fails
    here, before any work."""
    keep_float(plan.model, plan.cfg.int8_keep_float)
    ready = export_ready(plan.model)
    forms = _Forms(ready, int8_ready(plan.model) if needs_calibration(plan.pairs) else None)
    if plan.cfg.streaming:
        split_streaming(ready, plan.where)
    return forms


def _calibration_set(plan: ExportPlan, progress: Progress) -> tuple[tuple[np.ndarray, ...], dict] | None:
    """The calibration inputs and the manifest's note of where they came from (``None``: nothing to calibrate)."""
    if not plan.calibrates:
        return None
    cfg, ev = plan.cfg, plan.ev
    progress("calibration set", 0, 1, {})
    if cfg.calibration_file:
        if len(ev.inputs) != 1:
            raise EgoedgeError(f"--calib-file holds one input array; this {plan.task.name} model takes "
                               f"{len(ev.inputs)} ({', '.join(ev.inputs)}): calibrate from its dataset instead")
        x = (load_calibration_file(cfg.calibration_file, tuple(ev.parity_inputs(1)[0].shape[1:])),)
        return x, {"source": str(cfg.calibration_file), "samples": len(x[0])}
    x = ev.calibration(cfg.calibration, cfg.calibration_seed)
    return x, {"source": f"{ev.source}/train", "samples": len(x[0]), "seed": cfg.calibration_seed}


def _held_out(plan: ExportPlan) -> _HeldOut:
    parity_x, test_x = plan.ev.parity_inputs(plan.cfg.parity_samples), plan.ev.test_inputs()
    return _HeldOut(parity_x, test_x, tuple(torch.from_numpy(x[:1]) for x in parity_x))


def _reference(plan: ExportPlan, held: _HeldOut) -> _HeldOut:
    """``held`` with the source model's outputs and test scores: what every artifact must match."""
    parity_ref, ref_test = model_outputs(plan.model, held.parity_x), model_outputs(plan.model, held.test_x)
    return replace(held, parity_ref=parity_ref, ref_test=ref_test, reference=plan.ev.score(ref_test))


def _int8_recipe(plan: ExportPlan, forms: _Forms, held: _HeldOut,
                 calibration: tuple[tuple[np.ndarray, ...], dict] | None, progress: Progress) -> Int8Recipe | None:
    """Quantize: the given program, or one calibrated here keeping fp32 what the user or the gate needs."""
    recipe = plan.recipe
    if calibration is not None:
        x, info = calibration
        recipe = chosen_recipe(forms.quantizable, as_samples(*x), info, plan.cfg.int8_keep_float,
                               plan.ev, plan.gate.int8_min_agreement, progress)
    if recipe is not None:
        forms.follow(recipe)
    return recipe


def _verifier(plan: ExportPlan, held: _HeldOut, progress: Progress):
    """How each artifact is checked: run next to PyTorch, gate it; one this host cannot run is spec-checked only."""
    ev, gate = plan.ev, plan.gate

    def verify(exporter, path: Path, precision: str, name: str) -> dict:
        if reason := exporter.unavailable():
            return {"status": "ok", "verified": f"spec only ({reason})"}
        try:
            # On this process's thread budget: a run exporting two students at once gives each half the cores.
            session = exporter.load(path, threads=torch.get_num_threads())
            got = run_session(session, held.parity_x)
            test = run_session(session, held.test_x, progress, f"verify {name}")
        except Exception as e:  # noqa: BLE001  (a runtime that loads but cannot execute the artifact)
            return runtime_failure(exporter, e)
        scored = ev.score(test)
        # Logits match on the parity batch; predictions agree (and ties flip) over the whole test split.
        on_test = ev.parity(held.ref_test, test, held.test_x)
        parity = on_test_split(ev.parity(held.parity_ref, got, held.parity_x), on_test)
        reason = gate.check(precision, parity, scored["accuracy"], held.reference["accuracy"])
        if reason and parity["top1_agreement"] < 100.0 and (note := ev.flip_note(held.ref_test, test)):
            reason += "; " + note
        return {**scored, "parity": parity, "verified": "runtime",
                "status": "ok" if reason is None else "failed", "reason": reason}

    return verify


def _lower_all(plan: ExportPlan, forms: _Forms, held: _HeldOut, recipe: Int8Recipe | None, entry: dict,
               progress: Progress) -> tuple[list[dict], Int8Recipe | None]:
    """Every backend and precision lowered and verified; then, while an int8 artifact misses the gate, the next
    module kept fp32 and the int8 artifacts made again. Returns the artifacts and the final recipe."""
    verify = _verifier(plan, held, progress)
    names = IONames(tuple(plan.ev.inputs), tuple(plan.ev.outputs))

    def lower(which: list[tuple[str, str]]) -> list[dict]:
        program = recipe.program if recipe is not None else None
        # A backend quantizing on its own (ONNX Runtime) starts from the form the program was made from; fp32 keeps
        # the plain form, which is faster in float.
        made = [export_artifact(fmt, precision, forms.quantizable if precision in STATIC_INT8 else forms.ready,
                                held.example, plan.out_dir, plan.stem, recipe.calibration if recipe else [], entry,
                                verify, progress, names, program)
                for fmt, precision in which]
        for artifact in made:
            _write_gap(plan.out_dir, artifact, recipe)
        return made

    artifacts = lower(plan.pairs)
    aside = plan.out_dir / ASIDE
    remove_path(aside)  # a killed export's leftovers
    before: _Before | None = None  # the program and artifacts the widening is judged against
    while recipe is not None and (missed := [a for a in artifacts if _missed_gate(a)]):
        worst = min(a["parity"]["top1_agreement"] for a in missed)
        progress("int8: keeping more fp32", 0, 1, {})
        refused = ", ".join(f"{a['name']} ({a['parity']['top1_agreement']:.2f}%)" for a in missed)
        wider = recipe.widened(worst, plan.gate.int8_min_agreement, refused)
        if wider.keep_float == recipe.keep_float:
            recipe = wider  # with the record of a widening not taken, if one was tried
            break
        redo = [(f, p) for f, p in plan.pairs if from_recipe(f, p)]
        if before is None:
            before = _Before(recipe, artifacts, (getattr(forms.ready, "float_modules", ()),
                                                 getattr(forms.quantizable, "float_modules", ())))
            _set_aside(plan.out_dir, [a for a in artifacts if (a["format"], a["precision"]) in redo], aside)
        recipe = wider
        forms.follow(recipe)
        progress(f"int8: keeping {', '.join(recipe.keep_float)} fp32", 0, 1, {})
        again = dict(zip(redo, lower(redo), strict=True))
        artifacts = [again.get((a["format"], a["precision"]), a) for a in artifacts]
    if before is not None:
        still, was = _refused(artifacts), _refused(before.artifacts)
        if still and len(still) >= len(was) and min(still) <= min(was):
            # Keeping more fp32 brought the refused artifacts no closer (a runtime's own int8, such as ONNX
            # Runtime's, can flip the same clips whatever the program keeps): the others keep the faster program.
            made = [a for a in artifacts if from_recipe(a["format"], a["precision"])]
            recipe, artifacts = _put_back(plan.out_dir, made, aside, before, recipe, min(still))
            forms.ready.float_modules, forms.quantizable.float_modules = before.float_modules
            forms.follow(recipe)
        remove_path(aside)
    return artifacts, recipe


ASIDE = ".int8_previous"  # the int8 artifacts of the program before the widening, until it has proved better


@dataclass(frozen=True)
class _Before:
    """What the widening started from: the recipe, its artifacts, and the two models' fp32 module lists."""

    recipe: Int8Recipe
    artifacts: list[dict]
    float_modules: tuple


def _refused(artifacts: list[dict]) -> list[float]:
    """The top-1 agreement of each artifact the parity gate refused (:func:`_missed_gate`)."""
    return [a["parity"]["top1_agreement"] for a in artifacts if _missed_gate(a)]


def _artifact_files(out_dir: Path, artifact: dict) -> list[Path]:
    """An artifact's file and its gap file (none for one that failed to export)."""
    return [out_dir / artifact["file"], gap_path(out_dir / artifact["file"])] if artifact.get("file") else []


def _set_aside(out_dir: Path, artifacts: list[dict], aside: Path) -> None:
    """Move these artifacts' files into ``aside`` (which the caller has cleared), so that a widening that does not
    help can be undone."""
    aside.mkdir()
    for path in (p for a in artifacts for p in _artifact_files(out_dir, a)):
        if path.exists():
            path.rename(aside / path.name)


def _put_back(out_dir: Path, made: list[dict], aside: Path, before: _Before, tried: Int8Recipe,
              agreement: float) -> tuple[Int8Recipe, list[dict]]:
    """Undo the widening: its artifacts' files go, the ones set aside come back; the recipe before it, with the
    steps tried and why they were dropped, and its artifacts."""
    for path in (p for a in made for p in _artifact_files(out_dir, a)):
        remove_path(path)
    for path in aside.iterdir():
        path.rename(out_dir / path.name)
    remove_path(aside)
    recipe, artifacts = before.recipe, before.artifacts
    dropped = {"skip": list(recipe.keep_float), "val_agreement": recipe.search.get("test_agreement"),
               "why": f"keeping {', '.join(tried.keep_float)} fp32 still left an artifact refused at {agreement:.2f}%: "
                      "back to the program before the widening"}
    return replace(recipe, search={**recipe.search, "steps": [*tried.search.get("steps", []), dropped]}), artifacts


def _write_gap(out_dir: Path, artifact: dict, recipe: Int8Recipe | None) -> None:
    """An int8 artifact's ``NAME.gap.json`` (:func:`attach_gap`) from the recipe's program gap."""
    if recipe is None:
        attach_gap(out_dir, artifact, None, False, 0)
    else:
        attach_gap(out_dir, artifact, recipe.gap, lowers_program(artifact["format"], artifact["precision"]),
                   min(GAP_SAMPLES, len(recipe.calibration)), recipe.keep_float)


def _streaming_pairs(plan: ExportPlan, forms: _Forms, held: _HeldOut, recipe: Int8Recipe | None, entry: dict,
                     progress: Progress) -> tuple[list[dict], dict]:
    """Per backend and precision, a fused step and (for ``pair_formats``) a frame encoder + temporal head pair,
    each checked frame by frame; the manifest's ``streaming`` block, which names the form an app should use."""
    encoder, head = split_streaming(forms.ready, plan.where)  # after the recipe is final: it names what stays fp32
    step = stream_step(forms.ready, plan.where)
    # Static int8 starts from the clip program's form (the RGB stem as space-to-depth), as the clip artifacts do.
    quantizable = forms.quantizable if recipe is not None else forms.ready
    q_encoder, q_step = split_streaming(quantizable, plan.where)[0], stream_step(quantizable, plan.where)
    clips = _clips(recipe.calibration) if recipe is not None else None
    emb = embed_clips(encoder, clips) if clips is not None else None
    pair_calib = stream_calibration(clips, emb) if clips is not None else ([], [])
    step_calib = step_calibration(clips, emb) if clips is not None else []
    frames, expected, fields = write_stream_sample(plan.out_dir, forms.ready, encoder, head, held.parity_x[0])
    verdict = frame_checker(plan.ev, plan.gate, held.reference, (held.parity_x, held.parity_ref),
                            (held.test_x, held.ref_test), (frames, expected), head.frames, progress)
    correct = recipe is not None and recipe.bias_correction
    with_pair = [(f, p) for f, p in plan.pairs if plan.cfg.pair_formats is None or f in plan.cfg.pair_formats]
    lowered = lambda todo: recipe is not None and any(lowers_program(f, p) for f, p in todo)  # noqa: E731
    observer = recipe.observer if recipe is not None else OBSERVER
    programs = pair_programs(q_encoder, head, pair_calib, progress, correct, observer) if lowered(with_pair) else None
    gaps = pair_gaps(q_encoder, head, pair_calib, programs) if programs is not None else None
    s_program = step_program(q_step, step_calib, progress, correct, observer) if lowered(plan.pairs) else None
    s_gap = step_gap(q_step, step_calib, s_program) if s_program is not None else None
    shared = {k: v for k, v in entry.items() if k not in ("inputs", "outputs", "role")}
    check_pair = pair_checker(verdict, head.frames, head.embed_dim)
    check_step = step_checker(verdict, head.frames, head.embed_dim)
    artifacts = []
    for fmt, precision in plan.pairs:
        int8 = precision in STATIC_INT8
        artifacts.append(export_step(fmt, precision, q_step if int8 else step, plan.out_dir, plan.stem, step_calib,
                                     shared, check_step, progress, s_program, s_gap))
        if (fmt, precision) in with_pair:
            artifacts += export_pair(fmt, precision, q_encoder if int8 else encoder, head, plan.out_dir, plan.stem,
                                     pair_calib, shared, check_pair, progress, programs, gaps)
    return artifacts, streaming_block(encoder, head, fields, recommended_forms(artifacts))


def _write_manifest(plan: ExportPlan, held: _HeldOut, recipe: Int8Recipe | None, sample: dict, artifacts: list[dict],
                    streaming: dict | None) -> dict:
    manifest = {"task": plan.task.name,
                "source": {**{k: v for k, v in plan.source.items() if v is not None}, **held.reference},
                "calibration": None if recipe is None else {
                    **recipe.calib_info, **({"keep_float": list(recipe.keep_float)} if recipe.keep_float else {})},
                "gate": asdict(plan.gate),
                "sample": sample,
                "artifacts": artifacts}
    if recipe is not None:
        manifest["int8"] = recipe.block()
    if streaming is not None:
        manifest["streaming"] = streaming
    validate(manifest, "manifest", "the manifest being written")
    write_json_atomic(plan.out_dir / "manifest.json", manifest)
    return manifest


def _missed_gate(artifact: dict) -> bool:
    """A static int8 artifact that ran and was refused by the parity gate (not one that failed to export or run,
    nor a weight-only one, which keeping modules fp32 does not change)."""
    return artifact["status"] == "failed" and artifact.get("parity") is not None and \
        from_recipe(artifact["format"], artifact["precision"])


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
