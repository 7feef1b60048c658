"""``egoedge run``'s whole run per kind of task (its pipeline): importing this package registers every pipeline."""

from pathlib import Path

from egoedge.pipeline.base import CBKDRequest, Pipeline, RunRequest, RunResult
from egoedge.pipeline.registry import PIPELINES, pipeline_for
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, [str(Path(__file__).parent)], skip=("base", "registry", "common"))

__all__ = ["PIPELINES", "CBKDRequest", "Pipeline", "RunRequest", "RunResult", "pipeline_for"]
