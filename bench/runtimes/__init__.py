"""Host runtimes, one module per backend (and PyTorch eager); importing this package registers all of them."""

from egoedge.bench.runtimes.base import HostRuntime
from egoedge.bench.runtimes.registry import RUNTIMES
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["RUNTIMES", "HostRuntime"]
