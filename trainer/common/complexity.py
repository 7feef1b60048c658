"""Model size and compute: parameter and multiply-accumulate counts."""

from __future__ import annotations

import torch


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass, from torch's FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    was_training = model.training
    with counter, torch.no_grad():
        model.eval()(*example_inputs)
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
