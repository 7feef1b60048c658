"""Distillation losses and their registry."""

from trainer.distill.losses import LOSSES, DistillationLoss, FeatureMSE, ResponseKL, TaskCE

__all__ = ["LOSSES", "DistillationLoss", "FeatureMSE", "ResponseKL", "TaskCE"]
