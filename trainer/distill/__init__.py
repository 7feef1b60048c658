"""Distillation losses and their registry, teacher ensembles and activation taps."""

from egoedge.trainer.distill.ensemble import ENSEMBLE_MODES, LogitEnsemble
from egoedge.trainer.distill.losses import (
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
from egoedge.trainer.distill.taps import FeatureTaps, resolve_modules

__all__ = [
    "ENSEMBLE_MODES", "FEATURE_LOSSES", "LOSSES", "RESPONSE_LOSSES", "DistillationLoss", "FeatureCosine",
    "FeatureMSE", "FeatureTaps", "HintMSE", "LogitEnsemble", "ResponseKL", "TaskCE", "TopKKL", "as_feature_map",
    "resolve_modules",
]
