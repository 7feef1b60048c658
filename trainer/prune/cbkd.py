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

The schedule is task-agnostic; a :class:`CBKDTask` supplies the rest — where the blocks live, a
training forward pass, the validation score and the end-to-end fine-tune. :class:`ClipCBKDTask` is
the clip classifiers' (blocks: the image encoder's stages); the NLQ span models have theirs in
:mod:`trainer.nlq.compress`.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.complexity import count_macs, count_params
from egoedge.trainer.common.io import EgoedgeError, write_json_atomic
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data import ClipSplit, to_model_input
from egoedge.trainer.distill import FeatureTaps
from egoedge.trainer.engine import TrainConfig, device, fit, wrap_ddp
from egoedge.trainer.prune.plan import IMPORTANCE, apply_pruning_config, block_parts, prune_block
from egoedge.trainer.train import KDConfig, distill_student, evaluate

ORDERS = ("deep_first", "shallow_first")


@dataclass(frozen=True)
class CBKDConfig:
    """Blocks, compression schedule and the recovery / fine-tune budgets of a CBKD run.

    ``blocks`` are module names under the encoder (empty: its numbered ``stages``); ``+`` joins modules pruned
    and recovered as one block (``stem+stages.0``: a stem's channels reach only the first stage). Block ``i``
    of ``n`` (in forward order) is pruned at ``min_ratio + (max_ratio - min_ratio) * i / (n - 1)``
    unless ``ratios`` gives one rate per block.
    """

    blocks: tuple[str, ...] = ()
    order: str = "deep_first"
    min_ratio: float = 0.3
    max_ratio: float = 0.6
    ratios: tuple[float, ...] = ()
    importance: str = "l2"
    # Kept channel counts are multiples of this: int8 GEMM kernels work on groups of channels, and a
    # width between multiples pays for the whole group. 16 measured no faster than 8 (docs/training.md).
    round_to: int = 8
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
        if self.round_to < 1:
            raise ValueError(f"round_to must be >= 1, got {self.round_to}")


class CBKDTask(Protocol):
    """What CBKD needs from a task: where its blocks live, a training forward pass, a score, a fine-tune.

    ``scope`` is the module the blocks are named under (``""``: the whole model); ``metric`` is the
    key of :meth:`evaluate`'s result that the stage table reports.
    """

    scope: str
    metric: str

    def default_blocks(self, model: nn.Module) -> list[str]:
        """Block names under ``scope``, in forward order."""

    def trace_inputs(self, model: nn.Module) -> tuple[torch.Tensor, ...]:
        """Inputs of the ``scope`` module, for tracing its dependency graph."""

    def train_size(self) -> int | list[int]:
        """Number of training samples (or per-shard counts, :meth:`ClipSplit.sample_plan`)."""

    def forward_train(self, net: nn.Module, idx: np.ndarray) -> None:
        """Run the training samples ``idx`` through ``net`` (the whole model)."""

    def evaluate(self, model: nn.Module) -> dict:
        """Validation metrics of ``model``."""

    def finetune(self, student: nn.Module, teacher: nn.Module, cfg: CBKDConfig, progress: Progress,
                 resume: Path, log: Callable[[dict], None] | None) -> list[dict]:
        """End-to-end distillation of ``teacher`` into the compressed ``student``; returns the history."""


_STAGE = re.compile(r"^stages\.\d+$")


