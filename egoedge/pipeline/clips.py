"""``egoedge run``: data -> teacher -> distilled student -> CBKD student -> int8 student -> export -> bench.

Every stage writes plain files into the run folder (DESIGN.md Contracts), so any stage can
be re-run alone from them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from egoedge.bench.host_bench import (
    BenchConfig,
    Target,
    checkpoint_target,
    host_report,
    int8_program_target,
    manifest_targets,
)
from egoedge.bench.report import ship_choice, summarize
from egoedge.edge.export import ExportConfig, export_checkpoint
from egoedge.edge.exporters import EXPORTERS
from egoedge.edge.parity import ParityGate
from egoedge.pipeline.base import CBKDRequest, Pipeline, RunRequest, RunResult
from egoedge.pipeline.beside import beside, torch_threads
from egoedge.pipeline.common import RunLog, RunState, StageClock, cbkd_settings, check_out_dir, finish_run
from egoedge.pipeline.registry import PIPELINES
from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.config import merge, read_config_file, to_dict, write_config_file
from egoedge.trainer.data import DataConfig, label_names, labeling, normalize_spec, prepare_data
from egoedge.trainer.engine import TrainConfig
from egoedge.trainer.prune.cbkd import CBKDConfig
from egoedge.trainer.recipes import DEFAULT_RECIPE, RECIPES
from egoedge.trainer.stages import (
    ModelChoice,
    build,
    cbkd_stage,
    load_splits,
    parse_model_spec,
    student_stage,
    teacher_stage,
)
from egoedge.trainer.tasks import task_of
from egoedge.trainer.train import KDConfig, linear_probe


@dataclass(frozen=True)
class RunConfig:
    """Everything ``egoedge run`` does, resolved from a preset plus CLI overrides."""

    preset: str
    data: DataConfig
    teacher: ModelChoice
    student: ModelChoice
    teacher_train: TrainConfig
    student_train: TrainConfig
    recipe: str = DEFAULT_RECIPE
    kd: KDConfig | None = None  # None: the recipe's settings
    cbkd: CBKDConfig | None = field(default_factory=CBKDConfig)  # None: no CBKD student
    # Every student is exported with these settings (``int8``: its int8 students, one PT2E program each,
    # with the fp32 modules the parity gate needs); the streaming pairs only for the student that
    # ships: the CBKD one when there is one.
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    linear_probe: bool = True

    def kd_settings(self) -> KDConfig:
        """The KD settings in force: an explicit ``kd`` or the recipe's."""
        return self.kd or RECIPES.get(self.recipe)


_MINI_STAGE = TrainConfig(epochs=1, batch_size=16)
ALL_FORMATS = tuple(EXPORTERS.keys())

