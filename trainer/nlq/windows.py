"""From start/end logits to answer windows in seconds, and their official metrics.

Decoding takes the ``top_k`` (start ≤ end) pairs of the outer product of the two distributions,
as the Ego4D VSLNet baseline does, and converts them to seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from egoedge.trainer.models.vslnet import mask_logits
from egoedge.trainer.nlq import metrics as nlq_metrics
from egoedge.trainer.nlq.data import NLQSplit, index_to_time
from egoedge.trainer.nlq.dataset import NLQData


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
