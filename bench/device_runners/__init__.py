"""Benchmarks on phones: one backend per device kind; importing this package registers all of them."""

from egoedge.bench.device_runners.registry import BACKENDS
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["BACKENDS"]
