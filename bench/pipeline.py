"""``egoedge run``: data -> teacher -> distilled student -> export -> host bench -> report.

Every stage writes plain files into the run folder (DESIGN.md Contracts), so any stage can
be re-run alone from them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from bench.host import BenchConfig, Target, checkpoint_target, host_report, manifest_targets
from bench.report import summarize, write_report
from edge.export import ExportConfig, export_checkpoint
from edge.exporters import EXPORTERS
from trainer.checkpoint import save_checkpoint
from trainer.common.io import EgoedgeError
from trainer.common.progress import Progress, no_progress
from trainer.data import DataConfig, label_names, load_split, preprocess_spec
from trainer.models import build_model
from trainer.quantize.ptq import PTQConfig, quantize_checkpoint
from trainer.train import KDConfig, TrainConfig, distill_student, evaluate, linear_probe, train_teacher


@dataclass(frozen=True)
class ModelChoice:
    """A registered architecture and its variant."""

    arch: str
    variant: str


@dataclass(frozen=True)
class RunConfig:
    """Everything ``egoedge run`` does, resolved from a preset plus CLI overrides."""

    preset: str
    data: DataConfig
    teacher: ModelChoice
    student: ModelChoice
    teacher_train: TrainConfig
    student_train: TrainConfig
    kd: KDConfig = field(default_factory=KDConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    ptq: PTQConfig | None = field(default_factory=lambda: PTQConfig(max_fallback=0))  # None: no int8 student
    linear_probe: bool = True


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
        ptq=PTQConfig(calibration=16, val_samples=8, max_fallback=0),
        linear_probe=False,
    ),
    # The default: about 14 minutes on 2 CPU cores (6.5 of them exporting 11 artifacts).
    "quick": RunConfig(
        preset="quick",
        data=DataConfig(frames=4, size=64, train=1600, val=320, test=320),
        teacher=ModelChoice("clip_vit", "small"), student=ModelChoice("mobilevit", "xxs"),
        teacher_train=TrainConfig(epochs=8, batch_size=16, lr=1e-3),
        student_train=TrainConfig(epochs=5, batch_size=16, lr=2e-3),
        export=ExportConfig(formats=ALL_FORMATS, int8=True, calibration=256),
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
        bench=BenchConfig(warmup=10, iterations=100, isolate=True),
    ),
}


def resolve_config(preset: str, **overrides) -> RunConfig:
    """A preset with ``None``-free overrides applied: ``student_variant``, ``alpha``, ``beta``, ``gamma``,
    ``temperature``, ``threads``, ``iterations``, ``teacher_epochs``, ``student_epochs``."""
    if preset not in PRESETS:
        raise EgoedgeError(f"unknown preset '{preset}'; valid: {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    o = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(o) - {"student_variant", "alpha", "beta", "gamma", "temperature", "threads", "iterations",
                        "teacher_epochs", "student_epochs"}
    if unknown:
        raise EgoedgeError(f"unknown run option(s): {', '.join(sorted(unknown))}")
    if "student_variant" in o:
        cfg = replace(cfg, student=ModelChoice(cfg.student.arch, o["student_variant"]))
    kd = {k: o[k] for k in ("alpha", "beta", "gamma", "temperature") if k in o}
    if kd:
        cfg = replace(cfg, kd=replace(cfg.kd, **kd))
    if "threads" in o:
        cfg = replace(cfg, bench=replace(cfg.bench, threads=o["threads"]))
    if "iterations" in o:
        cfg = replace(cfg, bench=replace(cfg.bench, iterations=o["iterations"]))
    if "teacher_epochs" in o:
        cfg = replace(cfg, teacher_train=replace(cfg.teacher_train, epochs=o["teacher_epochs"]))
    if "student_epochs" in o:
        cfg = replace(cfg, student_train=replace(cfg.student_train, epochs=o["student_epochs"]))
    return cfg


class RunLog:
    """Append-only ``log.jsonl``: one JSON object per event, flushed as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.perf_counter()

    def __call__(self, event: str, **fields) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": round(time.perf_counter() - self.t0, 3), "event": event, **fields}) + "\n")


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EgoedgeError(f"cannot create run folder {out}: {e.strerror}; choose another --out") from None
    if not os.access(out, os.W_OK):
        raise EgoedgeError(f"run folder {out} is not writable; choose another --out")


def _train_model(choice: ModelChoice, cfg: RunConfig, num_classes: int):
    kwargs = {"num_classes": num_classes, "frames": cfg.data.frames, "size": cfg.data.size, "variant": choice.variant}
    try:
        return build_model(choice.arch, **kwargs), kwargs
    except (KeyError, ValueError) as e:
        raise EgoedgeError(f"cannot build {choice.arch}: {e.args[0]}") from None


