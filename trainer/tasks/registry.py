"""The task registry: recognition, anticipation, nlq, each one module of this package."""

from egoedge.trainer.common.registry import Registry

TASKS: Registry = Registry("task")
