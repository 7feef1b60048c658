"""Train, distil, decode and evaluate the VSLNet family on an NLQ dataset.

The objective is VSLNet's: cross-entropy on the start and on the end index (over valid steps),
plus ``highlight_weight`` × a weighted binary cross-entropy of the highlight scores against the
answer window widened by ``extend`` of its length on each side. Distillation adds
``T²·KL`` between the teacher's and the student's start (and end) distributions at
temperature ``T``. Decoding takes the ``top_k`` (start ≤ end) pairs of the outer product of
the two distributions, as the Ego4D VSLNet baseline does, and converts them to seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainer.checkpoint import load_model, read_checkpoint, save_checkpoint
from trainer.common.complexity import count_macs, count_params
from trainer.common.io import EgoedgeError
from trainer.common.progress import Progress, no_progress
from trainer.distill import ResponseKL
from trainer.engine import TrainConfig, device, fit
from trainer.models.vslnet import VSLNet, build_nlq_model, config_dict, mask_logits
from trainer.nlq import metrics as nlq_metrics
from trainer.nlq.data import NLQSplit, build_vocab, index_to_time, load_split, word_ids

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SpanLoss:
    """Weights of VSLNet's objective and of the distillation term."""

    highlight_weight: float = 5.0
    extend: float = 0.1
    kd_weight: float = 1.0  # weight of the KL term when a teacher is given
    task_weight: float = 1.0  # weight of the supervised span loss when a teacher is given
    temperature: float = 4.0


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
                from trainer.data.text import tokenize

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


def calibration_queries(data: NLQData, count: int, seed: int) -> np.ndarray:
    """``count`` sorted training-query indices, seeded: export and PTQ calibrate on the same queries."""
    return np.sort(np.random.default_rng(seed).choice(len(data.splits["train"]), count, replace=False))


def highlight_labels(split: NLQSplit, idx: np.ndarray, extend: float) -> np.ndarray:
    """1 on the answer window widened by ``extend`` of its length each side, 0 elsewhere."""
    t = split.video.shape[1]
    s, e = split.start_idx[idx], split.end_idx[idx]
    ext = np.round(extend * (e - s + 1)).astype(np.int64)
    lo, hi = np.maximum(0, s - ext), np.minimum(split.num_units[idx] - 1, e + ext)
    steps = np.arange(t)[None, :]
    return ((steps >= lo[:, None]) & (steps <= hi[:, None])).astype(np.float32)


def span_loss(out: dict, batch: dict, loss: SpanLoss) -> dict[str, torch.Tensor]:
    """VSLNet's supervised objective: start/end cross-entropy + weighted highlight BCE."""
    mask = batch["video_mask"]
    ce = (F.cross_entropy(mask_logits(out["start"], mask), batch["start"])
          + F.cross_entropy(mask_logits(out["end"], mask), batch["end"]))
    terms = {"span": ce}
    if out.get("highlight") is not None:
        labels = batch["highlight"]
        weights = torch.where(labels > 0, 2.0, 1.0) * mask
        bce = F.binary_cross_entropy_with_logits(out["highlight"], labels, weight=weights, reduction="sum")
        terms["highlight"] = bce / mask.sum()
        ce = ce + loss.highlight_weight * terms["highlight"]
    return {"loss": ce, **terms}