PRESETS: dict[str, RunConfig] = {
    # Seconds: the end-to-end test. Tiny registered models on a handful of clips.
    "mini": RunConfig(
        preset="mini",
        data=DataConfig(frames=2, size=32, train=48, val=16, test=16),
        teacher=ModelChoice("clip_vit", "test"), student=ModelChoice("mobilevit", "micro"),
        teacher_train=TrainConfig(epochs=1, batch_size=16), student_train=TrainConfig(epochs=1, batch_size=16),
        # ONNX alone: ExecuTorch's lowering costs seconds per artifact, and the tests export it on their own.
        # A 1-epoch model's logits are near ties that any int8 flips: its int8 is checked for running only.
        # Streaming as in the quick run: the fused step, no pairs (the tests make pairs with `export --streaming`).
        export=ExportConfig(formats=("onnx",), int8=True, calibration=16, parity_samples=8, streaming=True,
                            pair_formats=(), gate=ParityGate(int8_min_agreement=0.0, int8_max_accuracy_drop=100.0)),
        bench=BenchConfig(warmup=1, iterations=3),
        cbkd=CBKDConfig(recover=_MINI_STAGE, finetune=_MINI_STAGE, round_to=4),  # micro widths are 8 and 16
        linear_probe=False,
    ),
    # The default. The student is the one with the best accuracy per millisecond that int8 speeds
    # up on every runtime; CNN students are undertrained at fewer epochs (docs/performance.md).
    "quick": RunConfig(
        preset="quick",
        data=DataConfig(frames=4, size=64, train=1600, val=320, test=320),
        teacher=ModelChoice("clip_vit", "small"), student=ModelChoice("resnet", "r10_48"),
        # Half the rates first used (1e-3, 2e-3): at those, the ViT could sit at chance for all 8
        # epochs and the KD student lose 16 points, on nothing more than another order of the
        # class indices (docs/data.md).
        teacher_train=TrainConfig(epochs=8, batch_size=16, lr=5e-4),
        student_train=TrainConfig(epochs=10, batch_size=16, lr=1e-3),
        # Cut hard: the ResNet's stem and block outputs are not pruned, so milder ratios remove
        # little (docs/training.md).
        cbkd=CBKDConfig(min_ratio=0.5, max_ratio=0.8),
        # int8 keeps fp32 only the modules the parity gate needs (docs/export.md).
        # Streaming: the fused step for every backend, which the demo app runs too; no pairs (each is two
        # programs to lower and check, a third of the export stage; `egoedge export --streaming` still makes them).
        export=ExportConfig(formats=ALL_FORMATS, int8=True, calibration=256, streaming=True, pair_formats=()),
        bench=BenchConfig(isolate=True),
    ),
    # For a GPU: the published pairing, OpenAI's CLIP ViT-B/32 (frozen; timm's download, or
    # --teacher-weights FILE) -> MobileViT-XXS, 8 frames at 128 px, longer schedules. The teacher's
    # epochs fit only its temporal pool and linear head, on cached embeddings.
    "full": RunConfig(
        preset="full",
        data=DataConfig(frames=8, size=128, train=8000, val=800, test=800),
        teacher=ModelChoice("timm", "vit_base_patch32_clip_224.openai", pretrained=True),
        student=ModelChoice("mobilevit", "xxs"),
        teacher_train=TrainConfig(epochs=30, batch_size=32, lr=1e-3),
        student_train=TrainConfig(epochs=30, batch_size=32, lr=1e-3),
        export=ExportConfig(formats=ALL_FORMATS, int8=True, calibration=512),
        cbkd=CBKDConfig(recover=TrainConfig(epochs=3, batch_size=32, lr=1e-3, label_smoothing=0.0),
                        finetune=TrainConfig(epochs=10, batch_size=32, lr=3e-4)),
        bench=BenchConfig(warmup=10, iterations=100, isolate=True),
    ),
}


def student_choice(spec: str, preset_arch: str) -> ModelChoice:
    """``--student``: ``ARCH:VARIANT``, or a bare variant of the preset's family or of the one family that has it.

    Example: ``student_choice("xxs", "resnet")`` is ``ModelChoice("mobilevit", "xxs")``.
    """
    from egoedge.trainer.models import MODELS

    arch, _, variant = spec.rpartition(":")
    if arch:
        return ModelChoice(arch, variant)
    if preset_arch in MODELS and variant in getattr(MODELS.get(preset_arch), "variants", ()):
        return ModelChoice(preset_arch, variant)
    owners = [a for a in MODELS if variant in getattr(MODELS.get(a), "variants", ())]
    # Not found (or ambiguous): the preset's family, whose builder names its valid variants.
    return ModelChoice(owners[0] if len(owners) == 1 else preset_arch, variant)


