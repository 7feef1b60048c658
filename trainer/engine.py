"""The training engine: one plain epoch loop shared by every stage (teacher, student, CBKD recovery).

Reads top to bottom: AdamW, linear warm-up then cosine decay, gradient clipping, optional EMA
of the weights, autocast on CUDA, a resume file after every epoch so a killed run loses at
most one epoch, and DistributedDataParallel when started by ``torchrun`` (NCCL on GPUs,
gloo on CPUs). Every epoch is seeded from ``(seed, epoch)``, which is what makes a resumed run
reproduce an uninterrupted one bit for bit on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from egoedge.trainer.common.io import EgoedgeError, write_bytes_atomic
from egoedge.trainer.common.progress import Progress, no_progress


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training stage."""

    epochs: int = 4
    batch_size: int = 32  # per process under torchrun
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.1
    label_smoothing: float = 0.1
    grad_clip: float = 5.0  # max global gradient norm; 0 disables clipping
    ema_decay: float = 0.0  # e.g. 0.999; 0 disables the EMA. With an EMA, its weights are the result.
    amp: bool = True  # bf16/fp16 autocast, on CUDA only
    seed: int = 0


def device() -> torch.device:
    """CUDA when present (this process's GPU under torchrun), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join the process group that ``torchrun`` describes in the environment; False when not under torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return torch.distributed.is_available() and torch.distributed.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    torch.distributed.init_process_group(backend=backend)
    return True


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_frac`` of the steps, then cosine decay to 0."""
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def autocast(dev: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bf16 where supported, else fp16); a no-op on CPU."""
    if not enabled or dev.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def epoch_batches(n: int | Sequence[int], batch_size: int, epoch: int, seed: int) -> Iterator[np.ndarray]:
    """This process's index batches for one epoch: a seeded shuffle, split between the processes.

    ``n`` is a sample count, or the per-shard counts of a sharded split (consecutive indices per
    shard): then, under torchrun, each process reads whole shards of its own (a new assignment
    every epoch), so with the shards on shared storage no two machines read the same file.
    """
    for i in range(0, len(order := _epoch_order(n, epoch, seed)), batch_size):
        yield order[i:i + batch_size]


def _epoch_order(n: int | Sequence[int], epoch: int, seed: int) -> np.ndarray:
    rank, size = world()
    total = _unsharded_total(n, size)
    if total is not None:
        sampler = DistributedSampler(range(total), num_replicas=size, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    shards = np.random.default_rng([seed, epoch]).permutation(len(n))[rank::size]
    mine = np.concatenate([np.arange(starts[s], starts[s] + n[s]) for s in shards])
    np.random.default_rng([seed, epoch, rank]).shuffle(mine)
    # every process takes the same number of steps (DDP's all-reduce needs it), the same every epoch
    return mine[:_per_rank(n, size)]


def _unsharded_total(n: int | Sequence[int], size: int) -> int | None:
    """The sample count when an epoch is a plain shuffle (no shards, one process, or fewer shards than processes)."""
    if isinstance(n, int) or size == 1 or len(n) < size:
        return n if isinstance(n, int) else int(sum(n))
    return None


def _per_rank(n: Sequence[int], size: int) -> int:
    """Samples each process reads per epoch from shards: what the fewest, smallest shards it may get hold."""
    return int(sum(sorted(n)[:len(n) // size]))


def steps_per_epoch(n: int | Sequence[int], batch_size: int) -> int:
    """Optimizer steps per epoch in this process."""
    size = world()[1]
    total = _unsharded_total(n, size)
    if total is not None:
        return math.ceil(math.ceil(total / size) / batch_size)
    return math.ceil(_per_rank(n, size) / batch_size)


def _settings_diff(state: dict, cfg: TrainConfig, stage: str) -> str:
    """Which settings differ between a resume file and this training, in a few words."""
    old = state.get("settings")
    if not isinstance(old, dict):
        return "made by an older egoedge"
    new = {**asdict(cfg), "stage": stage, "world": world()[1]}
    return ", ".join(f"{k} {old.get(k)} vs {new.get(k)}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k)) or "other loss settings"


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel inside a process group, else itself.

    Built after any freezing: DDP syncs only the parameters that require gradients.
    """
    if world()[1] == 1:
        return model
    dev = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


# step(batch_indices) -> {"loss": tensor, ...detached components}
StepLoss = Callable[[np.ndarray], dict[str, torch.Tensor]]


def fit(model: nn.Module, params: list[nn.Parameter] | list[dict], n: int | Sequence[int], cfg: TrainConfig,
        step_loss: StepLoss, stage: str,
        progress: Progress = no_progress, resume: os.PathLike | None = None,
        log: Callable[[dict], None] | None = None, extra: nn.Module | None = None,
        train_mode: Callable[[], None] | None = None) -> list[dict]:
    """Optimise ``params`` for ``cfg.epochs`` over ``n`` samples (or per-shard counts); returns the per-epoch history.

    ``step_loss`` computes one batch's losses; ``extra`` holds trainable loss parts (projections)
    saved with the resume state; ``train_mode`` puts the modules into train/eval mode at the
    start of every epoch (default ``model.train()``); ``log`` receives each epoch's record.
    ``params`` may be optimiser groups; a group's ``lr_scale`` multiplies the scheduled rate.
    """
    from pathlib import Path

    dev = next(model.parameters()).device
    rank, size = world()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    flat = [p for g in opt.param_groups for p in g["params"]]
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported())
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    total = cfg.epochs * per_epoch
    history: list[dict] = []
    start_epoch = 0
    resume = Path(resume) if resume is not None else None
    fingerprint = repr(asdict(cfg)) + stage + f"/world{size}"
    if resume is not None and resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            # resuming other settings' weights would silently mix two trainings
            raise EgoedgeError(f"{resume}: resume file of other training settings ({_settings_diff(state, cfg, stage)}"
                               f"); delete it to train this {stage} stage from the start")
        model.load_state_dict(state["model"])
        if extra is not None:
            extra.load_state_dict(state["extra"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, list(state["history"])
    for epoch in range(start_epoch, cfg.epochs):
        (train_mode or model.train)()
        torch.manual_seed(cfg.seed * 1000 + epoch * size + rank)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for b, idx in enumerate(epoch_batches(n, cfg.batch_size, epoch, cfg.seed)):
            lr = lr_at(epoch * per_epoch + b, total, cfg)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with autocast(dev, cfg.amp):
                terms = step_loss(idx)
            opt.zero_grad(set_to_none=True)
            scaler.scale(terms["loss"]).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(flat, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if rank == 0:
                progress(stage, epoch * per_epoch + b + 1, total, {"epoch": epoch + 1, "loss": sums["loss"] / (b + 1)})
        record = {"stage": stage, "epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 2), "lr": lr,
                  **{k: v / per_epoch for k, v in sums.items()}}
        history.append(record)
        if log is not None and rank == 0:
            log(record)
        if resume is not None and rank == 0:
            buf = io.BytesIO()
            torch.save({"fingerprint": fingerprint, "epoch": epoch, "history": history,
                        "settings": {**asdict(cfg), "stage": stage, "world": size},
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "ema": ema.state_dict() if ema is not None else {},
                        "extra": extra.state_dict() if extra is not None else {}}, buf)
            write_bytes_atomic(resume, buf.getvalue())
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    if resume is not None and rank == 0:
        resume.unlink(missing_ok=True)
    return history
