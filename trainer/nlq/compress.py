"""CBKD and PTQ int8 for the NLQ span models: the task adapters the shared compressors call.

- CBKD (:mod:`trainer.prune.cbkd`): the blocks are the query encoder's and the video encoder's
  blocks and the start/end heads of the predictor. Inside them only the feed-forward and head
  hidden widths are prunable: every other channel is the residual stream that the neighbouring
  blocks (and the teacher block each one is distilled from) share. Recovery matches the
  uncompressed block's output; the fine-tune distils the start/end distributions (``T²·KL``)
  plus the span objective.
- PTQ (:mod:`trainer.quantize.ptq`): calibration on training queries, fallback driven by the
  top-1 window's agreement with fp32 and the logit error over valid steps, scored with the
  official Recall@K / mIoU on the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.calibration import MIN_CALIBRATION, as_samples
from egoedge.trainer.engine import device
from egoedge.trainer.nlq import metrics as nlq_metrics
from egoedge.trainer.nlq.dataset import NLQData, NLQDataSpec, calibration_queries, load_data, model_inputs
from egoedge.trainer.nlq.loss import SpanLoss
from egoedge.trainer.nlq.train import batch_of, evaluate_model, load_nlq_model, save_nlq_checkpoint, train_nlq
from egoedge.trainer.nlq.windows import evaluate_logits, top1_window_agreement
from egoedge.trainer.prune.cbkd import CBKDConfig, run_cbkd
from egoedge.trainer.quantize.ptq import OutputMatch, PTQConfig, PTQJob


@dataclass
class NLQCBKDTask:
    """The :class:`~trainer.prune.cbkd.CBKDTask` of a VSLNet-family model on ``data``."""

    data: NLQData
    loss: SpanLoss = SpanLoss()
    scope: str = ""  # blocks are named from the model's root
    metric: str = "R1@0.3"

    def default_blocks(self, model: nn.Module) -> list[str]:
        encoders = [e for e in ("query_encoder", "encoder") if getattr(model, e) is not None]
        blocks = [f"{e}.blocks.{i}" for e in encoders for i in range(len(getattr(model, e).blocks))]
        return [*blocks, "predictor.start_head", "predictor.end_head"]

    def trace_inputs(self, model: nn.Module) -> tuple[torch.Tensor, ...]:
        return model.example_inputs(2)

    def train_size(self) -> int:
        return len(self.data.splits["train"])

    def forward_train(self, net: nn.Module, idx: np.ndarray) -> None:
        tokenizer = getattr(net, "module", net).tokenizer  # net may be DDP-wrapped
        b = batch_of(self.data, "train", idx, tokenizer, self.loss.extend, device())
        net(b["video"], b["video_mask"], b["ids"])

    def evaluate(self, model: nn.Module) -> dict:
        return nlq_metrics.metrics_row(evaluate_model(model, self.data, "val")[1])

    def finetune(self, student, teacher, cfg: CBKDConfig, progress, resume, log) -> list[dict]:
        loss = replace(self.loss, temperature=cfg.temperature, kd_weight=1.0, task_weight=cfg.gamma)
        return train_nlq(student, self.data, cfg.finetune, loss, teacher, progress, "cbkd finetune", resume, log)


def cbkd_nlq_checkpoint(source: str | Path, out: str | Path, cfg: CBKDConfig, progress: Progress = no_progress,
                        log: Callable[[dict], None] | None = None) -> tuple[Path, dict]:
    """CBKD-compress a trained NLQ checkpoint (its own teacher) into ``out``; stages go beside it.

    Example::

        path, summary = cbkd_nlq_checkpoint("runs/nlq/nlq_student.pt", "runs/nlq/nlq_student_cbkd.pt",
                                            CBKDConfig(min_ratio=0.5, max_ratio=0.75))
    """
    source, out = Path(source), Path(out)
    teacher, ckpt = load_nlq_model(source)
    data = load_data(NLQDataSpec(**ckpt["config"]["data"]), vocab=ckpt["preprocess"]["vocab"])
    loss = SpanLoss(**ckpt["config"].get("loss", {}))
    arch = ckpt["arch"]

    def save_stage(model: nn.Module, pruning: dict, path: Path) -> None:
        save_nlq_checkpoint(path, arch, model, data, {}, {"pruning": pruning})

    model, summary = run_cbkd(teacher, NLQCBKDTask(data, loss), cfg, out.parent / f"{out.stem}_stages", save_stage,
                              progress, log)
    model.cpu().eval()
    rows = {s: nlq_metrics.metrics_row(evaluate_model(model, data, s)[1]) for s in ("val", "test")}
    metrics = {**rows, "params": summary["final"]["params"], "macs": summary["final"]["macs"],
               "cbkd": {k: v for k, v in summary.items() if k not in ("finetune", "pruning")},
               "history": summary["finetune"]}
    path = save_nlq_checkpoint(out, arch, model, data, metrics,
                               {"cbkd": asdict(cfg), "source": source.name, "loss": asdict(loss),
                                "pruning": summary["pruning"]})
    return path, summary


def _mask(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    return inputs[1].numpy()  # (video, video_mask, query_ids)


def window_agreement(ref: np.ndarray, got: np.ndarray, inputs: tuple[torch.Tensor, ...]) -> float:
    """% of queries whose top-1 window (from ``(N, 2, T)`` start/end logits) is the same in both."""
    return top1_window_agreement((ref[:, 0], ref[:, 1]), (got[:, 0], got[:, 1]), _mask(inputs))


def valid_step_error(ref: np.ndarray, got: np.ndarray, inputs: tuple[torch.Tensor, ...]) -> float:
    """Mean squared start/end logit difference over valid steps (padded steps' logits are never read)."""
    valid = np.broadcast_to(_mask(inputs)[:, None, :] > 0, ref.shape)
    return float(((ref - got) ** 2)[valid].mean())


def nlq_job(path: Path, cfg: PTQConfig, ckpt: dict) -> PTQJob:
    """The PTQ job of an NLQ checkpoint: training queries calibrate, val queries steer the fallback.

    ``ckpt`` is the checkpoint as already read from ``path``.
    """
    from egoedge.trainer.common.io import EgoedgeError

    model, ckpt = load_nlq_model(path, ckpt)
    data = load_data(NLQDataSpec(**ckpt["config"]["data"]), vocab=ckpt["preprocess"]["vocab"])
    n_train = len(data.splits["train"])
    if not MIN_CALIBRATION <= cfg.calibration <= n_train:
        raise EgoedgeError(f"--calib {cfg.calibration} must be between {MIN_CALIBRATION} and the {n_train} "
                           "training queries")

    def inputs(split: str, idx) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(x) for x in model_inputs(data, split, idx, model.tokenizer))

    samples = as_samples(*inputs("train", calibration_queries(data, cfg.calibration, cfg.seed)))
    val = inputs("val", slice(0, cfg.val_samples))

    def score(out: np.ndarray) -> dict:
        row = nlq_metrics.metrics_row(evaluate_logits(data, "test", out[:, 0], out[:, 1])[1])
        return {**nlq_metrics.accuracy_block(row), **row}

    return PTQJob(model, samples, val, inputs("test", slice(None)), score,
                  OutputMatch(window_agreement, valid_step_error), source=str(data.spec.root))
