"""``egoedge train teacher|student|cbkd``: one trainer stage at a time, from and to checkpoint files.

Settings resolve as everywhere: preset, then ``--config`` (YAML/JSON, any part of
``run_config.yaml``), then flags. Under ``torchrun`` every command trains data-parallel.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from egoedge.cli.console import DATA_HELP, Preset, RichProgress, console
from egoedge.cli.render import cbkd_table
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.recipes import DEFAULT_RECIPE, RECIPES
from egoedge.trainer.tasks import TASKS
from egoedge.trainer.tasks.clips import ClipTask

train_app = typer.Typer(no_args_is_help=True, help="Train one stage: a teacher, a KD student, or a CBKD student.")
Recipe = Enum("Recipe", {name: name for name in RECIPES.keys()}, type=str)


def _resolve(preset: Preset, config: Path | None, **overrides):
    """The run config of ``preset`` with ``--config`` and the flags applied (under torchrun: joined first)."""
    from egoedge.pipeline.clips import resolve_config
    from egoedge.trainer.engine import init_distributed

    init_distributed()
    return resolve_config(preset.value, config, **overrides)


def _stage_table(path: Path, title: str) -> Table:
    from egoedge.trainer.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    m = ckpt["metrics"]
    table = Table(title=title)
    cols = ["checkpoint", "reads", "params", "MMACs", "val top-1 %", "test top-1 %", "test top-5 %"]
    if "oracle" in m:  # anticipation: what the true transition table scores
        cols.append("oracle top-1 %")
    for col in cols:
        table.add_column(col, justify="left" if col in ("checkpoint", "reads") else "right")
    row = [str(path), ckpt["preprocess"].get("modality", "rgb"), f"{m['params']:,}", f"{m['macs'] / 1e6:.1f}",
           f"{m['val']['top1']:.1f}", f"{m['test']['top1']:.1f}", f"{m['test']['top5']:.1f}"]
    if "oracle" in m:
        row.append(f"{m['oracle']['top1']:.1f}")
    table.add_row(*row)
    return table


def _log(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    from egoedge.pipeline.common import RunLog

    log = RunLog(out / "log.jsonl")
    return log, (lambda record: log("epoch", **record))


# The clip tasks: the ones these trainer stages serve (NLQ trains with `egoedge nlq train`).
Task = Enum("Task", {name: name for name in TASKS if isinstance(TASKS.get(name), ClipTask)}, type=str)


@train_app.command("teacher")
def teacher(
    arch: Annotated[str, typer.Option(
        help="Teacher architecture and so its modality: timm:NAME or hf:DIR (pretrained, frozen: only its temporal "
             "pool and head are fitted), clip_vit (RGB, default), flow_cnn (optical flow), audio_cnn (audio), "
             "box_transformer (object boxes), text_transformer or minilm (past actions as text; --task "
             "anticipation).")] = None,
    variant: Annotated[str, typer.Option(help="Architecture size (default: the preset's, or the builder's).")] = None,
    weights: Annotated[Path, typer.Option(
        help="Pretrained weights of a timm:/hf: teacher (safetensors or a state dict).")] = None,
    task: Annotated[Task, typer.Option(
        help="recognition (the action in the clip) or anticipation (the next one).")] = None,
    preset: Annotated[Preset, typer.Option(help="Defaults for data, model and schedule.")] = "quick",
    config: Annotated[Path, typer.Option(help="YAML/JSON overrides (e.g. teacher_train: {epochs: 12}).")] = None,
    epochs: Annotated[int, typer.Option(help="Teacher epochs.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder (default runs/<preset>).")] = None,
    name: Annotated[str, typer.Option(help="Checkpoint name without .pt (default teacher, or teacher_<arch>).")] = None,
    data: Annotated[str, typer.Option(help=DATA_HELP)] = None,
    videos: Annotated[Path, typer.Option(
        help="epic100: the videos folder when not beside the annotation CSVs.")] = None,
    max_bad: Annotated[float, typer.Option(help="Largest fraction of unusable clips to skip (default 0.05).")] = None,
) -> None:
    """Train a teacher with cross-entropy on its modality (resumes after a kill).

    Example: egoedge train teacher --arch flow_cnn --out runs/exp1
    """
    from egoedge.pipeline.clips import PRESETS
    from egoedge.trainer.config import to_dict
    from egoedge.trainer.data import prepare_data
    from egoedge.trainer.stages import load_splits, teacher_stage

    cfg = _resolve(preset, config, teacher_epochs=epochs, teacher_arch=arch, teacher_variant=variant,
                   teacher_weights=str(weights) if weights else None,
                   task=task.value if task else None, data=data, videos=videos, max_bad=max_bad)
    out = out or Path("runs") / preset.value
    log, epoch_log = _log(out)
    log("train_teacher", config=to_dict(cfg))
    default_arch = PRESETS[preset.value].teacher.arch
    default = "teacher" if cfg.teacher.arch == default_arch else "teacher_" + cfg.teacher.arch
    path = out / f"{name or default}.pt"
    with RichProgress() as progress:
        prepare_data(cfg.data, progress)
        path = teacher_stage(cfg.teacher, load_splits(cfg.data), cfg.teacher_train, path, progress,
                             epoch_log, {"preset": cfg.preset, "run": to_dict(cfg)})
    console.print(_stage_table(path, f"teacher ({cfg.teacher.arch} {cfg.teacher.variant}, {cfg.data.task})"))


@train_app.command("student")
def student(
    teacher: Annotated[list[str], typer.Option(
        "--teacher",
        help="Teacher: a checkpoint, or a model spec as `egoedge run --teacher` takes (timm:NAME, hf:DIR, "
             "ARCH:VARIANT), fitted first on the student's data; repeat for several teachers.")] = None,
    teacher_weights: Annotated[Path, typer.Option(
        help="Pretrained weights of a timm:/hf: --teacher (safetensors or a state dict).")] = None,
    recipe: Annotated[Recipe, typer.Option(
        help=f"Named KD recipe: {', '.join(RECIPES.keys())} (ce: labels "
             "only, no KD; multi_teacher: one teacher per modality, learned ensemble).")] = DEFAULT_RECIPE,
    preset: Annotated[Preset, typer.Option(help="Defaults for model and schedule.")] = "quick",
    config: Annotated[Path, typer.Option(
        help="YAML/JSON overrides (e.g. kd: {top_k: 3}, student_train: {epochs: 8}).")] = None,
    variant: Annotated[str, typer.Option(
        help="Student as ARCH:VARIANT or a bare variant (mobilevit:xxs, r10_32, ...; default: the preset's, "
             "resnet:r10_48 in quick); see `egoedge run --help`.")] = None,
    task: Annotated[Task, typer.Option(
        help="Task of a teacher-less (ce) student; with --teacher it is the teacher's.")] = None,
    epochs: Annotated[int, typer.Option(help="Student epochs.")] = None,
    temperature: Annotated[float, typer.Option(help="KD temperature T.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the checkpoint (default: the first teacher's).")] = None,
    name: Annotated[str, typer.Option(help="Checkpoint name without .pt (default student_<recipe>).")] = None,
    data: Annotated[str, typer.Option(help="Dataset (default: the first teacher's); " + DATA_HELP[9:])] = None,
) -> None:
    """Distil a student from one or more teacher checkpoints with a named recipe (data: the teacher's).

    Teachers may read other modalities (flow, audio, boxes, text); the student reads the RGB clip.
    Example: egoedge train student --teacher runs/exp1/teacher.pt --recipe topk
             egoedge train student --teacher timm:vit_base_patch32_clip_224.openai --teacher-weights b32.safetensors
    """
    from egoedge.trainer.checkpoint import read_checkpoint
    from egoedge.trainer.config import to_dict
    from egoedge.trainer.data import prepare_data
    from egoedge.trainer.stages import data_config_of, load_splits, parse_model_spec, student_stage, teacher_stage

    given = list(teacher or [])
    checkpoints = [Path(t) for t in given if Path(t).is_file()]
    specs = [t for t in given if not Path(t).is_file()]
    for t in specs:
        if ":" not in t or t.endswith((".pt", ".pth")):
            raise EgoedgeError(f"teacher checkpoint not found: {t}")
    if teacher_weights is not None and not specs:
        raise EgoedgeError("--teacher-weights is for a timm:/hf: --teacher; a checkpoint holds its own weights")
    # The spec parser `egoedge run --teacher` uses, before any work; each is fitted as `train teacher` fits it.
    choices = {t: parse_model_spec(t, str(teacher_weights) if teacher_weights else None) for t in specs}
    cfg = _resolve(preset, config, recipe=recipe.value, student_variant=variant, student_epochs=epochs,
                   temperature=temperature, task=task.value if task else None, data=data)
    if checkpoints:
        own = data_config_of(read_checkpoint(checkpoints[0]))
        cfg = replace(cfg, data=replace(own, name=cfg.data.name) if data else own)
    out = out or (checkpoints[0].parent if checkpoints else Path("runs") / preset.value)
    log, epoch_log = _log(out)
    log("train_student", config=to_dict(cfg), teachers=given)
    path = out / f"{name or 'student_' + recipe.value}.pt"
    with RichProgress() as progress:
        prepare_data(cfg.data, progress)
        splits = load_splits(cfg.data)
        teachers = []
        for t in given:  # in the order given: the first teacher is the one feature KD reads
            if t not in specs:
                teachers.append(Path(t))
                continue
            choice = choices[t]
            teachers.append(teacher_stage(choice, splits, cfg.teacher_train, out / f"teacher_{choice.arch}.pt",
                                          progress, epoch_log, {"preset": cfg.preset, "run": to_dict(cfg)}))
        path = student_stage(cfg.student, teachers, splits, cfg.student_train,
                             cfg.kd_settings(), cfg.recipe, path, progress, epoch_log,
                             {"preset": cfg.preset, "run": to_dict(cfg)})
    student = f"{cfg.student.arch}:{cfg.student.variant}"
    console.print(_stage_table(path, f"student ({student}, recipe {recipe.value}, {cfg.data.task})"))


@train_app.command("cbkd")
def cbkd(
    checkpoint: Annotated[Path, typer.Argument(
        help="A trained student of any task to compress (it is also the teacher); the task comes from it.")],
    preset: Annotated[Preset, typer.Option(help="Defaults for the recovery and fine-tune schedules.")] = "quick",
    config: Annotated[Path, typer.Option(
        help="YAML/JSON overrides (e.g. cbkd: {max_ratio: 0.7, order: shallow_first}); clip tasks.")] = None,
    min_ratio: Annotated[float, typer.Option(help="Compression of the shallowest block.")] = None,
    max_ratio: Annotated[float, typer.Option(help="Compression of the deepest block.")] = None,
    finetune_epochs: Annotated[int, typer.Option(help="Epochs of the final end-to-end KD fine-tune.")] = None,
    out: Annotated[Path, typer.Option(help="Output checkpoint (default: <checkpoint>_cbkd.pt beside it).")] = None,
    data: Annotated[str, typer.Option(help="Dataset (default: the checkpoint's); clip tasks; " + DATA_HELP[9:])] = None,
) -> None:
    """CBKD: prune one block per stage (deepest first), recover it by block distillation, fine-tune.

    Resumes from the last finished stage when rerun with the same settings.
    Example: egoedge train cbkd runs/exp1/student.pt --max-ratio 0.6
             egoedge train cbkd runs/nlq/nlq_student.pt --finetune-epochs 2
    """
    from egoedge.pipeline import CBKDRequest, pipeline_for
    from egoedge.trainer.checkpoint import read_checkpoint
    from egoedge.trainer.tasks import task_of

    if not checkpoint.is_file():
        raise EgoedgeError(f"checkpoint not found: {checkpoint}")
    task = task_of(read_checkpoint(checkpoint)).name
    out = out or checkpoint.with_name(f"{checkpoint.stem}_cbkd.pt")
    options = {"config": config, "min_ratio": min_ratio, "max_ratio": max_ratio, "finetune_epochs": finetune_epochs,
               "data": data}
    request = CBKDRequest(checkpoint, out, task, preset.value, {k: v for k, v in options.items() if v is not None})
    with RichProgress() as progress:
        path, summary = pipeline_for(task).cbkd(request, progress)
    console.print(cbkd_table(summary, f"CBKD {checkpoint} -> {path}"))
