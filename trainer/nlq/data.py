"""Official Ego4D NLQ annotations + one feature file per clip -> padded tensors for the VSLNet family.

The annotation JSON is ``{"videos": [{"video_uid", "clips": [{"clip_uid", "clip_start_sec",
"clip_end_sec", "annotations": [{"annotation_uid", "language_queries": [{"clip_start_sec",
"clip_end_sec", "query", "template", ...}]}]}]}]}``; features are ``<features>/<clip_uid>.pt``,
a ``(T, D)`` float tensor at a fixed rate. As in the VSLNet Ego4D baseline, a clip longer than
``max_pos_len`` feature steps is resampled to that many by averaging uniform spans, and the
answer window becomes the pair of feature indices whose span best overlaps it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.common.io import EgoedgeError, first_line

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


@dataclass(frozen=True)
class Query:
    """One language query and its ground-truth answer window in clip seconds."""

    clip_uid: str
    annotation_uid: str
    query_idx: int
    query: str
    template: str | None
    start: float
    end: float
    duration: float


def read_annotations(path: str | Path) -> tuple[list[Query], int]:
    """Every answerable query of an official NLQ annotation file, and how many were skipped.

    Queries without text or with an empty window are skipped, as the official baseline does.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EgoedgeError(f"NLQ annotation file not found: {path}") from None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise EgoedgeError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise EgoedgeError(f"{path} is not an Ego4D NLQ annotation file (no 'videos' list)")
    queries, skipped = [], 0
    try:
        for video in data["videos"]:
            for clip in video["clips"]:
                duration = float(clip["clip_end_sec"]) - float(clip["clip_start_sec"])
                for ann in clip.get("annotations", []):
                    for i, q in enumerate(ann["language_queries"]):
                        text = q.get("query")
                        start, end = q.get("clip_start_sec"), q.get("clip_end_sec")
                        if not text or start is None or end is None or float(end) <= float(start):
                            skipped += 1
                            continue
                        queries.append(Query(clip["clip_uid"], ann["annotation_uid"], i, str(text),
                                             q.get("template"), float(start), float(end), duration))
    except (KeyError, TypeError, ValueError) as e:
        raise EgoedgeError(f"{path}: malformed NLQ annotation ({type(e).__name__}: {e})") from None
    if not queries:
        raise EgoedgeError(f"{path} holds no answerable language queries")
    return queries, skipped


def load_features(folder: str | Path, clip_uid: str, dim: int | None = None) -> np.ndarray:
    """The ``(T, D)`` float32 features of one clip from ``<folder>/<clip_uid>.pt``."""
    path = Path(folder) / f"{clip_uid}.pt"
    if not path.is_file():
        raise EgoedgeError(f"missing features for clip {clip_uid}: {path}")
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (torch raises many types for a damaged file)
        raise EgoedgeError(f"{path} is not a readable feature tensor: {first_line(e)[:200]}") from None
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] < 1:
        raise EgoedgeError(f"{path} must hold a (T, D) tensor, got "
                           f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if dim is not None and x.shape[1] != dim:
        raise EgoedgeError(f"{path} has {x.shape[1]}-d features; the model takes {dim}-d")
    x = x.float().numpy()
    if not np.isfinite(x).all():
        raise EgoedgeError(f"{path} holds NaN or infinite values")
    return x


def sample_features(x: np.ndarray, max_len: int) -> np.ndarray:
    """Resample ``(T, D)`` to at most ``max_len`` steps: the mean of each of ``max_len`` uniform spans."""
    t = len(x)
    if t <= max_len:
        return x
    edges = np.minimum(np.round(np.arange(max_len + 1) / max_len * t).astype(np.int64), t - 1)
    out = np.empty((max_len, x.shape[1]), x.dtype)
    for i in range(max_len):
        s, e = edges[i], edges[i + 1]
        out[i] = x[s:e].mean(0) if s < e else x[s]
    return out


def window_iou(windows: np.ndarray, target: tuple[float, float]) -> np.ndarray:
    """IoU of each ``[s, e]`` row of ``windows`` with one ``target`` window (0 where they do not meet)."""
    inter = np.clip(np.minimum(windows[:, 1], target[1]) - np.maximum(windows[:, 0], target[0]), 0.0, None)
    union = np.maximum(windows[:, 1], target[1]) - np.minimum(windows[:, 0], target[0])
    return inter / np.maximum(union, 1e-12)


def unit_times(num_units: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end second of each of ``num_units`` equal feature steps spanning ``duration``."""
    edges = np.arange(num_units + 1, dtype=np.float64) / num_units * duration
    return edges[:-1], edges[1:]


def time_to_index(start: float, end: float, num_units: int, duration: float) -> tuple[int, int]:
    """The ``(start, end)`` feature indices whose span overlaps ``[start, end]`` seconds best."""
    s_times, e_times = unit_times(num_units, duration)
    s_idx, e_idx = np.meshgrid(np.arange(num_units), np.arange(num_units), indexing="ij")
    windows = np.stack([s_times[s_idx.ravel()], e_times[e_idx.ravel()]], 1)
    iou = window_iou(windows, (start, end))
    iou[s_idx.ravel() > e_idx.ravel()] = -1.0
    best = int(np.argmax(iou))
    return best // num_units, best % num_units


def index_to_time(start: int, end: int, num_units: int, duration: float) -> tuple[float, float]:
    """Seconds of the window from the start of feature step ``start`` to the end of step ``end``."""
    s_times, e_times = unit_times(num_units, duration)
    return float(s_times[start]), float(e_times[end])


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of a query."""
    return _TOKEN.findall(text.lower())


def build_vocab(texts: list[str], min_count: int = 1) -> list[str]:
    """``<pad>``, ``<unk>``, then the words of ``texts`` by falling frequency (ties alphabetical)."""
    counts = Counter(w for t in texts for w in words(t))
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [PAD, UNK, *ranked]


def word_ids(texts: list[str], vocab: list[str], max_len: int) -> np.ndarray:
    """``(N, max_len)`` int64 ids, right-padded with 0; unknown words map to ``<unk>``, long queries are cut."""
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), max_len), np.int64)
    for r, text in enumerate(texts):
        ids = [index.get(w, 1) for w in words(text)][:max_len]
        out[r, :len(ids)] = ids
    return out


