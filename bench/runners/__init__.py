"""Runners, one module per format; importing this package registers all of them."""

from egoedge.bench.runners.base import Runner
from egoedge.bench.runners.registry import RUNNERS
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["RUNNERS", "Runner"]
