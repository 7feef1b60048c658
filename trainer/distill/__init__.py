"""Distillation losses and their registry, teacher ensembles and activation taps."""

from trainer.distill.ensemble import ENSEMBLE_MODES, LogitEnsemble
from trainer.distill.losses import (
    FEATURE_LOSSES,
    LOSSES,
    RESPONSE_LOSSES,
    DistillationLoss,
    FeatureCosine,
    FeatureMSE,
    HintMSE,
    ResponseKL,
    TaskCE,
    TopKKL,
    as_feature_map,
)
from trainer.distill.taps import FeatureTaps, resolve_modules

__all__ = [
    "ENSEMBLE_MODES", "FEATURE_LOSSES", "LOSSES", "RESPONSE_LOSSES", "DistillationLoss", "FeatureCosine",
    "FeatureMSE", "FeatureTaps", "HintMSE", "LogitEnsemble", "ResponseKL", "TaskCE", "TopKKL", "as_feature_map",
    "resolve_modules",
]
