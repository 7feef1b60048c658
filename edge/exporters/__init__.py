"""Exporters, one module per backend; importing this package registers all of them.

SDKs are imported inside the exporter methods, so ``import edge`` stays fast and a missing
SDK fails only when its backend is used.
"""

import importlib
import pkgutil

from edge.exporters.base import Exporter, ExportError, Session, export_ready
from edge.exporters.registry import EXPORTERS

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["EXPORTERS", "ExportError", "Exporter", "Session", "export_ready"]
