"""The data-source registry: ``synthetic``, ``folder``, ``epic100``, ``ego4d``, each one module of this package."""

from egoedge.trainer.common.registry import Registry

DATA_SOURCES: Registry = Registry("data source")
