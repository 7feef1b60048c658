"""Runners, one module per format; importing this package registers all of them."""

import importlib
import pkgutil

from bench.runners.base import Runner
from bench.runners.registry import RUNNERS

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["RUNNERS", "Runner"]