def resolve_config(preset: str, config_file: str | Path | None = None, **overrides) -> RunConfig:
    """A preset, then a YAML/JSON config file (any subset of :class:`RunConfig`), then CLI overrides.

    Overrides (``None`` means unset): ``teacher`` (a spec: ``timm:NAME``, ``hf:DIR``, ``ARCH:VARIANT``),
    ``teacher_weights``, ``teacher_arch``, ``teacher_variant``, ``student_variant``, ``task``,
    ``recipe``, ``alpha``, ``beta``, ``gamma``, ``temperature``, ``threads``, ``iterations``,
    ``teacher_epochs``, ``student_epochs``, ``data`` (a ``--data`` spec), ``videos``, ``max_bad``.
    """
    if preset not in PRESETS:
        raise EgoedgeError(f"unknown preset '{preset}'; valid: {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    o = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(o) - {"teacher", "teacher_weights", "teacher_arch", "teacher_variant", "student_variant", "task",
                        "recipe", "alpha", "beta",
                        "gamma", "temperature", "threads", "iterations", "teacher_epochs", "student_epochs",
                        "data", "videos", "max_bad"}
    if unknown:
        raise EgoedgeError(f"unknown run option(s): {', '.join(sorted(unknown))}")
    file = read_config_file(config_file) if config_file is not None else {}
    # The recipe picks the KD settings; a `kd:` section in the file then adjusts them field by field.
    recipe = o.get("recipe") or file.get("recipe") or cfg.recipe
    if recipe not in RECIPES:
        raise EgoedgeError(f"unknown recipe '{recipe}'; valid: {', '.join(RECIPES.keys())}")
    kd = cfg.kd if recipe == cfg.recipe else None
    if isinstance(file.get("kd"), dict):
        kd = merge(kd or RECIPES.get(recipe), file["kd"], where=f"{config_file}: kd")
    rest = {k: v for k, v in file.items() if k not in ("recipe", "kd")}
    cfg = merge(replace(cfg, recipe=recipe, kd=kd), rest, where=str(config_file)) if rest else \
        replace(cfg, recipe=recipe, kd=kd)
    if "student_variant" in o:
        cfg = replace(cfg, student=student_choice(o["student_variant"], cfg.student.arch))
    if ":" in o.get("teacher_arch", ""):  # `train teacher --arch timm:NAME`
        o["teacher"] = o.pop("teacher_arch")
    if "teacher" in o:
        cfg = replace(cfg, teacher=parse_model_spec(o["teacher"], o.get("teacher_weights")))
    elif "teacher_weights" in o:
        cfg = replace(cfg, teacher=replace(parse_model_spec(cfg.teacher.spec, o["teacher_weights"])))
    if "teacher_arch" in o or "teacher_variant" in o:
        arch = o.get("teacher_arch", cfg.teacher.arch)
        cfg = replace(cfg, teacher=ModelChoice(arch, o.get("teacher_variant") or _default_variant(arch, cfg)))
    data = {k: v for k, v in (("name", o.get("data")), ("videos", o.get("videos")), ("max_bad", o.get("max_bad")))
            if v is not None}
    if data:
        if "name" in data:
            data["name"] = normalize_spec(data["name"])
        if "videos" in data:
            data["videos"] = str(Path(data["videos"]).expanduser().resolve())
        if not 0 <= data.get("max_bad", 0) < 1:
            raise EgoedgeError(f"--max-bad must be a fraction in [0, 1), got {data['max_bad']}")
        cfg = replace(cfg, data=replace(cfg.data, **data))
    if "task" in o:
        labeling(o["task"])  # refuses a task that is not a clip task
        cfg = replace(cfg, data=replace(cfg.data, task=o["task"]))
    kd = {k: o[k] for k in ("alpha", "beta", "gamma", "temperature") if k in o}
    if kd:
        cfg = replace(cfg, kd=replace(cfg.kd_settings(), **kd))
    if "threads" in o:
        cfg = replace(cfg, bench=replace(cfg.bench, threads=o["threads"]))
    if "iterations" in o:
        cfg = replace(cfg, bench=replace(cfg.bench, iterations=o["iterations"]))
    if "teacher_epochs" in o:
        cfg = replace(cfg, teacher_train=replace(cfg.teacher_train, epochs=o["teacher_epochs"]))
    if "student_epochs" in o:
        cfg = replace(cfg, student_train=replace(cfg.student_train, epochs=o["student_epochs"]))
    return cfg


def _default_variant(arch: str, cfg: RunConfig) -> str:
    """The preset's variant for its own teacher; for another architecture its builder's default."""
    import inspect

    from egoedge.trainer.models import MODELS

    if arch == cfg.teacher.arch:
        return cfg.teacher.variant
    try:
        builder = MODELS.get(arch)
    except KeyError as e:
        raise EgoedgeError(e.args[0]) from None
    # The mini preset trains every architecture at its test size where it has one.
    if cfg.teacher.variant == "test" and "test" in builder.variants:
        return "test"
    return inspect.signature(builder).parameters["variant"].default


