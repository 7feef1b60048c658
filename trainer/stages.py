"""The trainer's stages as file-to-file steps: teacher -> student (a KD recipe) -> CBKD student.

Each stage reads checkpoints and writes one, so ``egoedge run`` chains them and
``egoedge train teacher|student|cbkd`` runs any one alone. Every checkpoint carries the resolved
settings that produced it (``config``) and its metrics, CBKD students also their pruning plan.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from egoedge.trainer.checkpoint import load_model, save_checkpoint
from egoedge.trainer.common.complexity import count_macs, count_params
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data import ClipSplit, DataConfig, label_names, load_split, modality_of, preprocess_spec
from egoedge.trainer.data.modalities import modality_model_kwargs, modality_preprocess
from egoedge.trainer.engine import TrainConfig, world
from egoedge.trainer.models import MODELS, build_model, model_modality, model_tokenizer
from egoedge.trainer.train import KDConfig, distill_student, evaluate, train_teacher

Log = Callable[[dict], None]


@dataclass(frozen=True)
class ModelChoice:
    """A registered architecture and its variant, optionally with pretrained weights for its trunk.

    ``pretrained``: load the trunk's pretrained weights (``weights``, a safetensors or state-dict
    file, or the library's own download when ``weights`` is unset and the machine is online); a
    pretrained teacher stays frozen and only its temporal pool and head are fitted.
    """

    arch: str
    variant: str
    weights: str | None = None
    pretrained: bool = False

    @property
    def spec(self) -> str:
        return f"{self.arch}:{self.variant}"

    @property
    def frozen(self) -> bool:
        """Whether the trunk comes pretrained (an ``hf:`` folder always does)."""
        always = self.arch in MODELS and getattr(MODELS.get(self.arch), "always_pretrained", False)
        return self.pretrained or self.weights is not None or always


def parse_model_spec(spec: str, weights: str | None = None) -> ModelChoice:
    """``timm:NAME`` or ``hf:DIR`` (pretrained, frozen as a teacher), or ``ARCH:VARIANT`` of the registry (trained).

    Example: ``parse_model_spec("timm:vit_base_patch32_clip_224.openai", "b32.safetensors")``.
    """
    arch, sep, variant = spec.partition(":")
    if not sep or not variant:
        raise EgoedgeError(f"model spec '{spec}' is not ARCH:VARIANT (e.g. timm:resnet18, hf:models/clip-vit, "
                           "clip_vit:small)")
    if arch == "hf":
        variant = str(Path(variant).expanduser().resolve())
    if weights is not None:
        if not Path(weights).is_file():
            raise EgoedgeError(f"weights file not found: {weights}")
        weights = str(Path(weights).expanduser().resolve())
    return ModelChoice(arch, variant, weights, pretrained=arch in ("timm", "hf") or weights is not None)


@dataclass
class Splits:
    """The three splits of a dataset plus its preprocessing and class names."""

    data: DataConfig
    train: ClipSplit
    val: ClipSplit
    test: ClipSplit
    preprocess: dict
    labels: list[str]


def load_splits(data: DataConfig) -> Splits:
    """Generate (or read from the cache) every split of ``data``."""
    return Splits(data, load_split(data, "train"), load_split(data, "val"), load_split(data, "test"),
                  preprocess_spec(data), label_names(data))


def data_config_of(checkpoint: dict) -> DataConfig:
    """The dataset a checkpoint was trained on (so a student trains on its teacher's data)."""
    try:
        return DataConfig(**checkpoint["config"]["data"])
    except (KeyError, TypeError) as e:
        raise EgoedgeError(f"the checkpoint does not record its dataset ({e}); retrain it with egoedge") from None


def input_spec(choice: ModelChoice, data: DataConfig) -> dict:
    """The ``preprocess`` block of ``choice`` on ``data``: which modality it reads and how."""
    try:
        modality = model_modality(choice.arch)
    except KeyError as e:
        raise EgoedgeError(e.args[0]) from None
    return modality_preprocess(modality, data, model_tokenizer(choice.arch))


def build(choice: ModelChoice, data: DataConfig, num_classes: int) -> tuple[nn.Module, dict]:
    """A registered model for ``data`` in its modality; a bad architecture option is one clear error."""
    try:
        pp = input_spec(choice, data)
        kwargs = {"num_classes": num_classes, "variant": choice.variant,
                  **modality_model_kwargs(modality_of(pp), data, pp)}
        model = build_model(choice.arch, **kwargs)
        # What a checkpoint needs beyond the options to rebuild the model elsewhere (an hf: model's config).
        return model, {**kwargs, **getattr(model, "rebuild_kwargs", {})}
    except (KeyError, ValueError) as e:
        raise EgoedgeError(f"cannot build {choice.arch}: {e.args[0]}") from None


def metrics_of(model: nn.Module, splits: Splits, history: list[dict] | None = None,
               preprocess: dict | None = None) -> dict:
    """Validation and test accuracy, parameter and MAC counts (per sample) of a model reading ``preprocess``.

    On an anticipation split it adds ``oracle``: what the true transition table scores.
    """
    pp = preprocess or splits.preprocess
    example = tuple(t.to(next(model.parameters()).device) for t in model.example_inputs())
    out = {"val": evaluate(model, splits.val, pp), "test": evaluate(model, splits.test, pp),
           "params": count_params(model), "macs": count_macs(model, example), "history": history or []}
    if "history" in splits.test.extras:
        from egoedge.trainer.data.anticipation import oracle_accuracy

        out["oracle"] = oracle_accuracy(splits.test.extras["history"], splits.test.labels)
    return out


def save_on_rank0(path: Path, **kwargs) -> Path:
    """``save_checkpoint`` by the first process only (under torchrun every process holds the same weights)."""
    rank, size = world()
    if rank == 0:
        save_checkpoint(path, **kwargs)
    if size > 1:
        torch.distributed.barrier()
    return path


def _save(path: Path, choice_arch: str, kwargs: dict, model: nn.Module, metrics: dict, splits: Splits,
          config: dict, preprocess: dict | None = None) -> Path:
    return save_on_rank0(path, arch=choice_arch, model_kwargs=kwargs, model=model, metrics=metrics,
                         label_names=splits.labels, preprocess=preprocess or splits.preprocess,
                         config={"data": asdict(splits.data), **config})


def teacher_stage(choice: ModelChoice, splits: Splits, cfg: TrainConfig, out: Path, progress: Progress = no_progress,
                  log: Log | None = None, config: dict | None = None) -> Path:
    """Train a teacher of any modality with cross-entropy; writes ``out`` (resumable through ``out``.resume).

    A pretrained choice (``timm:NAME``, ``hf:DIR``) is frozen: see :func:`frozen_teacher_stage`.
    """
    if choice.frozen:
        return frozen_teacher_stage(choice, splits, cfg, out, progress, log, config)
    torch.manual_seed(splits.data.seed)
    model, kwargs = build(choice, splits.data, len(splits.labels))
    pp = input_spec(choice, splits.data)
    history = train_teacher(model, splits.train, pp, cfg, progress, resume=out.with_suffix(".resume.pt"), log=log)
    return _save(out, choice.arch, kwargs, model, metrics_of(model, splits, history, pp), splits,
                 {**(config or {}), "train": asdict(cfg)}, pp)


def frozen_teacher_stage(choice: ModelChoice, splits: Splits, cfg: TrainConfig, out: Path,
                         progress: Progress = no_progress, log: Log | None = None, config: dict | None = None) -> Path:
    """A pretrained trunk, frozen, with a temporal pool and linear head fitted on its cached embeddings.

    Writes ``out`` (the whole model, so it rebuilds with no weights file or folder) and, beside it,
    the teacher's logits and clip embeddings of every split, which the student stage reads.
    """
    from egoedge.trainer import frozen_teacher as ft

    torch.manual_seed(splits.data.seed)
    model, kwargs = build(choice, splits.data, len(splits.labels))
    ft.load_trunk_weights(model, choice.weights, choice.spec)
    pp = input_spec(choice, splits.data)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    key = ft.fingerprint(choice.spec, choice.weights, asdict(splits.data), pp)
    history, outputs = ft.train_frozen_teacher(model, parts, pp, cfg, out.parent / f"{out.stem}_cache", key,
                                               progress, log)
    example = tuple(t.to(next(model.parameters()).device) for t in model.example_inputs())
    metrics = {**ft.scores(outputs, parts), "params": count_params(model), "macs": count_macs(model, example),
               "history": history, "frozen": {"trunk": choice.spec, "weights": choice.weights,
                                              "fitted": "temporal pool + linear head on the training split"}}
    path = _save(out, choice.arch, kwargs, model, metrics, splits,
                 {**(config or {}), "train": asdict(cfg), "frozen_trunk": choice.spec}, pp)
    if world()[0] == 0:
        ft.save_outputs(path, outputs, asdict(splits.data))
    return path


def student_stage(choice: ModelChoice, teachers: list[Path], splits: Splits, cfg: TrainConfig, kd: KDConfig,
                  recipe: str, out: Path, progress: Progress = no_progress, log: Log | None = None,
                  config: dict | None = None) -> Path:
    """Train a student with a KD recipe from one or more teacher checkpoints (``ce``: labels only).

    Each teacher reads its own modality (its checkpoint's ``preprocess`` says which), the
    student the RGB clip: this is how flow, audio, box and text teachers teach a video student.
    """
    torch.manual_seed(splits.data.seed + 1)
    model, kwargs = build(choice, splits.data, len(splits.labels))
    if choice.frozen:  # a student starts from pretrained trunk weights and fine-tunes them
        from egoedge.trainer.frozen_teacher import load_trunk_weights

        load_trunk_weights(model, choice.weights, choice.spec)
    resume = out.with_suffix(".resume.pt")
    uses_teacher = kd.alpha > 0 or kd.beta > 0 or bool(kd.hints)
    if uses_teacher:
        if not teachers:
            raise EgoedgeError(f"recipe '{recipe}' distils from a teacher; pass --teacher CHECKPOINT")
        from egoedge.trainer.frozen_teacher import cached_outputs

        loaded = [load_model(t) for t in teachers]
        saved = [cached_outputs(t, splits.data) for t in teachers]  # a frozen teacher's, computed when it was fitted
        history = distill_student(model, [m for m, _ in loaded], splits.train, splits.preprocess, cfg, kd, progress,
                                  resume, log, teacher_preprocess=[ckpt["preprocess"] for _, ckpt in loaded],
                                  held_out=splits.val, teacher_outputs=saved)
    else:  # the label-only baseline: same student, same schedule, no teacher
        history = train_teacher(model, splits.train, splits.preprocess, cfg, progress, resume=resume, log=log,
                                stage="student")
    return _save(out, choice.arch, kwargs, model, metrics_of(model, splits, history), splits,
                 {**(config or {}), "train": asdict(cfg), "kd": asdict(kd), "recipe": recipe,
                  "teachers": [os.path.relpath(t, out.parent) for t in teachers] if uses_teacher else []})


def cbkd_stage(student: Path, splits: Splits, cfg, out: Path, progress: Progress = no_progress,
               log: Log | None = None, config: dict | None = None) -> tuple[Path, dict]:
    """CBKD-compress a trained student checkpoint into ``out``; per-stage checkpoints go beside it."""
    from egoedge.trainer.prune.cbkd import ClipCBKDTask, run_cbkd

    source, ckpt = load_model(student)
    work = out.parent / f"{out.stem}_stages"

    def save_stage(model: nn.Module, pruning: dict, path: Path) -> None:
        save_on_rank0(path, arch=ckpt["arch"], model_kwargs=ckpt["config"]["model"], model=model, metrics={},
                        label_names=ckpt["label_names"], preprocess=ckpt["preprocess"],
                        config={"data": ckpt["config"].get("data"), "pruning": pruning})

    task = ClipCBKDTask(splits.train, splits.val, splits.preprocess)
    model, summary = run_cbkd(source, task, cfg, work, save_stage, progress, log)
    metrics = metrics_of(model, splits, summary["finetune"])
    metrics["cbkd"] = {k: v for k, v in summary.items() if k not in ("finetune", "pruning")}
    src_cfg = {k: v for k, v in ckpt["config"].items() if k not in ("model", "pruning", "data")}
    path = save_on_rank0(out, arch=ckpt["arch"], model_kwargs=ckpt["config"]["model"], model=model, metrics=metrics,
                           label_names=ckpt["label_names"], preprocess=ckpt["preprocess"],
                           config={"data": asdict(splits.data), **src_cfg, **(config or {}),
                                   "cbkd": asdict(cfg), "source": str(student), "pruning": summary["pruning"]})
    return path, summary
