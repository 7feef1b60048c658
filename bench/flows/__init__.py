"""``egoedge run``'s whole-run flows: importing this package registers the flow module of every task."""

from pathlib import Path

from bench.flows.base import RunRequest, RunResult
from bench.flows.registry import FLOWS
from trainer.common.registry import import_submodules

import_submodules(__name__, [str(Path(__file__).parent)], skip=("base", "registry", "common"))

__all__ = ["FLOWS", "RunRequest", "RunResult"]
