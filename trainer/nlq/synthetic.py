"""The embedded NLQ dataset: generated clips and queries, written in the official Ego4D formats.

Each clip is a sequence of ``dim``-d feature vectors at ``fps`` (a slow random walk, as scene
features drift) in which a few actions happen: during an action the features carry the sum of
a verb vector and an object vector. Several actions share a verb or an object, so a model must
read both words of the query to find the right one; the answer window is the action's span.
Files: ``annotations/nlq_{train,val,test}.json`` (the official annotation schema, with answers in
every split so all three can be scored) and ``features/<clip_uid>.pt`` (``(T, dim)`` float32).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.common.io import atomic_write, atomic_write_dir, write_json_atomic

VERBS: tuple[str, ...] = ("put", "pick up", "wash", "cut", "open", "close", "hold", "drop")
OBJECTS: tuple[str, ...] = ("knife", "cup", "plate", "phone", "keys", "bottle", "box", "pan", "towel", "bag")
# (Ego4D template name, question); "put" questions use the first template.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Place: Where did I put X?", "where did i put the {obj}?"),
    ("Objects: When did I interact with object X?", "when did i {verb} the {obj}?"),
    ("Objects: Where did I interact with object X?", "where was i when i {verb} the {obj}?"),
)
SPLIT_SEED = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class NLQDataConfig:
    """Size and shape of the generated dataset (``clips`` per split, ``queries`` per clip)."""

    train_clips: int = 240
    val_clips: int = 40
    test_clips: int = 60
    queries: int = 3
    events: int = 4
    dim: int = 64
    fps: float = 1.875  # feature steps per second, as Ego4D's SlowFast/Omnivore/EgoVLP features
    min_seconds: float = 40.0
    max_seconds: float = 150.0
    seed: int = 0

    def clips(self, split: str) -> int:
        return {"train": self.train_clips, "val": self.val_clips, "test": self.test_clips}[split]


def _uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))


def _vocab_vectors(cfg: NLQDataConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10_000 + cfg.seed)
    verbs = rng.normal(size=(len(VERBS), cfg.dim)).astype(np.float32)
    objs = rng.normal(size=(len(OBJECTS), cfg.dim)).astype(np.float32)
    return verbs / np.linalg.norm(verbs, axis=1, keepdims=True), objs / np.linalg.norm(objs, axis=1, keepdims=True)


def _actions(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """``n`` distinct (verb, object) pairs drawn so that most share a verb or an object with another."""
    verbs = rng.choice(len(VERBS), size=2, replace=False)
    objs = rng.choice(len(OBJECTS), size=3, replace=False)
    pairs = [(int(v), int(o)) for v in verbs for o in objs]
    return [pairs[i] for i in rng.permutation(len(pairs))[:n]]


def _clip(rng: np.random.Generator, cfg: NLQDataConfig, verb_vecs: np.ndarray, obj_vecs: np.ndarray):
    """One clip's features and its actions as ``(verb, object, start_sec, end_sec)``."""
    duration = float(np.round(rng.uniform(cfg.min_seconds, cfg.max_seconds), 2))
    steps = int(np.ceil(duration * cfg.fps))
    drift = np.cumsum(rng.normal(0, 0.08, (steps, cfg.dim)), axis=0).astype(np.float32)
    x = drift + rng.normal(0, 0.35, (steps, cfg.dim)).astype(np.float32) + rng.normal(0, 0.5, cfg.dim).astype(
        np.float32)
    actions = []
    # Non-overlapping action spans of 3-15 s, placed in order with gaps.
    n = min(cfg.events, 6)
    lengths = rng.uniform(3.0, 15.0, n)
    lengths *= min(1.0, 0.6 * duration / lengths.sum())  # short clips: the actions still fit, with gaps
    free = duration - lengths.sum() - 2.0
    gaps = rng.dirichlet(np.ones(n + 1)) * max(free, 0.0)
    t = 1.0
    for (v, o), length, gap in zip(_actions(rng, n), lengths, gaps[:-1], strict=True):
        start = t + gap
        end = min(start + length, duration)
        t = end
        first, last = int(np.floor(start * cfg.fps)), int(np.ceil(end * cfg.fps))
        amp = rng.uniform(0.9, 1.4)
        x[first:last] += amp * (verb_vecs[v] + obj_vecs[o])
        actions.append((v, o, round(float(start), 2), round(float(end), 2)))
    return x, duration, actions


