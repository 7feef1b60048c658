"""Clip datasets as in-memory uint8 arrays plus the preprocessing every consumer shares."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainer.common.io import EgoedgeError, atomic_write
from trainer.data.synthetic import ClipSpec, generate_split
from trainer.data.vocab import LABELS

# CLIP's normalisation: the teacher is CLIP-style and the student shares its input.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


CLIP_TASKS = ("recognition", "anticipation")
# Bump when the generator's output changes, so that cached splits are regenerated.
_GENERATOR_VERSION = 3


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which task on it, and how big each split is.

    ``task``: ``recognition`` (label = the action in the clip) or ``anticipation`` (label =
    the next action; the clip shows the last of ``history`` past actions).
    """

    name: str = "synthetic"
    frames: int = 4
    size: int = 64
    train: int = 1600
    val: int = 320
    test: int = 320
    seed: int = 0
    task: str = "recognition"
    history: int = 3


@dataclass
class ClipSplit:
    """One split: ``clips`` uint8 ``(N, T, H, W, 3)``, ``labels`` int64 ``(N,)`` and other modalities.

    ``extras`` holds the same clips' other modalities by name (``boxes``, ``present``,
    ``box_classes``, ``audio``; ``history`` for anticipation) and what is derived from them
    on demand (``flow``, token ids); ``cache`` is where derived arrays are kept on disk.
    """

    clips: np.ndarray
    labels: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    cache: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)


def preprocess_spec(cfg: DataConfig) -> dict:
    """The manifest/checkpoint ``preprocess`` block for clips of ``cfg``."""
    return {"size": [cfg.size, cfg.size], "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
            "frames": cfg.frames, "layout": "NTCHW"}


def to_model_input(clips: np.ndarray, preprocess: dict) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> normalised float32 ``(N, T, 3, H, W)`` per ``preprocess``.

    This is the reference of what every runtime (and the Android app) must feed the model.
    """
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise EgoedgeError(f"clips must be (N, T, H, W, 3) uint8, got shape {tuple(clips.shape)}")
    n, t, h, w, _ = clips.shape
    if t != preprocess["frames"] or [h, w] != list(preprocess["size"]):
        raise EgoedgeError(
            f"clips are {t} frames of {h}x{w} but the model expects {preprocess['frames']} frames of "
            f"{preprocess['size'][0]}x{preprocess['size'][1]}")
    x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor(preprocess["mean"]).view(1, 1, 3, 1, 1)
    std = torch.tensor(preprocess["std"]).view(1, 1, 3, 1, 1)
    # Contiguous NTCHW: elementwise ops keep the permuted strides, and exporters record the
    # example input's memory layout (Core ML refuses a non-contiguous dim order).
    return ((x - mean) / std).contiguous()


def _cache_path(cfg: DataConfig, split: str, n: int) -> Path | None:
    root = os.environ.get("EGOEDGE_CACHE")
    if not root:
        return None
    key = hashlib.sha1(repr((asdict(cfg), split, n, LABELS, _GENERATOR_VERSION)).encode()).hexdigest()[:16]
    return Path(root) / "data" / f"{cfg.name}_{split}_{key}.npz"


def load_split(cfg: DataConfig, split: str) -> ClipSplit:
    """Generate (or read from ``$EGOEDGE_CACHE``) one split of the dataset named by ``cfg``."""
    if cfg.name != "synthetic":
        raise EgoedgeError(f"unknown dataset '{cfg.name}'; available: synthetic")
    if cfg.task not in CLIP_TASKS:
        raise EgoedgeError(f"unknown task '{cfg.task}'; valid: {', '.join(CLIP_TASKS)}")
    n = getattr(cfg, split)
    cache = _cache_path(cfg, split, n)
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            extras = {k[2:]: z[k] for k in z.files if k.startswith("x_")}
            return ClipSplit(z["clips"], z["labels"], extras, cache)
    spec = ClipSpec(frames=cfg.frames, size=cfg.size)
    extras: dict[str, np.ndarray] = {}
    if cfg.task == "anticipation":
        from trainer.data.anticipation import generate_anticipation_split

        clips, labels, extras["history"] = generate_anticipation_split(split, n, spec, cfg.history, cfg.seed, extras)
    else:
        clips, labels = generate_split(split, n, spec, seed=cfg.seed, annotations=extras)
    if cache is not None:
        atomic_write(cache, lambda p: np.savez(open(p, "wb"), clips=clips, labels=labels,
                                               **{f"x_{k}": v for k, v in extras.items()}))
    return ClipSplit(clips, labels, extras, cache)


def derived(split: ClipSplit, name: str, compute) -> np.ndarray:
    """``split.extras[name]``, computed once by ``compute(split)`` and kept beside the cached split."""
    if name not in split.extras:
        path = split.cache.with_suffix(f".{name}.npy") if split.cache is not None else None
        if path is not None and path.exists():
            split.extras[name] = np.load(path)
        else:
            split.extras[name] = compute(split)
            if path is not None:
                atomic_write(path, lambda p: np.save(open(p, "wb"), split.extras[name]))
    return split.extras[name]


def label_names(cfg: DataConfig) -> list[str]:
    """Class names of the dataset named by ``cfg``."""
    return list(LABELS)
