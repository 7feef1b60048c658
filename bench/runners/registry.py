"""The runner registry: how each format is loaded and executed on the host."""

from trainer.common.registry import Registry

RUNNERS: Registry = Registry("runner")
