"""Clip splits (arrays, or shards read on demand), their config, and the preprocessing every consumer shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.common.arrays import read_array
from egoedge.trainer.common.io import EgoedgeError, atomic_write

# CLIP's normalisation: the teacher is CLIP-style and the student shares its input.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which task on it, and how its clips are sampled.

    ``name``: the ``--data`` spec (``synthetic``, ``folder:PATH``, ``epic100:PATH``).
    ``task``: a clip task, whose labeling (``trainer.data.labeling``) says what a clip's label is:
    ``recognition`` the action in the clip, ``anticipation`` the next action. ``train``/``val``/``test``
    size the generated splits; a video source's splits are what its files hold. ``label``: which
    EPIC-KITCHENS class (``verb``, ``noun``, ``action``); ``videos``: EPIC's videos folder when not
    beside the annotations; ``observe_s``: seconds observed before the 1 s anticipation gap;
    ``max_bad``: the largest fraction of unusable clips a video source may skip.
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
    label: str = "verb"
    videos: str = ""
    observe_s: float = 2.0
    max_bad: float = 0.05


@dataclass
class ClipSplit:
    """One split: ``clips`` uint8 ``(N, T, H, W, 3)`` (an array, or shards read on demand), ``labels`` and more.

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

    def sample_plan(self) -> int | list[int]:
        """What the engine samples an epoch from: the clip count, or per-shard counts when read from shards."""
        counts = getattr(self.clips, "shard_counts", None)
        return list(counts) if counts else len(self)


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
    clips = np.ascontiguousarray(clips)  # also reads a memory-mapped shard's clips into one array
    if not clips.flags.writeable:  # a shared in-memory split: torch warns on arrays it could write through
        clips = clips.copy()
    x = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor(preprocess["mean"]).view(1, 1, 3, 1, 1)
    std = torch.tensor(preprocess["std"]).view(1, 1, 3, 1, 1)
    # Contiguous NTCHW: elementwise ops keep the permuted strides, and exporters record the
    # example input's memory layout (Core ML refuses a non-contiguous dim order).
    return ((x - mean) / std).contiguous()


def derived(split: ClipSplit, name: str, compute) -> np.ndarray:
    """``split.extras[name]``, computed once by ``compute(split)`` and kept beside the cached split."""
    if name not in split.extras:
        path = split.cache.with_suffix(f".{name}.npy") if split.cache is not None else None
        cached = None
        if path is not None and path.exists():
            try:  # a damaged cache file is computed again
                cached = read_array(path, f"cached {name}")
            except EgoedgeError:
                pass
        if cached is not None:
            split.extras[name] = cached
        else:
            split.extras[name] = compute(split)
            if path is not None:
                atomic_write(path, lambda p: np.save(open(p, "wb"), split.extras[name]))
    return split.extras[name]
