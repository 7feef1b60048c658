"""What a clip task's label is: the span of an annotated video a clip shows, and how a generated clip gets one.

Each clip task registers one :class:`Labeling` under its name in ``LABELINGS``; the data sources ask it
instead of testing task names, so a new clip task is its own module (``trainer/data/anticipation.py``
registers ``anticipation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import Registry

if TYPE_CHECKING:
    from egoedge.trainer.data.clips import DataConfig
    from egoedge.trainer.data.synthetic import ClipSpec


@dataclass(frozen=True)
class Labeling:
    """A clip is labelled with the action it shows (recognition's labels)."""

    extras: tuple[str, ...] = ()  # per-clip fields its splits carry beyond pixels and labels (``history``)

    def window(self, start: float, stop: float, cfg: DataConfig) -> tuple[float, float] | str:
        """The seconds of a video a clip for the action annotated at ``[start, stop]`` decodes, or why none."""
        return start, stop

    def generate(self, split: str, n: int, spec: ClipSpec, cfg: DataConfig,
                 extras: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``n`` generated clips and their labels; per-clip annotations go into ``extras``."""
        from egoedge.trainer.data.synthetic import generate_split

        return generate_split(split, n, spec, seed=cfg.seed, annotations=extras)


LABELINGS: Registry[Labeling] = Registry("clip task")
LABELINGS.register("recognition")(Labeling())


def labeling(task: str) -> Labeling:
    """The labeling of a clip task; a task that is not one (``nlq``: a dataset of its own) is one clear error."""
    if task not in LABELINGS:
        raise EgoedgeError(f"unknown clip task '{task}'; valid: {', '.join(LABELINGS.keys())}")
    return LABELINGS.get(task)
