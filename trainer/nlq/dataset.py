"""An NLQ dataset in memory: its three splits, the word vocabulary from train, and token ids per tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.nlq.data import NLQSplit, build_vocab, load_split, word_ids

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class NLQDataSpec:
    """Where an NLQ dataset lives and how its tensors are shaped."""

    root: str
    max_pos_len: int = 128
    max_query_len: int = 20
    feature_fps: float = 1.875


@dataclass
class NLQData:
    """The three splits of a dataset, its word vocabulary (from train) and tokenised queries per tokenizer."""

    spec: NLQDataSpec
    splits: dict[str, NLQSplit]
    vocab: list[str]
    _ids: dict = field(default_factory=dict)

    def ids(self, split: str, tokenizer: str) -> np.ndarray:
        """``(N, max_query_len)`` token ids of ``split``'s queries for the ``words`` or ``minilm`` tokenizer."""
        key = (split, tokenizer)
        if key not in self._ids:
            texts = self.splits[split].texts
            if tokenizer == "words":
                self._ids[key] = word_ids(texts, self.vocab, self.spec.max_query_len)
            else:
                from egoedge.trainer.data.text import tokenize

                self._ids[key] = tokenize(texts, tokenizer, self.spec.max_query_len)
        return self._ids[key]

    @cached_property
    def feature_dim(self) -> int:
        return int(self.splits["train"].video.shape[-1])

    def annotation(self, split: str) -> dict:
        return json.loads(Path(self.splits[split].annotation_file).read_text())


def annotation_files(root: str | Path) -> dict[str, Path]:
    """``annotations/nlq_{train,val,test}.json`` under ``root``; a missing test split falls back to val."""
    root = Path(root)
    files = {s: root / "annotations" / f"nlq_{s}.json" for s in SPLITS}
    for s in ("train", "val"):
        if not files[s].is_file():
            raise EgoedgeError(f"NLQ dataset {root} lacks {files[s].relative_to(root)}")
    if not files["test"].is_file():
        files["test"] = files["val"]
    return files


def load_data(spec: NLQDataSpec, vocab: list[str] | None = None, limit: int | None = None) -> NLQData:
    """Load every split of ``spec.root`` (features from ``<root>/features``); the vocabulary comes from train."""
    files = annotation_files(spec.root)
    splits = {s: load_split(files[s], Path(spec.root) / "features", spec.max_pos_len, limit) for s in SPLITS}
    return NLQData(spec, splits, vocab or build_vocab(splits["train"].texts))


def query_ids(data: NLQData, split: str, tokenizer: str, idx: slice | np.ndarray = slice(None)) -> np.ndarray:
    """Token ids as the models take them: int32 word ids (what the exported artifacts read), int64 MiniLM ids."""
    return data.ids(split, tokenizer)[idx].astype(np.int32 if tokenizer == "words" else np.int64)


def model_inputs(data: NLQData, split: str, idx: slice | np.ndarray = slice(None),
                 tokenizer: str = "words") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(video, video_mask, query_ids)`` of some queries of ``split``, as the models take them."""
    s = data.splits[split]
    return s.video[idx], s.video_mask[idx], query_ids(data, split, tokenizer, idx)


def calibration_queries(data: NLQData, count: int, seed: int) -> np.ndarray:
    """``count`` sorted training-query indices, seeded: export and PTQ calibrate on the same queries."""
    return np.sort(np.random.default_rng(seed).choice(len(data.splits["train"]), count, replace=False))
