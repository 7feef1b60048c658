"""What a data source is: a ``--data NAME:ARG`` spec that gives a task's splits and class names.

A video source (:class:`trainer.data.prepare.VideoSource`) only lists its segments
(:class:`Catalog`); decoding, sharding and the data report are shared, so a new layout is one
module that reads its annotation files.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data.clips import ClipSplit, DataConfig
from egoedge.trainer.data.labeling import LABELINGS

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Segment:
    """One clip to decode: ``path`` between ``start_s`` and ``end_s`` (None: whole file), its class and split."""

    key: str
    path: str
    start_s: float | None
    end_s: float | None
    label: int
    split: str


@dataclass
class Catalog:
    """A source's clips and class names; ``rejected`` holds rows refused before decoding, each with its reason."""

    classes: list[str]
    segments: list[Segment]
    rejected: list[dict] = field(default_factory=list)
    # how the splits were chosen, for the data report (e.g. "labels.csv split column")
    split_rule: str = ""


class DataSource:
    """A registered kind of dataset. ``clip_tasks``: it feeds every clip task (each labels clips its own way,
    ``trainer.data.labeling``); ``tasks``: the other tasks it feeds; ``example``: a spec for help texts."""

    name: str = ""
    clip_tasks: bool = False
    tasks: tuple[str, ...] = ()
    example: str = ""
    summary: str = ""

    def feeds(self) -> list[str]:
        """The tasks it feeds, by name."""
        return (LABELINGS.keys() if self.clip_tasks else []) + list(self.tasks)

    def label_names(self, arg: str, cfg: DataConfig) -> list[str]:
        """Class names of the dataset ``arg`` names."""
        raise NotImplementedError

    def load_split(self, arg: str, cfg: DataConfig, split: str) -> ClipSplit:
        """One split as a :class:`ClipSplit` (in memory or read from shards)."""
        raise NotImplementedError


def stable_seed(*parts: object) -> int:
    """A seed from strings and numbers that is the same in every process and Python run."""
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:8], "little")


def stratified_split(labels: list[int], seed: int, fractions: tuple[float, float] = (0.1, 0.1)) -> list[str]:
    """``train``/``val``/``test`` per item: seeded, per class ``1 - sum(fractions)`` / ``fractions`` (80/10/10).

    Every class with at least 3 clips gets one clip in val and in test.
    """
    out = ["train"] * len(labels)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    for y, items in sorted(by_class.items()):
        order = np.random.default_rng(stable_seed("split", seed, y)).permutation(len(items))
        n = len(items)
        n_val = max(1, round(fractions[0] * n)) if n >= 3 else 0
        n_test = max(1, round(fractions[1] * n)) if n >= 3 else 0
        for rank, j in enumerate(order):
            if rank < n_val:
                out[items[j]] = "val"
            elif rank < n_val + n_test:
                out[items[j]] = "test"
    return out


def read_csv(path: Path, columns: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    """Header and rows of an annotation CSV that has ``columns``; anything unreadable is one line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            need_columns(path, reader.fieldnames, columns)
            return list(reader.fieldnames or []), list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise EgoedgeError(f"{path}: not a readable UTF-8 CSV ({str(e).splitlines()[0][:100]})") from None
    except OSError as e:
        raise EgoedgeError(f"{path}: cannot read ({e.strerror})") from None


def need_columns(path: object, header: list[str] | None, columns: tuple[str, ...]) -> None:
    """One clear line when a CSV lacks columns this source needs."""
    missing = [c for c in columns if c not in (header or [])]
    if missing:
        raise EgoedgeError(f"{path}: missing column(s) {', '.join(missing)}; the header has "
                           f"{', '.join(header or []) or 'nothing'}")
