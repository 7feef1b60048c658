"""Training stages: the teacher with cross-entropy, the student with distillation.

The loop itself lives in :mod:`trainer.engine`; each stage here only says what one batch's
loss is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data import ClipSplit, model_input, to_model_input
from egoedge.trainer.distill import DistillationLoss, FeatureTaps, LogitEnsemble
from egoedge.trainer.engine import TrainConfig, device, fit, wrap_ddp
from egoedge.trainer.recipes import KDConfig

__all__ = ["KDConfig", "TrainConfig", "default_hint_pair", "device", "distill_student", "evaluate",
           "linear_probe", "predict", "topk_accuracy", "train_teacher"]


@torch.no_grad()
def predict(model: nn.Module, split: ClipSplit, preprocess: dict, batch_size: int = 64,
            features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (and clip embeddings when ``features``) of ``model`` on a whole split.

    ``preprocess`` says which modality the model reads (:func:`trainer.data.model_input`).
    """
    dev = next(model.parameters()).device
    model.eval()
    logits, feats = [], []
    for i in range(0, len(split), batch_size):
        x = model_input(split, np.arange(i, min(i + batch_size, len(split))), preprocess).to(dev)
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


def _batch(train: ClipSplit, preprocess: dict, idx: np.ndarray, dev: torch.device):
    x = model_input(train, idx, preprocess).to(dev)
    return x, torch.from_numpy(train.labels[idx]).to(dev)


def param_groups(model: nn.Module) -> list:
    """The model's own optimiser groups when it has them (a pretrained encoder with its ``lr_scale``)."""
    return model.param_groups() if hasattr(model, "param_groups") else list(model.parameters())


def train_teacher(model: nn.Module, train: ClipSplit, preprocess: dict, cfg: TrainConfig,
                  progress: Progress = no_progress, resume: Path | None = None,
                  log: Callable[[dict], None] | None = None, stage: str = "teacher") -> list[dict]:
    """Train ``model`` in place with label-smoothed cross-entropy; returns per-epoch history.

    ``preprocess`` names the modality ``model`` reads, so this trains any teacher: RGB, flow,
    audio, boxes or text.
    """
    dev = device()
    model.to(dev)
    net = wrap_ddp(model)

    def step(idx):
        x, y = _batch(train, preprocess, idx, dev)
        return {"loss": F.cross_entropy(net(x), y, label_smoothing=cfg.label_smoothing)}

    return fit(model, param_groups(model), train.sample_plan(), cfg, step, stage, progress, resume, log)


_BLOCK = re.compile(r"^(.*\.)?(stages|blocks|layers)\.\d+$")


