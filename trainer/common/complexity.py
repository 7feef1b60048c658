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
    # nn.TransformerEncoder's fused inference kernel is invisible to the counter: count the plain ops.
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with counter, torch.no_grad():
            _mode(model, False)(*example_inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        _mode(model, was_training)
    return int(counter.get_total_flops() // 2)


def _mode(model: torch.nn.Module, training: bool) -> torch.nn.Module:
    try:
        model.train(training)
    except NotImplementedError:  # a torch.export program's module: its mode was fixed when it was exported
        pass
    return model
