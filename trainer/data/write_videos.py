"""The generated clips written out as video files, in each layout a video source reads.

This is how the toolkit's own data becomes "your videos": a folder of mp4/webm clips with a
``labels.csv`` (the generated train/val/test split kept, so a folder run compares with the
in-memory one), class folders, or EPIC-KITCHENS-100's annotation CSVs with long videos per
participant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError, write_csv_atomic
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.clips import DataConfig
from egoedge.trainer.data.encode import write_video
from egoedge.trainer.data.sources.synthetic import Synthetic
from egoedge.trainer.data.vocab import LABELS, NOUNS, VERBS

LAYOUTS = ("csv", "classes", "epic100")


def _fps(cfg: DataConfig) -> float:
    return float(cfg.frames)  # every clip spans 1 s, so a segment's seconds map to its frames the same way


def write_clip_folder(cfg: DataConfig, out: str | Path, layout: str = "csv", suffix: str = ".mp4",
                      progress: Progress = no_progress, chroma: str = "420") -> Path:
    """Write the generated splits of ``cfg`` under ``out`` in ``layout``; returns the ``--data`` argument's folder.

    Example::

        write_clip_folder(DataConfig(train=64, val=16, test=16), "clips/", "csv")  # clips/labels.csv + mp4s
    """
    if layout not in LAYOUTS:
        raise EgoedgeError(f"unknown layout '{layout}'; valid: {', '.join(LAYOUTS)}")
    out = Path(out)
    source = Synthetic()
    splits = {s: source.load_split("", cfg, s) for s in ("train", "val", "test")}
    total, done = sum(len(s) for s in splits.values()), 0
    if layout == "epic100":
        return _write_epic(cfg, out, splits, progress, chroma)
    rows = []
    for name, split in splits.items():
        for i in range(len(split)):
            label = LABELS[int(split.labels[i])]
            rel = f"{label}/{name}_{i:05d}{suffix}"
            write_video(out / rel, split.clips[i], fps=_fps(cfg), chroma=chroma)
            rows.append([rel, label, name])
            done += 1
            progress("write videos", done, total, {})
    if layout == "csv":
        write_csv_atomic(out / "labels.csv", [["path", "label", "split"], *rows])
    return out


EPIC_HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
               "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class",
               "all_nouns", "all_noun_classes"]


def epic_timestamp(seconds: float) -> str:
    """Seconds -> EPIC's ``HH:MM:SS.ff``."""
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:05.2f}"


def _write_epic(cfg: DataConfig, out: Path, splits: dict, progress: Progress, chroma: str) -> Path:
    """Participants P01.. with one long video each of back-to-back clips; train+val -> train file, test -> validation.

    Each clip lasts 1 s, and the segment annotated is that second; every video opens with a 2 s
    unlabelled lead-in, so even its first segment has time before it to anticipate from.
    """
    per_video = 8
    files = {"train": [EPIC_HEADER], "test": [EPIC_HEADER]}
    groups = [("train", np.concatenate([splits["train"].clips, splits["val"].clips]),
               np.concatenate([splits["train"].labels, splits["val"].labels])),
              ("test", splits["test"].clips, splits["test"].labels)]
    fps, p, total, done = _fps(cfg), 0, sum(len(g[1]) for g in groups), 0
    for file, clips, labels in groups:
        for start in range(0, len(clips), per_video):
            p += 1
            person, video = f"P{p:02d}", f"P{p:02d}_01"
            chunk, ys = clips[start:start + per_video], labels[start:start + per_video]
            lead = np.zeros((2 * cfg.frames, *chunk.shape[2:]), np.uint8)
            write_video(out / person / "videos" / f"{video}.MP4", np.concatenate([lead, *chunk]), fps=fps,
                        chroma=chroma)
            for j, y in enumerate(ys):
                verb, noun = LABELS[int(y)].split("_")
                t0, t1 = 2.0 + j, 3.0 + j
                files[file].append([f"{video}_{j}", person, video, epic_timestamp(t0), epic_timestamp(t0),
                                    epic_timestamp(t1), int(t0 * fps), int(t1 * fps) - 1, f"{verb} {noun}", verb,
                                    VERBS.index(verb), noun, NOUNS.index(noun), f"['{noun}']",
                                    f"[{NOUNS.index(noun)}]"])
            done += len(chunk)
            progress("write videos", done, total, {})
    write_csv_atomic(out / "EPIC_100_train.csv", files["train"])
    write_csv_atomic(out / "EPIC_100_validation.csv", files["test"])
    return out
