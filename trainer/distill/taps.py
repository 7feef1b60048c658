"""Capture intermediate activations by module name (for hint distillation and CBKD)."""

from __future__ import annotations

import difflib

import torch
from torch import nn


def resolve_modules(model: nn.Module, names: list[str] | tuple[str, ...]) -> list[nn.Module]:
    """The submodules called ``names``; an unknown name raises listing the closest valid ones."""
    table = dict(model.named_modules())
    found = []
    for name in names:
        if name not in table:
            close = difflib.get_close_matches(name, [n for n in table if n], n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}" if close else ""
            raise KeyError(f"{type(model).__name__} has no module '{name}'{hint}")
        found.append(table[name])
    return found


class FeatureTaps:
    """Records the outputs of named submodules during a forward pass.

    Example::

        with FeatureTaps(student, ["encoder.stages.3"]) as taps:
            logits = student(x)
        (hint,) = taps.outputs
    """

    def __init__(self, model: nn.Module, names: list[str] | tuple[str, ...]) -> None:
        self.names = list(names)
        self.modules = resolve_modules(model, self.names)
        self._values: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> FeatureTaps:
        for i, module in enumerate(self.modules):
            self._handles.append(module.register_forward_hook(self._hook(i)))
        return self

    def _hook(self, i: int):
        def record(module, inputs, output):
            self._values[i] = output[0] if isinstance(output, tuple) else output

        return record

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def outputs(self) -> list[torch.Tensor]:
        """The captured activations, in the order of ``names``; fails if a module did not run."""
        missing = [n for i, n in enumerate(self.names) if i not in self._values]
        if missing:
            raise RuntimeError(f"module(s) {', '.join(missing)} did not run in the forward pass")
        return [self._values[i] for i in range(len(self.names))]

    def clear(self) -> None:
        """Forget the last pass's activations."""
        self._values.clear()
