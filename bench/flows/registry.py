"""The whole-run flows of ``egoedge run``, one per task, each registered by the module that runs it."""

from trainer.common.registry import Registry

FLOWS: Registry = Registry("run flow")