def kd_loss(student: dict, teacher: dict, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL`` of the teacher's start and end distributions to the student's, over valid steps."""
    kl = ResponseKL(temperature)
    return sum(kl({"student_logits": mask_logits(student[k], mask), "teacher_logits": mask_logits(teacher[k], mask)})
               for k in ("start", "end"))


def batch_of(data: NLQData, split: str, idx: np.ndarray, tokenizer: str, extend: float,
             dev: torch.device) -> dict[str, torch.Tensor]:
    """Tensors of the queries ``idx`` of ``split`` on ``dev``."""
    s = data.splits[split]
    out = {"video": torch.from_numpy(s.video[idx]), "video_mask": torch.from_numpy(s.video_mask[idx]),
           "ids": torch.from_numpy(data.ids(split, tokenizer)[idx]),
           "start": torch.from_numpy(s.start_idx[idx]), "end": torch.from_numpy(s.end_idx[idx]),
           "highlight": torch.from_numpy(highlight_labels(s, idx, extend))}
    return {k: v.to(dev) for k, v in out.items()}


def train_nlq(model: VSLNet, data: NLQData, cfg: TrainConfig, loss: SpanLoss = SpanLoss(),
              teacher: VSLNet | None = None, progress: Progress = no_progress, stage: str = "nlq",
              resume: Path | None = None, log=None) -> list[dict]:
    """Train ``model`` on the train split (distilling ``teacher`` when given); returns the epoch history."""
    dev = device()
    model.to(dev)
    n = len(data.splits["train"])
    params = model.param_groups()  # a fine-tuned MiniLM learns at a fraction of the rate (else it forgets)
    # The teacher is fixed and deterministic in eval mode: its logits are computed once, not every step.
    taught = None
    if teacher is not None:
        teacher.to(dev).eval()
        taught = [torch.from_numpy(a) for a in logits_of(teacher, data, "train", teacher.tokenizer)]

    def step(idx: np.ndarray) -> dict[str, torch.Tensor]:
        b = batch_of(data, "train", idx, model.tokenizer, loss.extend, dev)
        out = model.forward_all(b["video"], b["video_mask"], b["ids"])
        terms = span_loss(out, b, loss)
        if taught is None:
            return terms
        t_out = {"start": taught[0][idx].to(dev), "end": taught[1][idx].to(dev)}
        terms["kd"] = kd_loss(out, t_out, b["video_mask"], loss.temperature)
        terms["loss"] = loss.task_weight * terms["loss"] + loss.kd_weight * terms["kd"]
        return terms

    return fit(model, params, n, cfg, step, stage, progress, resume, log)


@torch.no_grad()
def logits_of(model: VSLNet, data: NLQData, split: str, tokenizer: str,
              batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits ``(N, T)`` of every query of ``split``, in eval mode on the model's device."""
    s = data.splits[split]
    dev = next(model.parameters()).device
    ids = data.ids(split, tokenizer)
    starts, ends = [], []
    model.eval()
    for i in range(0, len(s), batch_size):
        sl = slice(i, i + batch_size)
        st, en = model(torch.from_numpy(s.video[sl]).to(dev), torch.from_numpy(s.video_mask[sl]).to(dev),
                       torch.from_numpy(ids[sl]).to(dev))
        starts.append(st.float().cpu().numpy())
        ends.append(en.float().cpu().numpy())
    return np.concatenate(starts), np.concatenate(ends)


def top_windows(start: np.ndarray, end: np.ndarray, mask: np.ndarray, top_k: int = 5) -> np.ndarray:
    """``(N, top_k, 2)`` index pairs ``start <= end`` with the highest ``p_start · p_end``, best first."""
    st = torch.softmax(mask_logits(torch.from_numpy(start).double(), torch.from_numpy(mask).double()), -1)
    en = torch.softmax(mask_logits(torch.from_numpy(end).double(), torch.from_numpy(mask).double()), -1)
    outer = torch.triu(st.unsqueeze(2) * en.unsqueeze(1))
    t = start.shape[1]
    k = min(top_k, int(mask.sum(1).min() * (mask.sum(1).min() + 1) // 2))
    best = outer.flatten(1).topk(k, dim=1).indices.numpy()
    return np.stack([best // t, best % t], -1)


def top1_window_agreement(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray],
                          mask: np.ndarray) -> float:
    """% of queries whose best window from ``got``'s start/end logits is the one from ``ref``'s."""
    return float(100.0 * (top_windows(*ref, mask, 1) == top_windows(*got, mask, 1)).all(-1).mean())


def predictions(split: NLQSplit, start: np.ndarray, end: np.ndarray, top_k: int = 5) -> list[dict]:
    """Per-query results in the official submission form (``predicted_times`` in clip seconds)."""
    windows = top_windows(start, end, split.video_mask, top_k)
    results = []
    for q, w, units in zip(split.queries, windows, split.num_units, strict=True):
        times = [list(index_to_time(int(s), int(e), int(units), q.duration)) for s, e in w]
        results.append({"clip_uid": q.clip_uid, "annotation_uid": q.annotation_uid, "query_idx": q.query_idx,
                        "predicted_times": [[round(a, 3), round(b, 3)] for a, b in times]})
    return results


def evaluate_logits(data: NLQData, split: str, start: np.ndarray, end: np.ndarray) -> tuple[list[dict], dict]:
    """Predictions and official metrics of given logits on ``split``."""
    preds = predictions(data.splits[split], start, end)
    return preds, nlq_metrics.evaluate(preds, data.annotation(split))


def evaluate_model(model: VSLNet, data: NLQData, split: str = "test",
                   tokenizer: str | None = None) -> tuple[list[dict], dict]:
    """Predictions and official metrics of ``model`` on ``split``."""
    start, end = logits_of(model, data, split, tokenizer or model.tokenizer)
    return evaluate_logits(data, split, start, end)


def complexity(model: VSLNet) -> dict:
    """Parameters and multiply-accumulates of one full-length query."""
    example = tuple(t.to(next(model.parameters()).device) for t in model.example_inputs())
    return {"params": count_params(model), "macs": count_macs(model, example)}


def save_nlq_checkpoint(path: str | Path, arch: str, model: VSLNet, data: NLQData, metrics: dict,
                        extra_config: dict | None = None) -> Path:
    """Checkpoint in the shared contract; ``preprocess`` holds what an app needs to build the inputs."""
    preprocess = {"task": "nlq", "tokenizer": model.tokenizer, "vocab": data.vocab if model.tokenizer == "words"
                  else None, "max_pos_len": data.spec.max_pos_len, "max_query_len": data.spec.max_query_len,
                  "feature_dim": data.feature_dim, "feature_fps": data.spec.feature_fps}
    config = {"task": "nlq", "data": asdict(data.spec), **(extra_config or {})}
    return save_checkpoint(path, arch=arch, model_kwargs=config_dict(model), model=model, metrics=metrics,
                           label_names=[], preprocess=preprocess, config=config)


def load_nlq_model(path: str | Path, ckpt: dict | None = None) -> tuple[VSLNet, dict]:
    """Rebuild an NLQ checkpoint's model in eval mode; returns ``(model, checkpoint)`` (``ckpt``: already read)."""
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    if ckpt["config"].get("task") != "nlq":
        raise EgoedgeError(f"{path} is not an NLQ checkpoint; train one with `egoedge nlq train`")
    return load_model(path, build_nlq_model, ckpt)


def build_for(arch: str, data: NLQData, **overrides) -> VSLNet:
    """An NLQ model sized for ``data`` (feature width, vocabulary, lengths)."""
    try:
        return build_nlq_model(arch, feature_dim=data.feature_dim, vocab_size=len(data.vocab),
                               max_pos_len=data.spec.max_pos_len, max_query_len=data.spec.max_query_len,
                               **overrides)
    except KeyError as e:
        raise EgoedgeError(e.args[0]) from None
    except ValueError as e:
        raise EgoedgeError(str(e)) from None
