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

from bench.host import BenchConfig, Target, checkpoint_target, host_report, manifest_targets
from bench.report import summarize, write_report
from edge.export import ExportConfig, export_checkpoint
from edge.exporters import EXPORTERS
from trainer.common.io import EgoedgeError
from trainer.common.progress import Progress, no_progress
from trainer.config import merge, read_config_file, to_dict, write_config_file
from trainer.data import TASKS, DataConfig, label_names
from trainer.engine import TrainConfig
from trainer.prune.cbkd import CBKDConfig
from trainer.quantize.ptq import PTQConfig, quantize_checkpoint
from trainer.recipes import DEFAULT_RECIPE, RECIPES
from trainer.stages import ModelChoice, build, cbkd_stage, load_splits, student_stage, teacher_stage
from trainer.train import KDConfig, linear_probe


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
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    ptq: PTQConfig | None = field(default_factory=lambda: PTQConfig(max_fallback=0))  # None: no int8 student
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
        export=ExportConfig(formats=("executorch", "onnx"), parity_samples=8),
        bench=BenchConfig(warmup=1, iterations=3),
        cbkd=CBKDConfig(recover=_MINI_STAGE, finetune=_MINI_STAGE),
        ptq=PTQConfig(calibration=16, val_samples=8, max_fallback=0),
        linear_probe=False,
    ),
    # The default. The student is the one with the best accuracy per millisecond that int8 speeds
    # up ≥ 2× on every runtime (README, "Performance"); CNN students need their 10 epochs (at 5,
    # ResNet r10_48 scored 41 % instead of 66 %), MobileViT-xxs also gains (63 % -> 72 %).
    "quick": RunConfig(
        preset="quick",
        data=DataConfig(frames=4, size=64, train=1600, val=320, test=320),
        teacher=ModelChoice("clip_vit", "small"), student=ModelChoice("resnet", "r10_48"),
        teacher_train=TrainConfig(epochs=8, batch_size=16, lr=1e-3),
        student_train=TrainConfig(epochs=10, batch_size=16, lr=2e-3),
        # 0.5 -> 0.8 per block cuts 47 % of the ResNet's MACs for +0.9 points of test top-1
        # (0.3 -> 0.6 cut 31 %: its stem and block outputs are not pruned).
        cbkd=CBKDConfig(min_ratio=0.5, max_ratio=0.8),
        # Up to two blocks fp32 (~1 min): on the ResNet, keeping the temporal pool and head fp32
        # lifts test agreement with fp32 from 97.5 % to 99.4 % (top-1 -1.3 -> -0.4 points).
        ptq=PTQConfig(max_fallback=2),
        # The exported int8 artifacts keep the same two modules fp32: full-integer ones agreed with
        # fp32 on only 95.9-97.2 % of test clips (the parity gate wants 99 %), these on 99.1-99.4 %,
        # still 2.1-3.2x faster than fp32 at 1 and 2 threads (README, "Performance").
        export=ExportConfig(formats=ALL_FORMATS, int8=True, calibration=256, int8_keep_float=("pool", "head")),
        bench=BenchConfig(isolate=True),
    ),
    # For a GPU: a wider, deeper teacher, 8 frames at 128 px, longer schedules.
    "full": RunConfig(
        preset="full",
        data=DataConfig(frames=8, size=128, train=8000, val=800, test=800),
        teacher=ModelChoice("clip_vit", "base"), student=ModelChoice("mobilevit", "xxs"),
        teacher_train=TrainConfig(epochs=30, batch_size=32, lr=3e-4),
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
    from trainer.models import MODELS

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

    Overrides (``None`` means unset): ``teacher_arch``, ``teacher_variant``, ``student_variant``, ``task``,
    ``recipe``, ``alpha``, ``beta``, ``gamma``, ``temperature``, ``threads``, ``iterations``,
    ``teacher_epochs``, ``student_epochs``.
    """
    if preset not in PRESETS:
        raise EgoedgeError(f"unknown preset '{preset}'; valid: {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    o = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(o) - {"teacher_arch", "teacher_variant", "student_variant", "task", "recipe", "alpha", "beta",
                        "gamma", "temperature", "threads", "iterations", "teacher_epochs", "student_epochs"}
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
    if "teacher_arch" in o or "teacher_variant" in o:
        arch = o.get("teacher_arch", cfg.teacher.arch)
        cfg = replace(cfg, teacher=ModelChoice(arch, o.get("teacher_variant") or _default_variant(arch, cfg)))
    if "task" in o:
        if o["task"] not in TASKS:
            raise EgoedgeError(f"unknown task '{o['task']}'; valid: {', '.join(TASKS)}")
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

    from trainer.models import MODELS

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


class RunLog:
    """Append-only ``log.jsonl``: one JSON object per event, flushed as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.perf_counter()

    def __call__(self, event: str, **fields) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": round(time.perf_counter() - self.t0, 3), "event": event, **fields}) + "\n")


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EgoedgeError(f"cannot create run folder {out}: {e.strerror}; choose another --out") from None
    if not os.access(out, os.W_OK):
        raise EgoedgeError(f"run folder {out} is not writable; choose another --out")


def check_models(cfg: RunConfig, num_classes: int) -> None:
    """Build teacher and student once before any training, so a bad option fails in a second, not after minutes."""
    build(cfg.teacher, cfg.data, num_classes)
    build(cfg.student, cfg.data, num_classes)


def run(cfg: RunConfig, out: str | Path, progress: Progress = no_progress) -> dict:
    """Run the whole flow into ``out``; returns the report (also written there with its paths)."""
    out = Path(out)
    check_out_dir(out)
    t_start = time.perf_counter()
    check_models(cfg, len(label_names(cfg.data)))
    log = RunLog(out / "log.jsonl")
    log("start", config=to_dict(cfg))
    write_config_file(cfg, out / "run_config.yaml")  # the resolved settings; `--config` accepts it back
    epoch_log = lambda record: log("epoch", **record)  # noqa: E731

    progress("data", 0, 1, {})
    splits = load_splits(cfg.data)
    preprocess = splits.preprocess
    progress("data", 1, 1, {})
    log("data", train=len(splits.train), val=len(splits.val), test=len(splits.test),
        seconds=round(time.perf_counter() - t_start, 1))
    probe = None
    if cfg.linear_probe:
        progress("linear probe", 0, 1, {})
        probe = linear_probe(splits.train, splits.test, preprocess)
        progress("linear probe", 1, 1, {})
        log("linear_probe", top1=probe)

    common = {"preset": cfg.preset, "run": to_dict(cfg)}
    teacher_path = teacher_stage(cfg.teacher, splits, cfg.teacher_train, out / "teacher.pt", progress, epoch_log,
                                 common)
    log("teacher", **_metrics_line(teacher_path))
    student_path = student_stage(cfg.student, [teacher_path], splits, cfg.student_train, cfg.kd_settings(),
                                 cfg.recipe, out / "student.pt", progress, epoch_log, common)
    log("student", **_metrics_line(student_path))
    cbkd_path = None
    if cfg.cbkd is not None:
        cbkd_path, summary = cbkd_stage(student_path, splits, cfg.cbkd, out / "student_cbkd.pt", progress,
                                        epoch_log, common)
        log("cbkd", **_metrics_line(cbkd_path), macs_cut=summary["macs_cut"], params_cut=summary["params_cut"])

    manifest = export_checkpoint(student_path, out / "export", cfg.export, progress)
    log("export", artifacts=[{k: a[k] for k in ("name", "status", "reason", "parity")} for a in manifest["artifacts"]])

    student_target = checkpoint_target(student_path, "student", compare_to_reference=True)
    targets: list[Target] = [checkpoint_target(teacher_path, "teacher", compare_to_reference=False), student_target]
    if cbkd_path is not None:
        targets.append(checkpoint_target(cbkd_path, "student_cbkd", compare_to_reference=True))
    if cfg.ptq is not None:  # the PTQ int8 student (of the CBKD student when there is one), as a PyTorch program
        source = targets[-1] if cbkd_path is not None else student_target
        ptq = quantize_checkpoint(source.path, out, cfg.ptq, progress)
        log("ptq", source=source.name, **{k: ptq[k] for k in ("skip", "val_agreement", "fp32", "int8",
                                                             "test_agreement")})
        int8_path = out / ptq["artifact"]
        targets.append(Target(f"{source.name}_int8", "pytorch", "int8", int8_path, int8_path.stat().st_size,
                              source.params, source.macs, True, path=int8_path))
    targets += manifest_targets(out / "export", manifest, student_target.params, student_target.macs)
    report = {**host_report(targets, cfg.data, preprocess, cfg.bench, progress),
              "run": {"preset": cfg.preset, "dataset": cfg.data.name, "linear_probe_top1": probe,
                      "wall_s": None, "recipe": cfg.recipe, "kd": asdict(cfg.kd_settings()),
                      "cbkd": _cbkd_summary(cbkd_path)}}
    report["summary"] = summarize(report)
    report["run"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    report["summary"]["run wall time"] = f"{report['run']['wall_s']:.0f} s"
    paths = write_report(report, out)
    log("done", wall_s=report["run"]["wall_s"], report={k: str(v) for k, v in paths.items()})
    return report


def _metrics_line(path: Path) -> dict:
    from trainer.checkpoint import read_checkpoint

    m = read_checkpoint(path)["metrics"]
    return {k: m[k] for k in ("val", "test", "params", "macs") if k in m}


def _cbkd_summary(path: Path | None) -> dict | None:
    """Per-stage params / MACs / validation top-1 of the CBKD student, for the report."""
    if path is None:
        return None
    from trainer.checkpoint import read_checkpoint
    from trainer.prune.cbkd import stage_table

    m = read_checkpoint(path)["metrics"]["cbkd"]
    return {"macs_cut": m["macs_cut"], "params_cut": m["params_cut"], "stages": stage_table(m)}
