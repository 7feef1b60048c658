"""The pipelines of ``egoedge run``, one per task, each registered by the module that runs it."""

from egoedge.trainer.common.registry import Registry

PIPELINES: Registry = Registry("run pipeline")
