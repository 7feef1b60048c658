"""Runners, one module per format; importing this package registers all of them."""

from bench.runners.base import Runner
from bench.runners.registry import RUNNERS
from trainer.common.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["RUNNERS", "Runner"]
