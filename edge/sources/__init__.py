"""Model sources for ``egoedge export MODEL``: importing this package registers every module in it."""

from pathlib import Path

from egoedge.edge.sources.base import ModelSource
from egoedge.edge.sources.registry import MODEL_SOURCES
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import import_submodules

import_submodules(__name__, [str(Path(__file__).parent)])


def source_of(spec: str) -> ModelSource:
    """The registered source that takes ``spec``; none is one line listing what MODEL may be."""
    for name in MODEL_SOURCES:
        source = MODEL_SOURCES.get(name)
        if source.matches(spec):
            return source
    kinds = "; ".join(f"{n} ({MODEL_SOURCES.get(n).example})" for n in MODEL_SOURCES)
    raise EgoedgeError(f"MODEL '{spec}' is none of: {kinds}")


__all__ = ["MODEL_SOURCES", "ModelSource", "source_of"]
