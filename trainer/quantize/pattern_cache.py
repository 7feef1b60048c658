"""Trace each of the quantizers' small match patterns once per process instead of on every use.

The PT2E quantizers (XNNPACK's conv+batch-norm annotators, torchao's dropout and batch-norm
eval rewrites, LiteRT's) build their match patterns by running ``torch.export`` on a tiny
function every time they annotate or convert a graph: about 20 traces per quantization, the
largest single cost of a gate search. A pattern depends only on its code, its closure and the
shapes of its example inputs, so the traced graph is kept and a copy handed out.
"""

from __future__ import annotations

import copy
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from egoedge.trainer.common.rebind import rebind

_NAME = "_get_aten_graph_module_for_pattern"
# Modules that call the tracer through a name bound at their import (patched only once imported).
_USERS = (
    "torchao.quantization.pt2e.utils",
    "torchao.quantization.pt2e.qat_utils",
    "torchao.quantization.pt2e.reference_representation_rewrite",
    "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils",
    "executorch.backends.apple.coreml.quantizer._coreml_quantizer_utils",
    "litert_torch.quantize.pt2e_quantizer_utils",
)


def _function_key(fn: Any, depth: int = 0) -> Any:
    if isinstance(fn, torch.nn.Module) and hasattr(fn, "fn"):  # torchao's WrapperModule
        fn = fn.fn
    if not isinstance(fn, types.FunctionType) or depth > 3:
        hash(fn)  # a value that cannot be a key raises TypeError: that pattern is traced uncached
        return fn
    cells = tuple(_function_key(c.cell_contents, depth + 1) for c in fn.__closure__ or ())
    return fn.__code__, cells, fn.__defaults__


def _input_key(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return "tensor", tuple(value.shape), value.dtype, value.device.type
    hash(value)
    return value


def pattern_key(pattern: Callable, example_inputs: tuple, kwargs: dict) -> Any:
    """What a traced pattern depends on; raises ``TypeError`` when part of it cannot be a key."""
    return (_function_key(pattern), tuple(_input_key(x) for x in example_inputs),
            tuple(sorted((k, _input_key(v)) for k, v in kwargs.items())))


def _cached(trace: Callable) -> Callable:
    graphs: dict = {}

    def traced_once(pattern, example_inputs, *args, **kwargs):
        try:
            key = pattern_key(pattern, example_inputs, {"args": args, **kwargs})
        except TypeError:
            return trace(pattern, example_inputs, *args, **kwargs)
        if key not in graphs:
            graphs[key] = trace(pattern, example_inputs, *args, **kwargs)
        return copy.deepcopy(graphs[key])  # matchers and rewriters may edit the graph they are given

    return traced_once


def memoize_pattern_tracing() -> None:
    """Route every imported quantizer module's pattern tracer through one per-process cache."""
    rebind(_NAME, [sys.modules.get(name) for name in _USERS], _cached)