def _question(rng: np.random.Generator, verb: int, obj: int) -> tuple[str, str]:
    if VERBS[verb] == "put":
        template, text = TEMPLATES[0]
    else:
        template, text = TEMPLATES[1 + int(rng.integers(0, 2))]
    return template, text.format(verb=VERBS[verb], obj=OBJECTS[obj])


def generate_split(root: Path, split: str, cfg: NLQDataConfig) -> Path:
    """Write one split's annotation JSON and its clips' feature files under ``root``; returns the JSON path."""
    rng = np.random.default_rng([cfg.seed, SPLIT_SEED[split]])
    verb_vecs, obj_vecs = _vocab_vectors(cfg)
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    videos = []
    for _ in range(cfg.clips(split)):
        x, duration, actions = _clip(rng, cfg, verb_vecs, obj_vecs)
        clip_uid, video_uid = _uid(rng), _uid(rng)
        offset = float(np.round(rng.uniform(0, 600), 2))
        atomic_write(features / f"{clip_uid}.pt", lambda p, x=x: torch.save(torch.from_numpy(x), p))
        asked = rng.choice(len(actions), size=min(cfg.queries, len(actions)), replace=False)
        queries = []
        for a in asked:
            v, o, start, end = actions[int(a)]
            template, text = _question(rng, v, o)
            queries.append({"clip_start_sec": start, "clip_end_sec": end,
                            "video_start_sec": round(offset + start, 2), "video_end_sec": round(offset + end, 2),
                            "video_start_frame": int(round((offset + start) * 30)),
                            "video_end_frame": int(round((offset + end) * 30)),
                            "template": template, "query": text, "slot_x": OBJECTS[o], "verb_x": VERBS[v],
                            "slot_y": None, "verb_y": None, "raw_tmpl": template})
        clip = {"clip_uid": clip_uid, "video_start_sec": offset, "video_end_sec": round(offset + duration, 2),
                "video_start_frame": int(round(offset * 30)), "video_end_frame": int(round((offset + duration) * 30)),
                "clip_start_sec": 0.0, "clip_end_sec": duration,
                "clip_start_frame": 0, "clip_end_frame": int(round(duration * 30)), "source_clip_uid": clip_uid,
                "annotations": [{"language_queries": queries, "annotation_uid": _uid(rng)}]}
        videos.append({"video_uid": video_uid, "clips": [clip], "split": split})
    path = root / "annotations" / f"nlq_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"version": "v2", "description": "egoedge generated NLQ dataset (official schema)",
                             "generator": asdict(cfg), "videos": videos})
    return path


def dataset_root(cfg: NLQDataConfig, parent: str | Path | None = None) -> Path:
    """Where the dataset of ``cfg`` lives: under ``parent``, else ``$EGOEDGE_CACHE``, else ``runs/.nlq-data``."""
    key = uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(asdict(cfg), sort_keys=True)).hex[:12]
    base = Path(parent) if parent else Path(os.environ.get("EGOEDGE_CACHE") or "runs/.nlq-data")
    return base / f"nlq-synthetic-{key}"


def generate(cfg: NLQDataConfig = NLQDataConfig(), parent: str | Path | None = None) -> Path:
    """Generate all three splits once (later calls reuse a complete folder); returns the dataset root.

    Example::

        root = generate(NLQDataConfig(train_clips=20, val_clips=5, test_clips=5))
        # root/annotations/nlq_train.json, root/features/<clip_uid>.pt
    """
    root = dataset_root(cfg, parent)
    if (root / "complete").is_file():
        return root

    def write(tmp: Path) -> None:
        for split in SPLIT_SEED:
            generate_split(tmp, split, cfg)
        (tmp / "complete").write_text("ok\n")

    return atomic_write_dir(root, write)
