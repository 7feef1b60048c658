"""CBKD — counterclockwise block-by-block knowledge distillation (Lan et al., Sci Rep 2025).

The student starts as a copy of its teacher (here: the trained KD student) and is split into
sub-network blocks (the encoder's stages). Each stage compresses exactly one block — structured
channel pruning through torch-pruning's dependency graph — and recovers it by distilling the
teacher's same block: ``MSE(student_block(x), teacher_block(x))`` on the training clips, with
every other block frozen. Deeper blocks get higher compression rates. The default order runs
against the forward direction, deepest block first ("counterclockwise"): while block ``k`` is
compressed, every block before it is still the teacher's, so the recovered block learns from
exactly the inputs the teacher block sees. A final end-to-end response-KD fine-tune (KL at
temperature ``T`` from the uncompressed network, plus cross-entropy) follows.

Each finished stage is saved (checkpoint with its pruning plan + ``cbkd_state.json``), so
``egoedge train cbkd`` resumes from the last finished stage.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer.common.complexity import count_macs, count_params
from trainer.common.io import EgoedgeError, write_json_atomic
from trainer.common.progress import Progress, no_progress
from trainer.data import ClipSplit, to_model_input
from trainer.distill import FeatureTaps
from trainer.engine import TrainConfig, device, fit, wrap_ddp
from trainer.prune.plan import IMPORTANCE, apply_plan, prune_block
from trainer.train import KDConfig, distill_student, evaluate

ORDERS = ("deep_first", "shallow_first")
SCOPE = "encoder"  # the image encoder is what gets split into blocks; pooling and head stay whole


@dataclass(frozen=True)
class CBKDConfig:
    """Blocks, compression schedule and the recovery / fine-tune budgets of a CBKD run.

    ``blocks`` are module names under the encoder (empty: its numbered ``stages``). Block ``i``
    of ``n`` (in forward order) is pruned at ``min_ratio + (max_ratio - min_ratio) * i / (n - 1)``
    unless ``ratios`` gives one rate per block.
    """

    blocks: tuple[str, ...] = ()
    order: str = "deep_first"
    min_ratio: float = 0.3
    max_ratio: float = 0.6
    ratios: tuple[float, ...] = ()
    importance: str = "l2"
    recover: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=16, lr=1e-3,
                                                                     label_smoothing=0.0))
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=16, lr=5e-4))
    temperature: float = 4.0
    gamma: float = 0.5  # weight of cross-entropy in the final fine-tune

    def validate(self) -> None:
        """Raise ``ValueError`` on an impossible setting."""
        if self.order not in ORDERS:
            raise ValueError(f"unknown CBKD order '{self.order}'; valid: {', '.join(ORDERS)}")
        for r in (self.min_ratio, self.max_ratio, *self.ratios):
            if not 0.0 <= r < 1.0:
                raise ValueError(f"compression ratios must be in [0, 1), got {r}")
        IMPORTANCE.get(self.importance)


_STAGE = re.compile(r"^stages\.\d+$")


def block_names(model: nn.Module, cfg: CBKDConfig) -> list[str]:
    """The encoder blocks CBKD works on, in forward order."""
    encoder = model.get_submodule(SCOPE)
    names = list(cfg.blocks) or [n for n, _ in encoder.named_modules() if _STAGE.match(n)]
    if not names:
        raise EgoedgeError(f"{type(encoder).__name__} has no numbered stages; name the CBKD blocks explicitly")
    for n in names:
        try:
            encoder.get_submodule(n)
        except AttributeError:
            raise EgoedgeError(f"the encoder has no block '{n}'") from None
    return names


def stage_plan(names: list[str], cfg: CBKDConfig) -> list[tuple[str, float]]:
    """``(block, ratio)`` per stage, in the order the stages run."""
    if cfg.ratios and len(cfg.ratios) != len(names):
        raise ValueError(f"{len(cfg.ratios)} ratios for {len(names)} blocks")
    n = len(names)
    ratios = list(cfg.ratios) or [cfg.min_ratio + (cfg.max_ratio - cfg.min_ratio) * i / max(1, n - 1)
                                  for i in range(n)]
    plan = list(zip(names, ratios, strict=True))
    return plan[::-1] if cfg.order == "deep_first" else plan


def encoder_example(model: nn.Module) -> torch.Tensor:
    """One batch of two frames, as the encoder sees them, for tracing the dependency graph."""
    return torch.zeros(2, 3, model.size, model.size, device=next(model.parameters()).device)


def pruning_config(steps: list[dict], model: nn.Module) -> dict:
    """The ``config["pruning"]`` block of a checkpoint: scope, trace input shape, replayable steps."""
    return {"scope": SCOPE, "input": list(encoder_example(model).shape), "steps": steps}


def apply_pruning_config(model: nn.Module, pruning: dict) -> None:
    """Rebuild a pruned model's shape from its checkpoint's ``config["pruning"]``."""
    scope = model.get_submodule(pruning["scope"])
    apply_plan(scope, pruning["steps"], torch.zeros(pruning["input"]))


def recover_block(student: nn.Module, teacher: nn.Module, block: str, train: ClipSplit, preprocess: dict,
                  cfg: TrainConfig, progress: Progress, resume: Path | None,
                  log: Callable[[dict], None] | None, stage: str) -> list[dict]:
    """Train only ``student.encoder.<block>`` to reproduce the teacher block's output; the rest stays frozen."""
    dev = device()
    name = f"{SCOPE}.{block}"
    target = student.get_submodule(name)
    for p in student.parameters():
        p.requires_grad_(False)
    params = list(target.parameters())
    for p in params:
        p.requires_grad_(True)
    net = wrap_ddp(student)
    s_tap, t_tap = FeatureTaps(student, [name]), FeatureTaps(teacher, [name])

    def train_mode() -> None:
        student.eval()  # frozen BatchNorm statistics outside the block
        target.train()

    def step(idx):
        x = to_model_input(train.clips[idx], preprocess).to(dev)
        with torch.no_grad(), t_tap:
            teacher(x)
        with s_tap:
            net(x)
        return {"loss": F.mse_loss(s_tap.outputs[0], t_tap.outputs[0])}

    try:
        return fit(student, params, len(train), cfg, step, stage, progress, resume, log, train_mode=train_mode)
    finally:
        for p in student.parameters():
            p.requires_grad_(True)


