"""Tasks, the second axis beside the backend: importing this package registers every task module in it."""

from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import import_submodules
from egoedge.trainer.tasks.base import Evaluation, GateDefaults, Task, checkpoint_task_name
from egoedge.trainer.tasks.registry import TASKS

import_submodules(__name__, [str(Path(__file__).parent)])


def task_named(name: str | None, where: str = "the file") -> Task:
    """A registered task by name; ``None`` (reports and manifests written before tasks were recorded) is
    ``recognition``. An unknown name is one clear error."""
    name = name or "recognition"
    if name not in TASKS:
        raise EgoedgeError(f"{where} is for task '{name}', which is not registered; valid: {', '.join(TASKS.keys())}")
    return TASKS.get(name)


def task_of(ckpt: dict) -> Task:
    """The registered task a checkpoint records; an unknown one is one clear error."""
    return task_named(checkpoint_task_name(ckpt), "the checkpoint")


__all__ = ["TASKS", "Evaluation", "GateDefaults", "Task", "checkpoint_task_name", "task_named", "task_of"]