def fit_to_splits(cfg: RunConfig, splits, decoded: bool) -> tuple[RunConfig, list[str]]:
    """Check, before any training, that every later stage has the clips it needs; shrink what can shrink.

    A parity batch or calibration set larger than its split is cut to the split (each cut is one
    note for the report); a split too small for any stage is refused at once, naming what it needs.
    ``decoded``: the clips came from a video source (its data_report.json and splits.csv say where each went).
    """
    from egoedge.trainer.data.calibration import MIN_CALIBRATION

    export = cfg.export
    need = {"train": (MIN_CALIBRATION, "training and an int8 calibration set") if export.int8 else (2, "training"),
            "val": (2, "the parity check and the streaming sample (two clips)") if export.streaming
            else (1, "the parity check"),
            "test": (1, "scoring")}
    for split, (minimum, why) in need.items():
        have = len(getattr(splits, split))
        if have < minimum:
            fix = ("add clips to it (data_report.json and splits.csv say where each clip went)" if decoded
                   else f"raise data.{split} in the config")
            raise EgoedgeError(f"the {split} split of '{cfg.data.name}' has {have} clip(s); {why} needs at least "
                               f"{minimum}: {fix}")
    notes = []
    if export.parity_samples > len(splits.val):
        notes.append(f"parity batch of {len(splits.val)} clips, the whole val split (the preset asks "
                     f"{export.parity_samples})")
        export = replace(export, parity_samples=len(splits.val))
    if export.int8 and not export.calibration_file and export.calibration > len(splits.train):
        notes.append(f"int8 calibration on all {len(splits.train)} training clips (the preset asks "
                     f"{export.calibration})")
        export = replace(export, calibration=len(splits.train))
    return replace(cfg, export=export), notes


def check_models(cfg: RunConfig, num_classes: int) -> None:
    """Build teacher and student once before any training, so a bad option fails in a second, not after minutes."""
    build(cfg.teacher, cfg.data, num_classes)
    build(cfg.student, cfg.data, num_classes)


@locks_folder("out", "egoedge run")
def run(cfg: RunConfig, out: str | Path, progress: Progress = no_progress) -> dict:
    """Run the whole flow into ``out``; returns the report (also written there with its paths)."""
    out = Path(out)
    check_out_dir(out)
    t_start = time.perf_counter()
    clock = StageClock()
    check_models(cfg, len(label_names(cfg.data)))
    log = RunLog(out / "log.jsonl")
    log("start", config=to_dict(cfg))
    write_config_file(cfg, out / "run_config.yaml")  # the resolved settings; `--config` accepts it back
    epoch_log = lambda record: log("epoch", **record)  # noqa: E731

    with clock("data"):
        data_info = copy_data_report(prepare_data(cfg.data, progress), out)  # decodes a video source once
        progress("data", 0, 1, {})
        splits = load_splits(cfg.data)
        cfg, data_notes = fit_to_splits(cfg, splits, decoded=data_info is not None)
        preprocess = splits.preprocess
        progress("data", 1, 1, {})
    log("data", train=len(splits.train), val=len(splits.val), test=len(splits.test),
        seconds=round(time.perf_counter() - t_start, 1), **({"skipped": data_info["skipped"]} if data_info else {}))
    # Whole-flow resume: each finished stage whose files are intact is reused (bench settings do not count).
    state = RunState(out, {k: v for k, v in to_dict(cfg).items() if k != "bench"})
    reused = lambda stage: (progress(f"{stage} (finished before)", 1, 1, {}), log("reused", stage=stage),  # noqa: E731
                            clock.reused(stage))
    probe = None
    if cfg.linear_probe:
        if "linear_probe" in state.done:
            probe = state.info("linear_probe")["top1"]
        else:
            with clock("linear probe"):
                progress("linear probe", 0, 1, {})
                probe = linear_probe(splits.train, splits.test, preprocess)
                progress("linear probe", 1, 1, {})
            state.mark("linear_probe", top1=probe)
        log("linear_probe", top1=probe)

    common = {"preset": cfg.preset, "run": to_dict(cfg)}
    teacher_path, student_path = out / "teacher.pt", out / "student.pt"
    if state.finished("teacher", teacher_path):
        reused("teacher")
    else:
        with clock("teacher"):
            teacher_stage(cfg.teacher, splits, cfg.teacher_train, teacher_path, progress, epoch_log, common)
        state.mark("teacher", teacher_path)
    log("teacher", **_metrics_line(teacher_path))
    if state.finished("student", teacher_path, student_path):
        reused("student")
    else:
        with clock("student"):
            student_stage(cfg.student, [teacher_path], splits, cfg.student_train, cfg.kd_settings(), cfg.recipe,
                          student_path, progress, epoch_log, common)
        state.mark("student", teacher_path, student_path)
    log("student", **_metrics_line(student_path))
    cbkd_path = None
    if cfg.cbkd is not None:
        cbkd_path = out / "student_cbkd.pt"
        if state.finished("cbkd", student_path, cbkd_path):
            reused("cbkd")
        else:
            with clock("cbkd"):
                cbkd_stage(student_path, splits, cfg.cbkd, cbkd_path, progress, epoch_log, common)
            state.mark("cbkd", student_path, cbkd_path)
        cbkd_metrics = read_checkpoint(cbkd_path)["metrics"]["cbkd"]
        log("cbkd", **_metrics_line(cbkd_path), macs_cut=cbkd_metrics["macs_cut"],
            params_cut=cbkd_metrics["params_cut"])

    # Both students are exported, fp32 and int8 (each int8 artifact lowers the program the parity gate
    # chose, saved beside it); the streaming pairs are made for the student that ships, the last one.
    students = [("student", student_path, out / "export")]
    if cbkd_path is not None:
        students.append(("student_cbkd", cbkd_path, out / "export_cbkd"))
    manifests: dict[str, dict] = {}
    todo = []
    for name, path, folder in students:
        if state.finished(_export_stage(name), path, folder / "manifest.json"):
            reused(_export_stage(name))
            manifests[name] = json.loads((folder / "manifest.json").read_text())  # the bench checks its hashes
        else:
            todo.append((name, path, folder, replace(cfg.export, streaming=cfg.export.streaming and
                                                     name == students[-1][0])))
    if len(todo) == 2 and (os.cpu_count() or 1) >= 2:
        _export_side_by_side(todo, state, clock, manifests, progress)
    else:
        for name, path, folder, ecfg in todo:
            with clock(_export_stage(name)):
                manifests[name] = export_checkpoint(path, folder, ecfg, progress)
            state.mark(_export_stage(name), path, folder / "manifest.json")
    for name, _, _ in students:
        log("export", student=name, int8=_int8_line(manifests[name]),
            artifacts=[{k: a[k] for k in ("name", "status", "reason", "parity")} for a in manifests[name]["artifacts"]])

    with clock("bench"):
        report = {**bench_students(teacher_path, students, manifests, cfg.bench, progress),
                  "run": {"preset": cfg.preset, "dataset": cfg.data.name, "data": data_info,
                          "linear_probe_top1": probe, "wall_s": None, "recipe": cfg.recipe,
                          "kd": asdict(cfg.kd_settings()), "cbkd": _cbkd_summary(cbkd_path)}}
    report["ship"] = ship_choice(report, {name: folder.name for name, _, folder in students})
    report["summary"] = summarize(report)
    if data_info:
        report["summary"]["data"] = data_info["line"]
    for i, note in enumerate(data_notes):
        report["summary"][f"adapted to the data{f' ({i + 1})' if i else ''}"] = note
    report["run"]["adapted"] = data_notes
    return finish_run(report, out, t_start, clock, log)


