"""``epic100:PATH``: EPIC-KITCHENS-100 from its official annotation CSVs and video layout.

``PATH`` holds ``EPIC_100_train.csv`` and ``EPIC_100_validation.csv``; videos are
``PATH/<participant_id>/videos/<video_id>.MP4`` (or under ``data.videos`` in that layout). The
validation file is the test split; val is carved from train, participant-disjoint and seeded.
Classes are EPIC's own indices (``verb_class``/``noun_class``; ``action``: the verb-noun pairs of
the train file), so logits line up with the official class lists. The task's labeling picks each clip's
span: anticipation's ends 1 s before the labelled segment starts and shows ``data.observe_s`` seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data.clips import DataConfig
from egoedge.trainer.data.labeling import labeling
from egoedge.trainer.data.prepare import VideoSource
from egoedge.trainer.data.sources.base import Catalog, Segment, read_csv, stable_seed, stratified_split
from egoedge.trainer.data.sources.registry import DATA_SOURCES

FILES = {"train": "EPIC_100_train.csv", "test": "EPIC_100_validation.csv"}
COLUMNS = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "verb",
           "verb_class", "noun", "noun_class")
LABELS = ("verb", "noun", "action")
VAL_FRACTION = 0.1


def timestamp(value: str, where: str) -> float:
    """``HH:MM:SS.ff`` -> seconds."""
    try:
        h, m, s = value.strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except (ValueError, AttributeError):
        raise EgoedgeError(f"{where}: timestamp '{value}' is not HH:MM:SS.ff") from None


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        raise EgoedgeError(f"--data epic100:{path.parent}: {path.name} is missing (the official annotation "
                           "files EPIC_100_train.csv and EPIC_100_validation.csv go there)")
    rows = read_csv(path, COLUMNS)[1]
    for i, r in enumerate(rows):
        for col in ("verb_class", "noun_class"):
            if not str(r[col]).strip().isdigit():
                raise EgoedgeError(f"{path}: row {i + 2}: {col} '{r[col]}' is not a class index")
    return rows


class Epic100(VideoSource):
    name = "epic100"
    clip_tasks = True
    example = "epic100:EPIC-KITCHENS/"
    summary = "EPIC_100_{train,validation}.csv + <participant>/videos/<video>.MP4; data.label verb|noun|action"

    def catalog(self, arg: str, cfg: DataConfig) -> Catalog:
        root = Path(arg)
        if not root.is_dir():
            raise EgoedgeError(f"--data epic100:{arg}: no such folder")
        if cfg.label not in LABELS:
            raise EgoedgeError(f"data.label '{cfg.label}' is not an EPIC-KITCHENS class; use one of "
                               f"{', '.join(LABELS)}")
        videos = Path(cfg.videos) if cfg.videos else root
        if cfg.videos and not videos.is_dir():
            raise EgoedgeError(f"--videos {cfg.videos}: no such folder")
        rows = {split: _read(root / name) for split, name in FILES.items()}
        classes, class_of = self._classes(rows, cfg.label)
        task_labels = labeling(cfg.task)
        segments, rejected = [], []
        for split, items in rows.items():
            for i, r in enumerate(items):
                where = f"{root / FILES[split]}: row {i + 2}"
                start, stop = timestamp(r["start_timestamp"], where), timestamp(r["stop_timestamp"], where)
                video = videos / r["participant_id"] / "videos" / f"{r['video_id']}.MP4"
                label = class_of(r)
                span = task_labels.window(start, stop, cfg)
                if isinstance(span, str):
                    rejected.append({"key": r["narration_id"], "path": str(video), "split": split, "reason": span})
                    continue
                start, stop = span
                if label is None:
                    rejected.append({"key": r["narration_id"], "path": str(video), "split": split,
                                     "reason": f"{cfg.label} '{_name(r, cfg.label)}' is not in the class list "
                                               "(no training segment has it)"})
                    continue
                segments.append(Segment(r["narration_id"], str(video), start, stop, label, split))
        if not any(v.parent.parent.is_dir() for v in {Path(s.path) for s in segments[:50]}):
            raise EgoedgeError(f"no EPIC videos under {videos}: expected {videos}/<participant_id>/videos/"
                               "<video_id>.MP4 (pass --videos DIR when they live elsewhere)")
        rule = self._carve_val(segments, rows["train"], cfg.seed)
        return Catalog(classes, segments, rejected, rule)

    @staticmethod
    def _classes(rows: dict[str, list[dict]], label: str):
        if label == "action":
            pairs = sorted({(int(r["verb_class"]), int(r["noun_class"])) for r in rows["train"]})
            names = {}
            for r in rows["train"]:
                names.setdefault((int(r["verb_class"]), int(r["noun_class"])), f"{r['verb']}_{r['noun']}")
            index = {p: i for i, p in enumerate(pairs)}
            return [names[p] for p in pairs], lambda r: index.get((int(r["verb_class"]), int(r["noun_class"])))
        col = f"{label}_class"
        seen: dict[int, str] = {}
        for items in rows.values():
            for r in items:
                seen.setdefault(int(r[col]), r[label])
        classes = [seen.get(i, f"{label}_{i}") for i in range(max(seen) + 1)]
        in_train = {int(r[col]) for r in rows["train"]}
        return classes, lambda r: int(r[col]) if int(r[col]) in in_train else None

    @staticmethod
    def _carve_val(segments: list[Segment], train_rows: list[dict], seed: int) -> str:
        """Move whole participants of the train file to val (about 10 % of its segments); in place."""
        participant = {r["narration_id"]: r["participant_id"] for r in train_rows}
        train = [i for i, s in enumerate(segments) if s.split == "train"]
        people = sorted({participant[segments[i].key] for i in train})
        if len(people) < 2:
            # one participant cannot be split disjointly: fall back to a stratified carve
            picks = stratified_split([segments[i].label for i in train], seed, (VAL_FRACTION, 0.0))
            for i, s in zip(train, picks, strict=True):
                if s == "val":
                    segments[i] = _with_split(segments[i], "val")
            return "validation file = test; val = 10 % of train per class (one participant: not disjoint)"
        order = np.random.default_rng(stable_seed("epic-val", seed)).permutation(len(people))
        target, held, chosen = VAL_FRACTION * len(train), 0, set()
        for j in order:
            if held >= target or len(chosen) == len(people) - 1:
                break
            chosen.add(people[j])
            held += sum(participant[segments[i].key] == people[j] for i in train)
        for i in train:
            if participant[segments[i].key] in chosen:
                segments[i] = _with_split(segments[i], "val")
        return f"validation file = test; val = participants {', '.join(sorted(chosen))} of train (seed {seed})"


def _with_split(s: Segment, split: str) -> Segment:
    return Segment(s.key, s.path, s.start_s, s.end_s, s.label, split)


def _name(r: dict, label: str) -> str:
    return f"{r['verb']}_{r['noun']}" if label == "action" else r[label]


DATA_SOURCES.register("epic100")(Epic100())
