"""The model registry: every teacher and student is built by name from here."""

from egoedge.trainer.common.registry import Registry

MODELS: Registry = Registry("model")
