"""The official Ego4D NLQ evaluation: Recall@K at IoU thresholds and mIoU, plus the submission format.

Follows the challenge's ``evaluate_nlq.py``: a query counts as found at (K, θ) if any of its
first K predicted windows has IoU *strictly greater* than θ with the ground truth; recalls are
averaged over the predicted queries; mIoU is the mean over queries of the IoU of the **top-1**
window (the official code averages the sorted top-3 of a one-element row, i.e. just that IoU).
All figures are in percent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError

THRESHOLDS: tuple[float, ...] = (0.3, 0.5)
TOP_K: tuple[int, ...] = (1, 5)


def compute_iou(pred: np.ndarray, gt: tuple[float, float]) -> np.ndarray:
    """IoU of each predicted ``[s, e]`` row with the ground-truth window (the official formula)."""
    pred = np.asarray(pred, np.float64).reshape(-1, 2)
    inter = np.maximum(0.0, np.minimum(pred[:, 1], gt[1]) - np.maximum(pred[:, 0], gt[0]))
    union = np.maximum(0.0, np.maximum(pred[:, 1], gt[1]) - np.minimum(pred[:, 0], gt[0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def ground_truth_index(annotation: dict) -> dict[tuple[str, str], dict]:
    """``(clip_uid, annotation_uid) -> annotation`` of an official annotation dict."""
    return {(clip["clip_uid"], ann["annotation_uid"]): ann
            for video in annotation["videos"] for clip in video["clips"] for ann in clip.get("annotations", [])}


def evaluate(predictions: list[dict], annotation: dict, thresholds: tuple[float, ...] = THRESHOLDS,
             top_k: tuple[int, ...] = TOP_K) -> dict:
    """``{"recall": {"K": {"θ": pct}}, "mIoU": pct, "evaluated": n, "queries": total}`` of submission results."""
    gt = ground_truth_index(annotation)
    total = sum(len(a["language_queries"]) for a in gt.values())
    hits = np.zeros((len(thresholds), len(top_k), len(predictions)), bool)
    top1_iou = np.zeros(len(predictions))
    for i, p in enumerate(predictions):
        key = (p["clip_uid"], p["annotation_uid"])
        if key not in gt:
            raise EgoedgeError(f"prediction for clip {key[0]} annotation {key[1]} has no ground truth")
        queries = gt[key]["language_queries"]
        if not 0 <= p["query_idx"] < len(queries):
            raise EgoedgeError(f"prediction query_idx {p['query_idx']} out of range for annotation {key[1]}")
        q = queries[p["query_idx"]]
        if not p["predicted_times"]:
            raise EgoedgeError(f"prediction for annotation {key[1]} query {p['query_idx']} has no windows")
        iou = compute_iou(np.asarray(p["predicted_times"]), (q["clip_start_sec"], q["clip_end_sec"]))
        for a, th in enumerate(thresholds):
            for b, k in enumerate(top_k):
                hits[a, b, i] = bool((iou[:k] > th).any())
        top1_iou[i] = iou[0]
    if not predictions:
        raise EgoedgeError("no predictions to evaluate")
    recall = {str(k): {str(th): float(100.0 * hits[a, b].mean()) for a, th in enumerate(thresholds)}
              for b, k in enumerate(top_k)}
    return {"recall": recall, "mIoU": float(100.0 * top1_iou.mean()), "evaluated": len(predictions),
            "queries": total}


def submission(results: list[dict]) -> dict:
    """The official submission dict around per-query results."""
    return {"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": results}


def read_submission(path: str | Path) -> list[dict]:
    """The ``results`` of a submission file, checked for the official fields."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise EgoedgeError(f"cannot read predictions {path}: {e}") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise EgoedgeError(f"{path} is not an Ego4D NLQ submission (no 'results' list)")
    for r in results:
        missing = [k for k in ("clip_uid", "annotation_uid", "query_idx", "predicted_times") if k not in r]
        if missing:
            raise EgoedgeError(f"{path}: a result lacks {', '.join(missing)}")
    return results


def metrics_file(metrics: dict, ground_truth: str, **extra) -> dict:
    """The ``nlq_metrics.json`` contract: ground truth path, recall, mIoU (and counts, plus ``extra``)."""
    return {"ground_truth": ground_truth, "recall": metrics["recall"], "mIoU": metrics["mIoU"],
            "evaluated": metrics["evaluated"], "queries": metrics["queries"], **extra}


def accuracy_block(row: dict[str, float]) -> dict[str, float]:
    """A ``metrics_row`` as the manifest/report ``accuracy`` block: Recall@1 and @5 at IoU 0.3 as top1/top5."""
    return {"top1": row["R1@0.3"], "top5": row["R5@0.3"]}


def metrics_row(metrics: dict) -> dict[str, float]:
    """Flat ``{"R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "mIoU"}`` for tables."""
    row = {f"R{k}@{th}": v for k, by_th in metrics["recall"].items() for th, v in by_th.items()}
    return {**dict(sorted(row.items())), "mIoU": metrics["mIoU"]}
