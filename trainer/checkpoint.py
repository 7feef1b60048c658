"""The checkpoint contract: ``{"arch", "config", "state_dict", "metrics", "label_names", "preprocess"}``.

Everything in it is plain data (dicts, lists, numbers, strings, tensors) so that it loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from egoedge.trainer.common.io import EgoedgeError, first_line, write_bytes_atomic
from egoedge.trainer.models import build_model
from egoedge.trainer.prune.plan import apply_pruning_config

REQUIRED_KEYS = ("arch", "config", "state_dict", "metrics", "label_names", "preprocess")


def save_checkpoint(path: str | Path, *, arch: str, model_kwargs: dict, model: torch.nn.Module,
                    metrics: dict, label_names: list[str], preprocess: dict, config: dict) -> Path:
    """Write a checkpoint atomically; ``config["model"]`` rebuilds the architecture."""
    task = config.get("task") or (config.get("data") or {}).get("task")  # every checkpoint says its task
    payload = {
        "arch": arch,
        "config": {**({"task": task} if task else {}), **config, "model": dict(model_kwargs)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": metrics,
        "label_names": list(label_names),
        "preprocess": preprocess,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return write_bytes_atomic(path, buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict; a wrong or damaged file is a one-line ``EgoedgeError``."""
    path = Path(path)
    if not path.is_file():
        raise EgoedgeError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any bytes that are not a checkpoint (IndexError, KeyError ... too)
        raise EgoedgeError(f"{path} is not a readable checkpoint (truncated or not a torch file): "
                           f"{first_line(e)}") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise EgoedgeError(f"{path} is not an egoedge checkpoint (missing {', '.join(missing)}); "
                           "produce one with `egoedge run` or `egoedge train`")
    return ckpt


def load_model(path: str | Path, ckpt: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint of any task in eval mode; returns ``(model, checkpoint_dict)``.

    ``build_model(arch, **config["model"])`` makes the architecture; ``ckpt`` is the already-read
    checkpoint, if the caller has it.
    """
    ckpt = ckpt if ckpt is not None else read_checkpoint(path)
    try:
        model = build_model(ckpt["arch"], **ckpt["config"]["model"])
        if ckpt["config"].get("pruning"):  # a CBKD student: replay its channel pruning first
            apply_pruning_config(model, ckpt["config"]["pruning"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise EgoedgeError(f"{path}: cannot rebuild '{ckpt['arch']}' from its config: "
                           f"{first_line(e)}") from None
    return model.eval(), ckpt