def load_glove(path: str | Path, vocab: list[str], dim: int) -> tuple[np.ndarray, int]:
    """Rows of a GloVe text file (``word v1 ... vD`` per line) for ``vocab``; returns ``(table, found)``.

    Words the file lacks keep a small random vector; ``<pad>`` stays zero.
    """
    path = Path(path)
    if not path.is_file():
        raise EgoedgeError(f"GloVe file not found: {path}")
    rng = np.random.default_rng(0)
    table = rng.normal(0.0, 0.1, (len(vocab), dim)).astype(np.float32)
    table[0] = 0.0
    index = {w: i for i, w in enumerate(vocab)}
    found = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if parts[0] not in index:
                continue
            if len(parts) != dim + 1:
                raise EgoedgeError(f"{path}:{n} has {len(parts) - 1} values; expected {dim}-d vectors")
            table[index[parts[0]]] = np.asarray(parts[1:], np.float32)
            found += 1
    return table, found


@dataclass
class NLQSplit:
    """One split as padded arrays: features, masks, answer indices and the queries they came from."""

    queries: list[Query]
    video: np.ndarray  # (N, max_pos_len, D) float32, zero-padded
    video_mask: np.ndarray  # (N, max_pos_len) float32, 1 on real steps
    num_units: np.ndarray  # (N,) real steps after sampling
    start_idx: np.ndarray  # (N,) int64
    end_idx: np.ndarray  # (N,) int64
    annotation_file: str

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def texts(self) -> list[str]:
        return [q.query for q in self.queries]


def load_split(annotation_file: str | Path, feature_dir: str | Path, max_pos_len: int,
               limit: int | None = None) -> NLQSplit:
    """Read one split: the queries of ``annotation_file`` with their clips' features, resampled and padded."""
    if max_pos_len < 2:
        raise EgoedgeError(f"max_pos_len must be >= 2, got {max_pos_len}")
    queries, _ = read_annotations(annotation_file)
    queries = queries[:limit] if limit else queries
    cache: dict[str, np.ndarray] = {}
    dim = None
    for q in queries:
        if q.clip_uid not in cache:
            x = load_features(feature_dir, q.clip_uid, dim)
            dim = x.shape[1]
            cache[q.clip_uid] = sample_features(x, max_pos_len)
    n = len(queries)
    video = np.zeros((n, max_pos_len, dim), np.float32)
    mask = np.zeros((n, max_pos_len), np.float32)
    units = np.zeros(n, np.int64)
    starts, ends = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i, q in enumerate(queries):
        x = cache[q.clip_uid]
        video[i, :len(x)], mask[i, :len(x)], units[i] = x, 1.0, len(x)
        starts[i], ends[i] = time_to_index(q.start, q.end, len(x), q.duration)
    return NLQSplit(queries, video, mask, units, starts, ends, str(annotation_file))
