"""Plain PyTorch training: the teacher with cross-entropy, the student with distillation.

The loops read top to bottom: AdamW, linear warm-up then cosine decay, one epoch at a time,
a resume file after every epoch so a killed run continues where it stopped.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.common.io import write_bytes_atomic
from trainer.common.progress import Progress, no_progress
from trainer.data import ClipSplit, to_model_input
from trainer.distill import DistillationLoss


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training stage."""

    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.1
    label_smoothing: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class KDConfig:
    """Weights of the student objective ``alpha*feature + beta*response + gamma*task`` and its temperature."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.5
    temperature: float = 4.0


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict(model: nn.Module, split: ClipSplit, preprocess: dict, batch_size: int = 64,
            features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (and clip embeddings when ``features``) of ``model`` on a whole split."""
    dev = next(model.parameters()).device
    model.eval()
    logits, feats = [], []
    for i in range(0, len(split), batch_size):
        x = to_model_input(split.clips[i:i + batch_size], preprocess).to(dev)
        if features:
            f = model.forward_features(x)
            feats.append(f.float().cpu())
            logits.append(model.head(f).float().cpu())
        else:
            logits.append(model(x).float().cpu())
    return torch.cat(logits).numpy(), (torch.cat(feats).numpy() if features else None)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"top1", "top5"}`` in percent."""
    order = np.argsort(-logits, axis=1)
    k = min(5, logits.shape[1])
    return {"top1": float(100.0 * np.mean(order[:, 0] == labels)),
            "top5": float(100.0 * np.mean((order[:, :k] == labels[:, None]).any(axis=1)))}


def evaluate(model: nn.Module, split: ClipSplit, preprocess: dict) -> dict[str, float]:
    """Top-1/top-5 accuracy (percent) of ``model`` on ``split``."""
    logits, _ = predict(model, split, preprocess)
    return topk_accuracy(logits, split.labels)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _fit(model: nn.Module, extra: nn.Module | None, train: ClipSplit, preprocess: dict, cfg: TrainConfig,
         step_loss: Callable[[torch.Tensor, torch.Tensor, np.ndarray], dict[str, torch.Tensor]],
         stage: str, progress: Progress, resume: Path | None) -> list[dict]:
    """Shared epoch loop; ``step_loss(x, y, idx)`` returns the loss dict of one batch."""
    dev = next(model.parameters()).device
    params = list(model.parameters()) + (list(extra.parameters()) if extra is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    history: list[dict] = []
    start_epoch = 0
    fingerprint = repr(asdict(cfg)) + stage
    if resume is not None and resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            if extra is not None:
                extra.load_state_dict(state["extra"])
            opt.load_state_dict(state["optimizer"])
            start_epoch, history = state["epoch"] + 1, list(state["history"])
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        torch.manual_seed(cfg.seed * 1000 + epoch)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = _lr_at(epoch * steps_per_epoch + b, total, cfg)
            x = to_model_input(train.clips[idx], preprocess).to(dev)
            y = torch.from_numpy(train.labels[idx]).to(dev)
            terms = step_loss(x, y, idx)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            progress(stage, epoch * steps_per_epoch + b + 1, total,
                     {"epoch": epoch + 1, "loss": sums["loss"] / (b + 1)})
        record = {"stage": stage, "epoch": epoch + 1, "seconds": time.perf_counter() - t0,
                  **{k: v / steps_per_epoch for k, v in sums.items()}}
        history.append(record)
        if resume is not None:
            buf = io.BytesIO()
            torch.save({"fingerprint": fingerprint, "epoch": epoch, "history": history,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "extra": extra.state_dict() if extra is not None else {}}, buf)
            write_bytes_atomic(resume, buf.getvalue())
    if resume is not None:
        resume.unlink(missing_ok=True)
    return history


def train_teacher(model: nn.Module, train: ClipSplit, preprocess: dict, cfg: TrainConfig,
                  progress: Progress = no_progress, resume: Path | None = None) -> list[dict]:
    """Train ``model`` in place with label-smoothed cross-entropy; returns per-epoch history."""
    model.to(device())

    def step(x, y, idx):
        return {"loss": F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)}

    return _fit(model, None, train, preprocess, cfg, step, "teacher", progress, resume)


def distill_student(student: nn.Module, teacher: nn.Module, train: ClipSplit, preprocess: dict,
                    cfg: TrainConfig, kd: KDConfig, progress: Progress = no_progress,
                    resume: Path | None = None) -> list[dict]:
    """Distil ``teacher`` into ``student`` in place with :class:`DistillationLoss`.

    The teacher is frozen and the clips are not augmented, so its logits and embeddings are
    computed once for the whole training split instead of once per step.
    """
    dev = device()
    student.to(dev)
    teacher.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    t_logits, t_feats = predict(teacher, train, preprocess, features=True)
    t_logits_t, t_feats_t = torch.from_numpy(t_logits).to(dev), torch.from_numpy(t_feats).to(dev)
    loss = DistillationLoss(student.embed_dim, teacher.embed_dim, alpha=kd.alpha, beta=kd.beta, gamma=kd.gamma,
                            temperature=kd.temperature, label_smoothing=cfg.label_smoothing).to(dev)

    def step(x, y, idx):
        feats = student.forward_features(x)
        return loss({"student_logits": student.head(feats), "student_features": feats,
                     "teacher_logits": t_logits_t[idx], "teacher_features": t_feats_t[idx], "labels": y})

    return _fit(student, loss, train, preprocess, cfg, step, "student", progress, resume)


def linear_probe(train: ClipSplit, test: ClipSplit, preprocess: dict, epochs: int = 30, seed: int = 0) -> float:
    """Top-1 (percent) of a linear classifier on raw normalised pixels — the floor the models must beat."""
    torch.manual_seed(seed)
    xtr = to_model_input(train.clips, preprocess).flatten(1)
    xte = to_model_input(test.clips, preprocess).flatten(1)
    ytr = torch.from_numpy(train.labels)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    probe = nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr)).split(128):
            opt.zero_grad()
            F.cross_entropy(probe(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float(100.0 * (probe(xte).argmax(1).numpy() == test.labels).mean())
