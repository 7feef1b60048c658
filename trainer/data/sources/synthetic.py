"""``synthetic``: the generated egocentric clips (the default), kept in memory and cached in ``$EGOEDGE_CACHE``."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from egoedge.trainer.common.arrays import read_arrays
from egoedge.trainer.common.io import EgoedgeError, atomic_write
from egoedge.trainer.data.clips import ClipSplit, DataConfig
from egoedge.trainer.data.labeling import labeling
from egoedge.trainer.data.sources.base import DataSource
from egoedge.trainer.data.sources.registry import DATA_SOURCES
from egoedge.trainer.data.synthetic import ClipSpec
from egoedge.trainer.data.vocab import LABELS

# Bump when the generator's output changes, so that cached splits are regenerated.
_GENERATOR_VERSION = 3


# The splits last rendered in this process: a run renders them once for training, and its exports,
# calibration and bench read the same ones again. Read-only, so no reader can change another's copy.
_RECENT: OrderedDict[str, ClipSplit] = OrderedDict()
_RECENT_MAX = 6


def _key(cfg: DataConfig, split: str, n: int) -> str:
    return hashlib.sha1(repr((asdict(cfg), split, n, LABELS, _GENERATOR_VERSION)).encode()).hexdigest()[:16]


def _cache_path(cfg: DataConfig, split: str, n: int) -> Path | None:
    root = os.environ.get("EGOEDGE_CACHE")
    if not root:
        return None
    return Path(root) / "data" / f"{cfg.name}_{split}_{_key(cfg, split, n)}.npz"


def _remember(key: str, split: ClipSplit) -> ClipSplit:
    for array in (split.clips, split.labels, *split.extras.values()):
        array.setflags(write=False)
    _RECENT[key] = split
    while len(_RECENT) > _RECENT_MAX:
        _RECENT.popitem(last=False)
    return split


class Synthetic(DataSource):
    name = "synthetic"
    clip_tasks = True
    tasks = ("nlq",)
    example = "synthetic"
    summary = "the generated egocentric clips (default); split sizes from the preset"

    def label_names(self, arg: str, cfg: DataConfig) -> list[str]:
        return list(LABELS)

    def load_split(self, arg: str, cfg: DataConfig, split: str) -> ClipSplit:
        n = getattr(cfg, split)
        cache = _cache_path(cfg, split, n)
        key = f"{_key(cfg, split, n)}:{cache}"  # a split kept on disk carries its path (derived arrays go beside it)
        if key in _RECENT:
            _RECENT.move_to_end(key)
            return _RECENT[key]
        if cache is not None and cache.exists():
            try:  # a damaged cache file is generated again
                z = read_arrays(cache, "synthetic data cache")
                extras = {k[2:]: v for k, v in z.items() if k.startswith("x_")}
                return _remember(key, ClipSplit(z["clips"], z["labels"], extras, cache))
            except (EgoedgeError, KeyError):
                pass
        spec = ClipSpec(frames=cfg.frames, size=cfg.size)
        extras: dict[str, np.ndarray] = {}
        clips, labels = labeling(cfg.task).generate(split, n, spec, cfg, extras)
        if cache is not None:
            atomic_write(cache, lambda p: np.savez(open(p, "wb"), clips=clips, labels=labels,
                                                   **{f"x_{k}": v for k, v in extras.items()}))
        return _remember(key, ClipSplit(clips, labels, extras, cache))


DATA_SOURCES.register("synthetic")(Synthetic())
