"""``package.module:factory`` or ``file.py:factory``: a callable that returns an ``nn.Module``."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from torch import nn

from egoedge.edge.sources.base import ModelSource
from egoedge.edge.sources.registry import MODEL_SOURCES
from egoedge.trainer.common.io import EgoedgeError, first_line

_SPEC = re.compile(r"^(?P<module>[\w.]+|[^:]+\.py):(?P<factory>[A-Za-z_]\w*)$")


def import_module(module: str):
    """A dotted module (from ``sys.path`` and the working folder) or a ``.py`` file; failure names the module."""
    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # a module in the folder the command runs from, as python -m does
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - ImportError, a SyntaxError inside it, anything its import runs
        raise EgoedgeError(f"cannot import module '{module}': {type(e).__name__}: {first_line(e)[:200]}") from None


class FactorySource(ModelSource):
    name = "factory"
    example = "mypkg.models:build_model"

    def matches(self, spec: str) -> bool:
        return bool(_SPEC.match(spec)) and not spec.startswith(("timm:", "hf:"))

    def load(self, spec: str, weights: str | None) -> nn.Module:
        from egoedge.trainer.models.weights import load_weights, read_weights

        m = _SPEC.match(spec)
        mod = import_module(m["module"])
        factory = getattr(mod, m["factory"], None)
        if not callable(factory):
            raise EgoedgeError(f"module '{m['module']}' has no callable '{m['factory']}'")
        try:
            model = factory()
        except Exception as e:  # noqa: BLE001 - the user's code
            raise EgoedgeError(f"{spec}() failed: {type(e).__name__}: {first_line(e)[:200]}") from None
        if not isinstance(model, nn.Module):
            raise EgoedgeError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
        if weights is not None:
            load_weights(model, read_weights(weights), f"--weights {weights} for {spec}")
        return model

    def stem(self, spec: str) -> str:
        return _SPEC.match(spec)["factory"]


MODEL_SOURCES.register("factory")(FactorySource())
