"""Exporters, one module per backend; importing this package registers all of them.

SDKs are imported inside the exporter methods, so ``import edge`` stays fast and a missing
SDK fails only when its backend is used.
"""

from egoedge.edge.exporters.base import CLIP_IO, Exporter, ExportError, IONames, Session, export_ready
from egoedge.edge.exporters.registry import EXPORTERS, from_recipe, lowers_program
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["CLIP_IO", "EXPORTERS", "ExportError", "Exporter", "IONames", "Session", "export_ready", "from_recipe",
           "lowers_program"]
