"""Train, distil and evaluate the VSLNet family on an NLQ dataset, and save or load its checkpoints."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from egoedge.trainer.checkpoint import load_model, read_checkpoint, save_checkpoint
from egoedge.trainer.common.complexity import count_macs, count_params
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.engine import TrainConfig, device, fit
from egoedge.trainer.models import MODELS, build_model
from egoedge.trainer.models.vslnet import VSLNet, config_dict
from egoedge.trainer.nlq.dataset import NLQData
from egoedge.trainer.nlq.loss import SpanLoss, highlight_labels, kd_loss, span_loss
from egoedge.trainer.nlq.windows import evaluate_logits


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
    return load_model(path, ckpt=ckpt)


def build_for(arch: str, data: NLQData, **overrides) -> VSLNet:
    """An NLQ model sized for ``data`` (feature width, vocabulary, lengths)."""
    family = [a for a in MODELS if getattr(MODELS.get(a), "task", None) == "nlq"]
    if arch not in family:
        raise EgoedgeError(f"unknown NLQ model '{arch}'; valid: {', '.join(family)}")
    try:
        return build_model(arch, feature_dim=data.feature_dim, vocab_size=len(data.vocab),
                               max_pos_len=data.spec.max_pos_len, max_query_len=data.spec.max_query_len,
                               **overrides)
    except KeyError as e:
        raise EgoedgeError(e.args[0]) from None
    except ValueError as e:
        raise EgoedgeError(str(e)) from None