def _export_stage(name: str) -> str:
    return "export" if name == "student" else f"export {name}"


def _export_side_by_side(todo: list[tuple[str, Path, Path, ExportConfig]], state: RunState, clock: StageClock,
                         manifests: dict[str, dict], progress: Progress) -> None:
    """Both students' exports at once, the first in a child process, each on half the threads.

    Each export is recorded as finished as soon as it is, so a run killed during the other one
    reuses it.
    """
    import torch

    (first, path1, folder1, cfg1), (second, path2, folder2, cfg2) = todo
    threads = torch.get_num_threads()
    with clock(f"exports of {first} and {second}, side by side"):
        with beside(f"export of {first}", export_checkpoint, (path1, folder1, cfg1), threads=max(1, threads // 2)) \
                as other, torch_threads(max(1, threads - threads // 2)):
            manifests[second] = export_checkpoint(path2, folder2, cfg2, progress)
            state.mark(_export_stage(second), path2, folder2 / "manifest.json")
            progress(f"export {first} (beside it)", 0, 1, {})
            manifests[first] = other.result()
            state.mark(_export_stage(first), path1, folder1 / "manifest.json")
            progress(f"export {first} (beside it)", 1, 1, {})


def bench_students(teacher_path: Path, students: list[tuple[str, Path, Path]], manifests: dict[str, dict],
                   bench: BenchConfig, progress: Progress) -> dict:
    """The teacher, each student and every artifact of its export, side by side in one host report."""
    student_path, cbkd_path = students[0][1], (students[1][1] if len(students) > 1 else None)
    ckpt = read_checkpoint(student_path)  # read once: the target, its task and its held-out data come from it
    student_target = checkpoint_target(student_path, "student", compare_to_reference=True, ckpt=ckpt)
    eager = {"student": student_target}
    if cbkd_path is not None:
        eager["student_cbkd"] = checkpoint_target(cbkd_path, "student_cbkd", compare_to_reference=True)
    targets: list[Target] = [checkpoint_target(teacher_path, "teacher", compare_to_reference=False), *eager.values()]
    for name, _, folder in students:
        source = eager[name]
        reference = None if name == "student" else name  # each student's artifacts against its own fp32 model
        targets += [replace(t, reference=reference) for t in
                    int8_program_target(folder, manifests[name], source) +
                    manifest_targets(folder, manifests[name], source.params, source.macs)]
    task = task_of(ckpt)
    return host_report(targets, task, task.evaluation(ckpt), bench, progress)


def _int8_line(manifest: dict) -> dict | None:
    int8 = manifest.get("int8")
    return None if int8 is None else {k: int8.get(k) for k in ("program", "keep_float", "chosen_by")}


def copy_data_report(prepared, out: Path) -> dict | None:
    """Put a video source's ``data_report.json`` and ``splits.csv`` in the run folder; their one-line summary."""
    if prepared is None:
        return None
    import json
    import shutil

    for f in (prepared.report_path, prepared.splits_csv):
        shutil.copyfile(f, out / f.name)
    rep = json.loads(prepared.report_path.read_text())
    counts = ", ".join(f"{k} {v['clips']}" for k, v in rep["splits"].items())
    return {"spec": rep["spec"], "classes": rep["classes"], "splits": rep["splits"], "skipped": rep["skipped_count"],
            "report": "data_report.json", "shards": rep["shards"],
            "line": f"{counts} clips of {rep['classes']} classes; {rep['skipped_count']} skipped (data_report.json)"}


def _metrics_line(path: Path) -> dict:
    m = read_checkpoint(path)["metrics"]
    return {k: m[k] for k in ("val", "test", "params", "macs") if k in m}


def _cbkd_summary(path: Path | None) -> dict | None:
    """Per-stage params / MACs / validation top-1 of the CBKD student, for the report."""
    if path is None:
        return None
    from egoedge.trainer.prune.cbkd import stage_table

    m = read_checkpoint(path)["metrics"]["cbkd"]
    return {"macs_cut": m["macs_cut"], "params_cut": m["params_cut"], "stages": stage_table(m),
            "unpruned": m.get("unpruned", [])}


def run_request(request: RunRequest, progress: Progress = no_progress) -> RunResult:
    """``egoedge run`` of a clip task (recognition, anticipation...): the preset with the request's options, run."""
    request.refuse("film")
    o = request.options
    cfg = resolve_config(request.preset, request.config, recipe=o.get("recipe"), student_variant=o.get("student"),
                         teacher=o.get("teacher"), teacher_weights=o.get("teacher_weights"),
                         alpha=o.get("alpha"), beta=o.get("beta"), gamma=o.get("gamma"), task=request.task,
                         temperature=o.get("temperature"), threads=o.get("threads"), iterations=o.get("iterations"),
                         data=None if request.data == "synthetic" else request.data, videos=o.get("videos"),
                         max_bad=o.get("max_bad"))
    out = request.out or Path("runs") / request.preset
    report = run(cfg, out, progress)
    return RunResult(report, {name: out / name
                              for name in ("report.json", "report.md", "pareto.png", "report.html")})


def cbkd_request(request: CBKDRequest, progress: Progress = no_progress) -> tuple[Path, dict]:
    """``egoedge train cbkd`` of a clip checkpoint: the preset's schedule, ``--config``, the flags, on its data."""
    from egoedge.trainer.engine import init_distributed
    from egoedge.trainer.stages import data_config_of

    init_distributed()
    o = request.options
    cfg = resolve_config(request.preset, o.get("config"))
    cb = cbkd_settings(cfg.cbkd or PRESETS[request.preset].cbkd, o)
    source = read_checkpoint(request.checkpoint)
    if o.get("data"):
        source = task_of(source).with_data(source, o["data"])  # refuses data with other classes
    data_cfg = data_config_of(source)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    log = RunLog(request.out.parent / "log.jsonl")
    log("train_cbkd", cbkd=to_dict(cb), source=str(request.checkpoint))
    prepare_data(data_cfg, progress)
    return cbkd_stage(request.checkpoint, load_splits(data_cfg), cb, request.out, progress,
                      lambda record: log("epoch", **record), {"preset": cfg.preset})


PIPELINES.register("clips")(Pipeline(run_request, cbkd_request))
