"""Pretrained weights from a file (safetensors or a torch state dict), checked to fit before they load.

A file that does not fit is one line naming the first offending keys, never a page of
``load_state_dict`` output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from egoedge.trainer.common.io import EgoedgeError, first_line

# Where training scripts commonly nest the weights inside a saved dict.
_NESTED = ("state_dict", "model", "model_state_dict", "module", "net")
_SHOWN = 3  # keys named per problem in an error line


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``'d state dict (nested under ``state_dict`` too)."""
    path = Path(path)
    if not path.is_file():
        raise EgoedgeError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any bytes that are not weights
        raise EgoedgeError(f"{path} is not a readable weights file (safetensors or a torch state dict): "
                           f"{first_line(e)[:200]}") from None
    for key in _NESTED:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EgoedgeError(f"{path} holds no state dict of tensors (found {type(state).__name__})")
    # DataParallel / DDP saves prefix every key with "module.".
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def fit_problem(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` does not fit ``model`` (missing, unexpected keys, shape mismatch), or ``None`` if it does."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (file vs model): {_names(shapes)}")
    return "; ".join(parts) or None


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """Load ``state`` into ``model`` strictly; a misfit is one ``EgoedgeError`` line that starts with ``where``."""
    if problem := fit_problem(model, state):
        raise EgoedgeError(f"{where} does not fit the model: {problem}")
    model.load_state_dict(dict(state))
    return model
