"""Structured channel pruning inside one block, recorded as a replayable plan.

The dependency graph comes from torch-pruning: pruning a conv's output channels also removes
the matching BatchNorm channels, the next layer's input channels, LayerNorm widths inside a
transformer and both halves of a residual or a concat. Only groups that stay inside the
block are pruned, so the block keeps its input and output widths and still fits between its
untouched neighbours (and still matches the teacher block it is distilled from).

A block may join several modules with ``+`` (``stem+stages.0``): a ResNet's stem feeds only the
first stage's convolutions, so its channels are a group inside the pair, never inside either alone.

A pruned model is saved as its original architecture plus the plan — the list of
``(module, channel indices)`` steps — so a checkpoint stays loadable with
``weights_only=True``: rebuild, replay the plan, load the state dict.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from egoedge.trainer.common.registry import Registry

IMPORTANCE: Registry = Registry("pruning importance")


@IMPORTANCE.register("l2")
def _l2():
    """Group L2 norm of the weights (Li et al. 2017, summed over the coupled layers)."""
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


@IMPORTANCE.register("l1")
def _l1():
    """Group L1 norm of the weights."""
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


@IMPORTANCE.register("fpgm")
def _fpgm():
    """Filter pruning via geometric median (He et al. 2019): drop the most replaceable filters."""
    import torch_pruning as tp

    return tp.importance.FPGMImportance(p=2)


PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)  # layers whose output channels a group may be rooted at


def block_parts(block: str) -> list[str]:
    """The module names a block joins, in forward order: ``"stem+stages.0"`` -> ``["stem", "stages.0"]``."""
    return block.split("+")


def _graph(scope: nn.Module, example: tuple[torch.Tensor, ...]):
    import torch_pruning as tp

    was_training = scope.training
    scope.eval()
    graph = tp.DependencyGraph().build_dependency(scope, example_inputs=tuple(example))
    scope.train(was_training)
    return graph


@contextlib.contextmanager
def _quiet():
    # torch-pruning's notes on free parameters (learned positions) and deep shape searches concern
    # the residual stream, whose groups reach outside every block and are never pruned here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _out_channel_fn(module: nn.Module):
    import torch_pruning as tp

    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return tp.prune_conv_out_channels
    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    raise TypeError(f"cannot prune the output channels of a {type(module).__name__}")


def prune_block(scope: nn.Module, block: str, ratio: float, example: tuple[torch.Tensor, ...], importance: str = "l2",
                round_to: int = 4) -> list[dict]:
    """Remove ``ratio`` of the channels of every prunable group inside ``scope.<block>`` (``a+b``: inside both
    together); returns the plan steps.

    Attention q/k/v projections are left whole (their width is tied to the head count); a group
    that reaches outside the block is skipped. Removed counts are rounded down to a multiple of
    ``round_to`` (SIMD-friendly widths) and at least ``round_to`` channels remain.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    with _quiet():
        return _prune_block(scope, block, ratio, example, importance, round_to)


def _prune_block(scope: nn.Module, block: str, ratio: float, example: tuple[torch.Tensor, ...], importance: str,
                 round_to: int) -> list[dict]:
    import torch_pruning as tp

    graph = _graph(scope, example)
    targets = [scope.get_submodule(part) for part in block_parts(block)]
    inside = {m for target in targets for m in target.modules()}
    real = set(scope.modules())
    names = {m: n for n, m in scope.named_modules()}
    keep_whole = [m for target in targets for n, m in target.named_modules() if n.endswith("qkv")]
    outside = [m for m in real if m not in inside and isinstance(m, PRUNABLE)]
    scorer = IMPORTANCE.get(importance)()
    steps: list[dict] = []
    for group in graph.get_all_groups(ignored_layers=outside + keep_whole, root_module_types=list(PRUNABLE)):
        members = [dep.target.module for dep, _ in group]
        # Outside the block, or the scope's own output (a trunk whose last block feeds only a pool).
        if any(m in real and m not in inside or isinstance(m, tp.ops._OutputOp) for m in members):
            continue
        scores = scorer(group)
        if scores is None:
            continue
        width = len(scores)
        n = int(width * ratio) // round_to * round_to
        n = min(n, width - round_to)
        if n <= 0:
            continue
        idxs = sorted(torch.argsort(scores)[:n].tolist())
        root = group[0].dep.target.module
        graph.get_pruning_group(root, _out_channel_fn(root), idxs=idxs).prune()
        steps.append({"module": names[root], "idxs": idxs})
    return steps


def apply_plan(scope: nn.Module, steps: list[dict], example: tuple[torch.Tensor, ...]) -> None:
    """Replay recorded pruning ``steps`` on a freshly built ``scope`` (same architecture as when recorded)."""
    with _quiet():
        graph = _graph(scope, example)
        for step in steps:
            module = scope.get_submodule(step["module"])
            graph.get_pruning_group(module, _out_channel_fn(module), idxs=list(step["idxs"])).prune()


def apply_pruning_config(model: nn.Module, pruning: dict) -> None:
    """Rebuild a pruned model's shape from its checkpoint's ``config["pruning"]``."""
    scope = model.get_submodule(pruning["scope"])
    if "inputs" in pruning:
        example = tuple(torch.zeros(x["shape"], dtype=getattr(torch, x["dtype"])) for x in pruning["inputs"])
    else:  # checkpoints written before multi-input scopes: one float tensor
        example = (torch.zeros(pruning["input"]),)
    apply_plan(scope, pruning["steps"], example)