def _measure(model: nn.Module, val: ClipSplit, preprocess: dict) -> dict:
    example = tuple(t.to(next(model.parameters()).device) for t in model.example_inputs())
    return {"params": count_params(model), "macs": count_macs(model, example), "val": evaluate(model, val, preprocess)}


def run_cbkd(teacher: nn.Module, train: ClipSplit, val: ClipSplit, preprocess: dict, cfg: CBKDConfig,
             work: Path, save: Callable[[nn.Module, dict, Path], None], progress: Progress = no_progress,
             log: Callable[[dict], None] | None = None) -> tuple[nn.Module, dict]:
    """Compress a copy of ``teacher`` stage by stage into ``work``; returns ``(student, summary)``.

    ``save(model, pruning_config, path)`` writes a checkpoint (the caller owns the format); each
    finished stage is saved as ``work/cbkd_stage{k}.pt`` and listed in ``work/cbkd_state.json``,
    and a rerun with the same ``work`` folder and config continues after the last finished stage.
    """
    cfg.validate()
    dev = device()
    teacher.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    names = block_names(student, cfg)
    plan = stage_plan(names, cfg)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "cbkd_state.json"
    fingerprint = json.dumps({"cbkd": asdict(cfg), "plan": plan}, sort_keys=True, default=str)
    state = {"fingerprint": fingerprint, "steps": [], "stages": []}
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if old.get("fingerprint") == fingerprint and old["stages"]:
            state = old
            apply_pruning_config(student, pruning_config(state["steps"], student))
            from trainer.checkpoint import read_checkpoint

            ckpt = read_checkpoint(work / f"cbkd_stage{len(state['stages'])}.pt")
            student.load_state_dict(ckpt["state_dict"])
    student.to(dev)
    if not state["stages"]:
        state["start"] = _measure(student, val, preprocess)
    for k, (block, ratio) in enumerate(plan, start=1):
        if k <= len(state["stages"]):
            continue
        t0 = time.perf_counter()
        scope = student.get_submodule(SCOPE)
        state["steps"] += prune_block(scope, block, ratio, encoder_example(student), cfg.importance)
        pruned = _measure(student, val, preprocess)
        label = f"cbkd {k}/{len(plan)} {block}"
        history = recover_block(student, teacher, block, train, preprocess, cfg.recover, progress,
                                work / "cbkd_recover.resume.pt", log, label)
        record = {"stage": k, "block": block, "ratio": round(ratio, 4), "params": pruned["params"],
                  "macs": pruned["macs"], "val_after_prune": pruned["val"],
                  "val": evaluate(student, val, preprocess), "recover_loss": history[-1]["loss"] if history else None,
                  "seconds": round(time.perf_counter() - t0, 1)}
        save(student, pruning_config(state["steps"], student), work / f"cbkd_stage{k}.pt")
        state["stages"].append(record)
        write_json_atomic(state_path, state)
        if log is not None:
            log({"record": "cbkd_stage", **record})
    kd = KDConfig(alpha=0.0, beta=1.0, gamma=cfg.gamma, temperature=cfg.temperature)
    history = distill_student(student, teacher, train, preprocess, cfg.finetune, kd, progress,
                              resume=work / "cbkd_finetune.resume.pt", log=log)
    final = _measure(student, val, preprocess)
    summary = {"start": state["start"], "stages": state["stages"], "final": final, "finetune": history,
               "pruning": pruning_config(state["steps"], student),
               "macs_cut": round(1 - final["macs"] / state["start"]["macs"], 4),
               "params_cut": round(1 - final["params"] / state["start"]["params"], 4)}
    return student, summary


def stage_table(summary: dict) -> list[dict]:
    """Rows ``{stage, block, ratio, params, macs, val_top1}`` from the start through the fine-tune."""
    rows = [{"stage": "start", "block": "-", "ratio": 0.0, "params": summary["start"]["params"],
             "macs": summary["start"]["macs"], "val_top1": summary["start"]["val"]["top1"]}]
    for s in summary["stages"]:
        rows.append({"stage": str(s["stage"]), "block": s["block"], "ratio": s["ratio"], "params": s["params"],
                     "macs": s["macs"], "val_top1": s["val"]["top1"]})
    f = summary["final"]
    rows.append({"stage": "finetune", "block": "all", "ratio": None, "params": f["params"], "macs": f["macs"],
                 "val_top1": f["val"]["top1"]})
    return rows


__all__ = ["CBKDConfig", "ORDERS", "apply_pruning_config", "block_names", "recover_block", "run_cbkd",
           "stage_plan", "stage_table"]
