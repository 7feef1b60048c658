"""The pipelines of ``egoedge run``, one per kind of flow (``clips``, ``nlq``), each registered by the module that
runs it; a task names its flow (``Task.flow``), so a new clip task runs through ``clips`` unchanged."""

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import Registry
from egoedge.trainer.tasks import TASKS

PIPELINES: Registry = Registry("run pipeline")


def pipeline_for(task: str):
    """The :class:`~egoedge.pipeline.base.Pipeline` that trains models of ``task``."""
    flow = TASKS.get(task).flow
    if flow is None:
        raise EgoedgeError(f"egoedge does not train --task {task} models (export one with egoedge export)")
    return PIPELINES.get(flow)
