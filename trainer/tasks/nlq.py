"""Ego4D natural-language queries: a clip's features and a query in, start/end logits over time out.

The artifacts take ``video`` ``(1, max_pos_len, D)`` float32 features, ``video_mask``
``(1, max_pos_len)`` float32 and ``query_ids`` ``(1, max_query_len)`` int32 word ids, and return
unmasked ``start_logits`` and ``end_logits`` ``(1, max_pos_len)``. Tokenising the query (``words``
over the checkpoint's ``vocab``), resampling the features and decoding the top windows
(:func:`trainer.nlq.train.top_windows`) happen outside the artifact, in Python or the app.
Parity: fp32 by max |logit diff| over valid steps; reduced precisions by agreement of the top-1
window with PyTorch's and by the drop of Recall@1 at IoU 0.3 on the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.tasks.base import Arrays, Evaluation, GateDefaults, Task
from egoedge.trainer.tasks.registry import TASKS


def span_parity(reference: Arrays, candidate: Arrays, mask: np.ndarray) -> dict:
    """``max_abs`` logit difference over valid steps and % of queries whose top-1 window is the reference's."""
    from egoedge.trainer.nlq.windows import top1_window_agreement

    valid = mask > 0
    diff = max(float(np.abs(r - c)[valid].max()) for r, c in zip(reference, candidate, strict=True))
    return {"max_abs": diff, "top1_agreement": top1_window_agreement(reference, candidate, mask)}


class NLQEvaluation(Evaluation):
    """The NLQ dataset a checkpoint was trained on, with its vocabulary."""

    inputs = ("video", "video_mask", "query_ids")
    outputs = ("start_logits", "end_logits")

    def __init__(self, ckpt: dict) -> None:
        from egoedge.trainer.nlq.dataset import NLQDataSpec, load_data

        self.data = load_data(NLQDataSpec(**ckpt["config"]["data"]), vocab=ckpt["preprocess"]["vocab"])
        self.source = self.data.spec.root

    def parity_inputs(self, count: int) -> Arrays:
        if count > len(self.data.splits["val"]):
            raise EgoedgeError(f"parity batch of {count} exceeds the {len(self.data.splits['val'])} val queries")
        from egoedge.trainer.nlq.dataset import model_inputs

        return model_inputs(self.data, "val", slice(0, count))

    def test_inputs(self, variant=None) -> Arrays:
        from egoedge.trainer.nlq.dataset import model_inputs

        return model_inputs(self.data, "test", slice(None), variant or "words")

    def calibration(self, count: int, seed: int) -> Arrays:
        from egoedge.trainer.nlq.dataset import calibration_queries, model_inputs

        n = min(count, len(self.data.splits["train"]))
        return model_inputs(self.data, "train", calibration_queries(self.data, n, seed))

    def score(self, outputs: Arrays) -> dict:
        from egoedge.trainer.nlq.metrics import accuracy_block, metrics_row
        from egoedge.trainer.nlq.windows import evaluate_logits

        row = metrics_row(evaluate_logits(self.data, "test", *outputs)[1])
        return {"accuracy": accuracy_block(row), "metrics": row}

    def parity(self, reference: Arrays, candidate: Arrays, inputs: Arrays) -> dict:
        return span_parity(reference, candidate, inputs[1])

    def sample(self) -> dict:
        return {"label": self.data.splits["val"].queries[0].query}


class NLQTask(Task):
    """Span prediction scored with the official Recall@K at IoU and mIoU (``top1`` is R1@0.3)."""

    def evaluation(self, ckpt: dict) -> NLQEvaluation:
        if ckpt["preprocess"].get("tokenizer") != "words":
            raise EgoedgeError(f"this checkpoint reads queries with {ckpt['preprocess'].get('tokenizer')}; only "
                               "word-embedding models (lightvslnet, vslnet, vslbase) export whole; train the "
                               "student with --text words")
        return NLQEvaluation(ckpt)

    def ptq_job(self, path: Path, cfg, ckpt: dict):
        from egoedge.trainer.nlq.compress import nlq_job

        return nlq_job(path, cfg, ckpt)

    def input_variant(self, ckpt: dict) -> str:
        return ckpt["preprocess"].get("tokenizer") or "words"


TASKS.register("nlq")(NLQTask(
    "nlq", flow="nlq", unit="query", units="queries", agreement_column="top-1 window = fp32 %",
    metric_column="R1@0.3 %",
    ptq_columns=("R1@0.3", "R1@0.5", "R5@0.3", "mIoU"),
    # Span logits pass through more layers than a classifier's; a window's argmax is what users see.
    gate=GateDefaults(fp32_max_abs=1e-3, int8_min_agreement=80.0, int8_max_accuracy_drop=2.0),
    app=False, report_field="nlq",
    report_note=("Latency is per query at batch 1 (a full-length clip and query); R1@0.3 is the official Recall@1 at "
                 "IoU 0.3 on the test split (report.json has every figure per row under `nlq`); agreement is the "
                 "share of queries whose top-1 window equals the fp32 PyTorch student's.")))
