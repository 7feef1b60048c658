"""CBKD: counterclockwise block-by-block pruning with distillation recovery."""

from egoedge.trainer.prune.plan import IMPORTANCE, apply_plan, prune_block

__all__ = ["IMPORTANCE", "apply_plan", "prune_block"]