def build_models(cfg: RunConfig, num_classes: int):
    """Seeded teacher and student, ``((model, kwargs), (model, kwargs))``.

    Both are built before any training, so a bad architecture option fails in a second, not
    after minutes of teacher training; the seed comes first so initialisation is reproducible.
    """
    torch.manual_seed(cfg.data.seed)
    return _train_model(cfg.teacher, cfg, num_classes), _train_model(cfg.student, cfg, num_classes)


def run(cfg: RunConfig, out: str | Path, progress: Progress = no_progress) -> dict:
    """Run the whole flow into ``out``; returns the report (also written there with its paths)."""
    out = Path(out)
    _check_out_dir(out)
    t_start = time.perf_counter()
    labels = label_names(cfg.data)
    (teacher, t_kwargs), (student, s_kwargs) = build_models(cfg, len(labels))
    log = RunLog(out / "log.jsonl")
    log("start", config=asdict(cfg))

    progress("data", 0, 1, {})
    train = load_split(cfg.data, "train")
    val, test = load_split(cfg.data, "val"), load_split(cfg.data, "test")
    preprocess = preprocess_spec(cfg.data)
    progress("data", 1, 1, {})
    log("data", train=len(train), val=len(val), test=len(test), seconds=round(time.perf_counter() - t_start, 1))
    probe = None
    if cfg.linear_probe:
        progress("linear probe", 0, 1, {})
        probe = linear_probe(train, test, preprocess)
        progress("linear probe", 1, 1, {})
        log("linear_probe", top1=probe)

    common = {"data": asdict(cfg.data), "preset": cfg.preset}
    history = train_teacher(teacher, train, preprocess, cfg.teacher_train, progress, resume=out / "teacher.resume.pt")
    t_metrics = {"val": evaluate(teacher, val, preprocess), "test": evaluate(teacher, test, preprocess),
                 "history": history}
    log("teacher", **{k: v for k, v in t_metrics.items() if k != "history"})
    teacher_path = save_checkpoint(out / "teacher.pt", arch=cfg.teacher.arch, model_kwargs=t_kwargs, model=teacher,
                                   metrics=t_metrics, label_names=labels, preprocess=preprocess,
                                   config={**common, "train": asdict(cfg.teacher_train)})

    history = distill_student(student, teacher, train, preprocess, cfg.student_train, cfg.kd, progress,
                              resume=out / "student.resume.pt")
    s_metrics = {"val": evaluate(student, val, preprocess), "test": evaluate(student, test, preprocess),
                 "history": history}
    log("student", **{k: v for k, v in s_metrics.items() if k != "history"})
    student_path = save_checkpoint(out / "student.pt", arch=cfg.student.arch, model_kwargs=s_kwargs, model=student,
                                   metrics=s_metrics, label_names=labels, preprocess=preprocess,
                                   config={**common, "train": asdict(cfg.student_train), "kd": asdict(cfg.kd),
                                           "teacher": "teacher.pt"})

    manifest = export_checkpoint(student_path, out / "export", cfg.export, progress)
    log("export", artifacts=[{k: a[k] for k in ("name", "status", "reason", "parity")} for a in manifest["artifacts"]])

    student_target = checkpoint_target(student_path, "student", compare_to_reference=True)
    targets: list[Target] = [checkpoint_target(teacher_path, "teacher", compare_to_reference=False), student_target]
    if cfg.ptq is not None:  # the PTQ int8 student, measured as the PyTorch program it is
        ptq = quantize_checkpoint(student_path, out, cfg.ptq, progress)
        log("ptq", **{k: ptq[k] for k in ("skip", "val_agreement", "fp32", "int8", "test_agreement")})
        int8_path = out / ptq["artifact"]
        targets.append(Target("student_int8", "pytorch", "int8", int8_path, int8_path.stat().st_size,
                              student_target.params, student_target.macs, True, path=int8_path))
    targets += manifest_targets(out / "export", manifest, student_target.params, student_target.macs)
    report = {**host_report(targets, cfg.data, preprocess, cfg.bench, progress),
              "run": {"preset": cfg.preset, "dataset": cfg.data.name, "linear_probe_top1": probe,
                      "wall_s": None, "kd": asdict(cfg.kd)}}
    report["summary"] = summarize(report)
    report["run"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    report["summary"]["run wall time"] = f"{report['run']['wall_s']:.0f} s"
    paths = write_report(report, out)
    log("done", wall_s=report["run"]["wall_s"], report={k: str(v) for k, v in paths.items()})
    return report