@dataclass
class ClipCBKDTask:
    """CBKD of a clip classifier: blocks are the image encoder's numbered stages; score is top-1."""

    train: ClipSplit
    val: ClipSplit
    preprocess: dict
    scope: str = "encoder"  # the image encoder is what gets split into blocks; pooling and head stay whole
    metric: str = "top1"

    def default_blocks(self, model: nn.Module) -> list[str]:
        scope = model.get_submodule(self.scope)
        if hasattr(scope, "cbkd_blocks"):  # a foreign trunk (timm:NAME) names its own numbered blocks
            return scope.cbkd_blocks()
        return [n for n, _ in scope.named_modules() if _STAGE.match(n)]

    def trace_inputs(self, model: nn.Module) -> tuple[torch.Tensor, ...]:
        # One batch of two frames, as the encoder sees them.
        return (torch.zeros(2, 3, model.size, model.size, device=next(model.parameters()).device),)

    def train_size(self) -> int | list[int]:
        return self.train.sample_plan()

    def forward_train(self, net: nn.Module, idx: np.ndarray) -> None:
        net(to_model_input(self.train.clips[idx], self.preprocess).to(device()))

    def evaluate(self, model: nn.Module) -> dict:
        return evaluate(model, self.val, self.preprocess)

    def finetune(self, student, teacher, cfg, progress, resume, log) -> list[dict]:
        kd = KDConfig(alpha=0.0, beta=1.0, gamma=cfg.gamma, temperature=cfg.temperature)
        return distill_student(student, teacher, self.train, self.preprocess, cfg.finetune, kd, progress,
                               resume=resume, log=log)


def block_names(model: nn.Module, cfg: CBKDConfig, task: CBKDTask | None = None) -> list[str]:
    """The blocks CBKD works on (under the task's scope), in forward order."""
    task = task or ClipCBKDTask(None, None, {})  # naming blocks needs only the clip task's scope, not its data
    scope = model.get_submodule(task.scope)
    names = list(cfg.blocks) or task.default_blocks(model)
    if not names:
        raise EgoedgeError(f"{type(scope).__name__} has no default CBKD blocks; name them explicitly")
    for n in (part for name in names for part in block_parts(name)):
        try:
            scope.get_submodule(n)
        except AttributeError:
            raise EgoedgeError(f"the {task.scope or 'model'} has no block '{n}'") from None
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


