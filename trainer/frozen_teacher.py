"""A pretrained teacher kept frozen: its trunk runs once per split, only the temporal pool and head are fitted.

The per-frame (or per-clip, for a video model) embeddings of every split are computed once and
cached beside the checkpoint, keyed by the trunk, its weights and the data; the pool and linear
head train on them in seconds, and the teacher's logits and clip embeddings for distillation are
saved once per split too (:func:`cached_outputs`), so the student stage never runs the big trunk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egoedge.trainer.common.arrays import read_array, read_arrays
from egoedge.trainer.common.io import EgoedgeError, atomic_write, sha256_file
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data import ClipSplit, model_input
from egoedge.trainer.engine import TrainConfig, device, fit
from egoedge.trainer.train import topk_accuracy

SPLITS = ("train", "val", "test")


def load_trunk_weights(model: nn.Module, weights: str | None, spec: str) -> None:
    """Pretrained weights into a model's trunk (a file, or the library's own source when ``weights`` is None)."""
    loader = getattr(model.encoder, "load_pretrained", None)
    if loader is None:
        raise EgoedgeError(f"{spec} has no pretrained weights to load; use timm:NAME or hf:DIR")
    loader(weights)


def fingerprint(spec: str, weights: str | None, data: dict, preprocess: dict) -> str:
    """What the cached embeddings depend on: the trunk, its weights' bytes, the data and its preprocessing."""
    key = {"trunk": spec, "weights": sha256_file(weights) if weights else None, "data": data, "preprocess": preprocess}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.no_grad()
def split_embeddings(model: nn.Module, split: ClipSplit, preprocess: dict, progress: Progress = no_progress,
                     stage: str = "", batch_size: int = 16) -> np.ndarray:
    """``(N, T, D)`` float32 trunk embeddings of every clip (``T`` is 1 for a clip-level video trunk)."""
    dev = next(model.parameters()).device
    model.eval()
    parts = []
    for i in range(0, len(split), batch_size):
        x = model_input(split, np.arange(i, min(i + batch_size, len(split))), preprocess).to(dev)
        parts.append(model.frame_embeddings(x).float().cpu().numpy())
        progress(stage, min(i + batch_size, len(split)), len(split), {})
    return np.concatenate(parts)


def cached_embeddings(model: nn.Module, splits: dict[str, ClipSplit], preprocess: dict, folder: Path, key: str,
                      progress: Progress = no_progress) -> dict[str, np.ndarray]:
    """Each split's trunk embeddings, read from ``folder`` when computed before under the same ``key``."""
    out = {}
    for name, split in splits.items():
        path = folder / f"{name}_{key}.npy"
        if path.is_file():
            try:
                x = read_array(path, "cached teacher embeddings", kind="f")
                if len(x) == len(split):
                    out[name] = x
                    progress(f"teacher embeddings {name} (cached)", 1, 1, {})
                    continue
            except EgoedgeError:
                pass  # a damaged cache is recomputed
        x = split_embeddings(model, split, preprocess, progress, f"teacher embeddings {name}")
        atomic_write(path, lambda p, a=x: np.save(open(p, "wb"), a))
        out[name] = x
    return out


def fit_pool_head(model: nn.Module, train: np.ndarray, labels: np.ndarray, cfg: TrainConfig,
                  progress: Progress = no_progress, log=None) -> list[dict]:
    """Train the temporal pool and linear head on cached trunk embeddings (the trunk stays frozen)."""
    dev = device()
    top = nn.ModuleDict({"pool": model.pool, "head": model.head}).to(dev)
    x, y = torch.from_numpy(train).to(dev), torch.from_numpy(labels).to(dev)

    def step(idx):
        logits = model.head(model.pool(x[idx]))
        return {"loss": F.cross_entropy(logits, y[idx], label_smoothing=cfg.label_smoothing)}

    return fit(top, list(top.parameters()), len(train), cfg, step, "teacher head", progress, None, log)


@torch.no_grad()
def head_outputs(model: nn.Module, embeddings: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and clip embeddings from cached trunk embeddings (what the whole model would give)."""
    dev = next(model.parameters()).device
    model.eval()
    logits, feats = [], []
    for i in range(0, len(embeddings), batch_size):
        f = model.pool(torch.from_numpy(embeddings[i:i + batch_size]).to(dev))
        feats.append(f.float().cpu().numpy())
        logits.append(model.head(f).float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(feats)


def outputs_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}_outputs.npz")


def train_frozen_teacher(model: nn.Module, splits: dict[str, ClipSplit], preprocess: dict, cfg: TrainConfig,
                         cache: Path, key: str, progress: Progress = no_progress, log=None) -> tuple[list[dict], dict]:
    """Freeze the trunk, fit pool + head on cached embeddings; returns ``(history, outputs per split)``.

    ``outputs`` maps each split to ``(logits, clip embeddings)``.
    """
    model.to(device())
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    emb = cached_embeddings(model, splits, preprocess, cache, key, progress)
    torch.manual_seed(cfg.seed)
    history = fit_pool_head(model, emb["train"], splits["train"].labels, cfg, progress, log)
    return history, {name: head_outputs(model, emb[name]) for name in splits}


def save_outputs(checkpoint: Path, outputs: dict, data: dict) -> Path:
    """The teacher's logits and clip embeddings per split beside its checkpoint, tied to its bytes and data."""
    arrays = {f"{s}_{kind}": arr for s, (logits, feats) in outputs.items()
              for kind, arr in (("logits", logits), ("features", feats))}
    meta = json.dumps({"checkpoint_sha256": sha256_file(checkpoint), "data": data}, sort_keys=True, default=str)
    return atomic_write(outputs_path(checkpoint),
                        lambda p: np.savez(open(p, "wb"), meta=np.array(meta), **arrays))


def cached_outputs(checkpoint: Path, data) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A teacher's saved ``(logits, clip embeddings)`` per split if they match its checkpoint and data, else ``{}``."""
    path = outputs_path(checkpoint)
    if not path.is_file():
        return {}
    try:  # a damaged or stale file is recomputed
        z = read_arrays(path, "saved teacher outputs")
        meta = json.loads(str(z["meta"]))
        if meta["checkpoint_sha256"] != sha256_file(checkpoint) or \
                json.dumps(meta["data"], sort_keys=True, default=str) != \
                json.dumps(asdict(data), sort_keys=True, default=str):
            return {}
        return {s: (torch.from_numpy(z[f"{s}_logits"]), torch.from_numpy(z[f"{s}_features"])) for s in SPLITS}
    except (EgoedgeError, ValueError, KeyError):
        return {}


def scores(outputs: dict, splits: dict[str, ClipSplit]) -> dict:
    """``{"val": {top1, top5}, "test": {...}}`` of the fitted teacher."""
    return {name: topk_accuracy(outputs[name][0], splits[name].labels) for name in ("val", "test")}
