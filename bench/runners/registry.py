"""The runner registry: how each format is loaded and executed on the host."""

from egoedge.trainer.common.registry import Registry

RUNNERS: Registry = Registry("runner")