def pruning_config(steps: list[dict], scope: str, inputs: tuple[torch.Tensor, ...]) -> dict:
    """The ``config["pruning"]`` block of a checkpoint: scope, trace inputs (shape, dtype), replayable steps."""
    return {"scope": scope, "inputs": [{"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
                                       for x in inputs], "steps": steps}


def recover_block(student: nn.Module, teacher: nn.Module, block: str, task: CBKDTask, cfg: TrainConfig,
                  progress: Progress, resume: Path | None, log: Callable[[dict], None] | None,
                  stage: str) -> list[dict]:
    """Train only ``<scope>.<block>`` to reproduce the teacher block's output (a joined block's: its last
    part's); the rest stays frozen."""
    names = [".".join(p for p in (task.scope, part) if p) for part in block_parts(block)]
    targets = [student.get_submodule(name) for name in names]
    for p in student.parameters():
        p.requires_grad_(False)
    params = [p for target in targets for p in target.parameters()]
    for p in params:
        p.requires_grad_(True)
    net = wrap_ddp(student)
    s_tap, t_tap = FeatureTaps(student, names[-1:]), FeatureTaps(teacher, names[-1:])

    def train_mode() -> None:
        student.eval()  # frozen BatchNorm statistics and no dropout outside the block
        for target in targets:
            target.train()

    def step(idx):
        with torch.no_grad(), t_tap:
            task.forward_train(teacher, idx)
        with s_tap:
            task.forward_train(net, idx)
        return {"loss": F.mse_loss(s_tap.outputs[0], t_tap.outputs[0])}

    try:
        return fit(student, params, task.train_size(), cfg, step, stage, progress, resume, log,
                   train_mode=train_mode)
    finally:
        for p in student.parameters():
            p.requires_grad_(True)


def _measure(model: nn.Module, task: CBKDTask) -> dict:
    example = tuple(t.to(next(model.parameters()).device) for t in model.example_inputs())
    return {"params": count_params(model), "macs": count_macs(model, example), "val": task.evaluate(model)}


def run_cbkd(teacher: nn.Module, task: CBKDTask, cfg: CBKDConfig, work: Path,
             save: Callable[[nn.Module, dict, Path], None], progress: Progress = no_progress,
             log: Callable[[dict], None] | None = None) -> tuple[nn.Module, dict]:
    """Compress a copy of ``teacher`` stage by stage into ``work``; returns ``(student, summary)``.

    ``task`` is a :class:`ClipCBKDTask` or another :class:`CBKDTask` (the NLQ family has its own).
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
    names = block_names(student, cfg, task)
    plan = stage_plan(names, cfg)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "cbkd_state.json"
    fingerprint = json.dumps({"cbkd": asdict(cfg), "plan": plan}, sort_keys=True, default=str)
    state = {"fingerprint": fingerprint, "steps": [], "stages": []}
    trace = task.trace_inputs(student)
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if old.get("fingerprint") == fingerprint and old["stages"]:
            state = old
            apply_pruning_config(student, pruning_config(state["steps"], task.scope, trace))
            ckpt = read_checkpoint(work / f"cbkd_stage{len(state['stages'])}.pt")
            student.load_state_dict(ckpt["state_dict"])
    student.to(dev)
    if not state["stages"]:
        # starting over (new settings, or nothing finished): another run's half-trained epochs must not resume
        for stale in ("cbkd_recover.resume.pt", "cbkd_finetune.resume.pt"):
            (work / stale).unlink(missing_ok=True)
        state["start"] = _measure(student, task)
    for k, (block, ratio) in enumerate(plan, start=1):
        if k <= len(state["stages"]):
            continue
        t0 = time.perf_counter()
        scope = student.get_submodule(task.scope)
        try:
            new = prune_block(scope, block, ratio, task.trace_inputs(student), cfg.importance, cfg.round_to)
        except (RuntimeError, TypeError, ValueError, AttributeError) as e:  # a graph torch-pruning cannot trace
            raise EgoedgeError(f"CBKD cannot prune {task.scope}.{block}: torch-pruning's dependency graph fails "
                               f"on it ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
                               ) from None
        state["steps"] += new
        pruned = _measure(student, task)
        label = f"cbkd {k}/{len(plan)} {block}"
        history = recover_block(student, teacher, block, task, cfg.recover, progress,
                                work / "cbkd_recover.resume.pt", log, label)
        record = {"stage": k, "block": block, "ratio": round(ratio, 4), "params": pruned["params"],
                  "macs": pruned["macs"], "val_after_prune": pruned["val"],
                  "val": task.evaluate(student), "recover_loss": history[-1]["loss"] if history else None,
                  # 0: every channel group of this block reaches outside it (a residual stream), nothing to cut
                  "groups_pruned": len(new),
                  "seconds": round(time.perf_counter() - t0, 1)}
        save(student, pruning_config(state["steps"], task.scope, trace), work / f"cbkd_stage{k}.pt")
        state["stages"].append(record)
        write_json_atomic(state_path, state)
        if log is not None:
            log({"record": "cbkd_stage", **record})
    history = task.finetune(student, teacher, cfg, progress, work / "cbkd_finetune.resume.pt", log)
    final = _measure(student, task)
    summary = {"metric": task.metric, "start": state["start"], "stages": state["stages"], "final": final,
               "finetune": history, "pruning": pruning_config(state["steps"], task.scope, trace),
               "macs_cut": round(1 - final["macs"] / state["start"]["macs"], 4),
               "params_cut": round(1 - final["params"] / state["start"]["params"], 4),
               "unpruned": [s["block"] for s in state["stages"] if s.get("groups_pruned") == 0]}
    return student, summary


def stage_table(summary: dict) -> list[dict]:
    """Rows ``{stage, block, ratio, params, macs, metric, val}`` from the start through the fine-tune.

    ``val`` is the task's headline validation score (``metric``: top-1 for clips, R1@0.3 for NLQ).
    """
    metric = summary.get("metric", "top1")

    def row(stage: str, block: str, ratio: float | None, rec: dict) -> dict:
        return {"stage": stage, "block": block, "ratio": ratio, "params": rec["params"], "macs": rec["macs"],
                "metric": metric, "val": rec["val"][metric]}

    return [row("start", "-", 0.0, summary["start"]),
            *(row(str(s["stage"]), s["block"], s["ratio"], s) for s in summary["stages"]),
            row("finetune", "all", None, summary["final"])]


__all__ = ["CBKDConfig", "CBKDTask", "ClipCBKDTask", "ORDERS", "apply_pruning_config", "block_names", "recover_block",
           "run_cbkd", "stage_plan", "stage_table"]