def default_hint_pair(student: nn.Module, teacher: nn.Module) -> tuple[str, str]:
    """A (student, teacher) block pair at the same relative depth (2/3 of the way in) for hints."""
    def blocks(model: nn.Module) -> list[str]:
        names = [n for n, _ in model.named_modules() if _BLOCK.match(n)]
        if not names:
            raise ValueError(f"{type(model).__name__} has no numbered stages/blocks to take a hint from")
        return names

    s, t = blocks(student), blocks(teacher)
    pick = lambda names: names[min(len(names) - 1, (2 * len(names)) // 3)]  # noqa: E731
    return pick(s), pick(t)


def _hint_names(kd: KDConfig, student: nn.Module, teacher: nn.Module) -> tuple[list[str], list[str]]:
    pairs = [default_hint_pair(student, teacher) if p == ("auto", "auto") else tuple(p) for p in kd.hints]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _logits_of(teacher: nn.Module, split: ClipSplit, preprocess: dict, dev: torch.device,
               features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A frozen teacher's logits (and embeddings) on a whole split, on ``dev``."""
    chunks, feats = [], []
    with torch.no_grad():
        for s in range(0, len(split), 64):
            z, f = teacher(model_input(split, np.arange(s, min(s + 64, len(split))), preprocess).to(dev),
                           return_features=True)
            chunks.append(z.float())
            if features:
                feats.append(f.float())
    return torch.cat(chunks), (torch.cat(feats) if features else None)


def distill_student(student: nn.Module, teachers: nn.Module | Sequence[nn.Module], train: ClipSplit,
                    preprocess: dict, cfg: TrainConfig, kd: KDConfig, progress: Progress = no_progress,
                    resume: Path | None = None, log: Callable[[dict], None] | None = None,
                    teacher_preprocess: Sequence[dict] | None = None, held_out: ClipSplit | None = None,
                    teacher_outputs: Sequence[dict] | None = None) -> list[dict]:
    """Distil one or several frozen teachers into ``student`` in place with :class:`DistillationLoss`.

    The clips are not augmented, so each teacher's logits (and the first teacher's embeddings)
    are computed once for the whole split instead of once per step; only intermediate hints
    need the first teacher run per batch. ``teacher_preprocess[i]`` is the ``preprocess`` of
    teacher ``i``, so each reads its own modality — flow, audio, boxes, the past actions as
    text (default: what the student reads). Several teachers' logits are combined by a
    :class:`LogitEnsemble` (``kd.ensemble``) whose ``learned`` weights are fitted on
    ``held_out`` when given: on the training split a teacher that memorised it (the audio
    one, say) would take all the weight. Feature KD and hints read the first teacher.
    ``teacher_outputs[i]`` may hold teacher ``i``'s saved ``(logits, embeddings)`` under ``"train"``
    and ``"val"`` (a frozen pretrained teacher's); those are used instead of running it.
    """
    dev = device()
    teachers = [teachers] if isinstance(teachers, nn.Module) else list(teachers)
    student.to(dev)
    for t in teachers:
        t.to(dev).eval()
        for p in t.parameters():
            p.requires_grad_(False)
    pps = list(teacher_preprocess) if teacher_preprocess is not None else [preprocess] * len(teachers)
    if len(pps) != len(teachers):
        raise ValueError(f"{len(teachers)} teachers but {len(pps)} teacher preprocess blocks")
    rgb = lambda idx: model_input(train, idx, preprocess)  # noqa: E731
    saved = list(teacher_outputs) if teacher_outputs is not None else [{}] * len(teachers)

    def outputs_of(i: int, split: ClipSplit, name: str, features: bool = False):
        if (got := saved[i].get(name)) is not None and len(got[0]) == len(split):
            return got[0].to(dev), (got[1].to(dev) if features else None)
        return _logits_of(teachers[i], split, pps[i], dev, features=features)

    outs = [outputs_of(i, train, "train", features=i == 0) for i in range(len(teachers))]
    all_logits, first_feats = [z for z, _ in outs], outs[0][1]
    ensemble = LogitEnsemble(len(teachers), kd.ensemble).to(dev)
    fit_on = held_out if held_out is not None and len(teachers) > 1 and kd.ensemble == "learned" else train
    fit_logits = all_logits if fit_on is train else [outputs_of(i, fit_on, "val")[0] for i in range(len(teachers))]
    weights = ensemble.fit(torch.stack(fit_logits), torch.tensor(fit_on.labels).to(dev))
    t_logits = ensemble(torch.stack(all_logits)).detach()

    hint_s, hint_t = _hint_names(kd, student, teachers[0])
    hint_channels = None
    if hint_s:
        from egoedge.trainer.distill import as_feature_map

        x0 = rgb(np.arange(min(2, len(train)))).to(dev)
        with torch.no_grad(), FeatureTaps(student, hint_s) as ts, FeatureTaps(teachers[0], hint_t) as tt:
            student.eval()
            student(x0)
            teachers[0](model_input(train, np.arange(min(2, len(train))), pps[0]).to(dev))
            hint_channels = [(as_feature_map(a).shape[1], as_feature_map(b).shape[1])
                             for a, b in zip(ts.outputs, tt.outputs, strict=True)]
    loss = DistillationLoss(student.embed_dim, teachers[0].embed_dim, alpha=kd.alpha, beta=kd.beta, gamma=kd.gamma,
                            temperature=kd.temperature, label_smoothing=cfg.label_smoothing, response=kd.response,
                            top_k=kd.top_k, feature=kd.feature, hint_channels=hint_channels, delta=kd.delta).to(dev)
    net = wrap_ddp(student)
    s_taps = FeatureTaps(student, hint_s).__enter__() if hint_s else None
    t_taps = FeatureTaps(teachers[0], hint_t).__enter__() if hint_s else None

    def step(idx):
        x, y = _batch(train, preprocess, idx, dev)
        logits, feats = net(x, return_features=True)
        out = {"student_logits": logits, "student_features": feats, "teacher_logits": t_logits[idx],
               "teacher_features": first_feats[idx], "labels": y}
        if s_taps is not None:
            with torch.no_grad():
                teachers[0](model_input(train, idx, pps[0]).to(dev))
            out["student_hints"], out["teacher_hints"] = s_taps.outputs, t_taps.outputs
        return loss(out)

    try:
        history = fit(student, list(student.parameters()) + list(loss.parameters()), train.sample_plan(), cfg, step,
                      "student", progress, resume, log, extra=loss)
    finally:
        for taps in (s_taps, t_taps):
            if taps is not None:
                taps.__exit__(None, None, None)
    if len(teachers) > 1:
        for h in history:
            h["teacher_weights"] = weights
    return history


def linear_probe(train: ClipSplit, test: ClipSplit, preprocess: dict, epochs: int = 30, seed: int = 0) -> float:
    """Top-1 (percent) of a linear classifier on raw normalised pixels — the floor the models must beat.

    On a large dataset it fits on a seeded subset (about 1 GB of float pixels per split at most).
    """
    torch.manual_seed(seed)
    features = int(np.prod(train.clips.shape[1:]))
    cap = max(256, int(2.5e8 // features))

    def subset(split: ClipSplit) -> np.ndarray:
        n = len(split)
        return np.arange(n) if n <= cap else np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))

    itr, ite = subset(train), subset(test)
    xtr = to_model_input(train.clips[itr], preprocess).flatten(1)
    xte = to_model_input(test.clips[ite], preprocess).flatten(1)
    ytr = torch.from_numpy(train.labels[itr])
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    probe = nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr)).split(128):
            opt.zero_grad()
            F.cross_entropy(probe(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float(100.0 * (probe(xte).argmax(1).numpy() == test.labels[ite]).mean())
