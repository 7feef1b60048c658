"""Make three parts of torch.export's and torch.onnx's bookkeeping cost once per process what they cost on every call.

Every ``run_decompositions`` (each ``.pte``, ``.tflite``, ONNX file and PT2E quantization makes one or
more) asks ``torch._export.utils._collect_all_valid_cia_ops`` for the functional CompositeImplicitAutograd
ops; that function walks every op namespace and re-materializes every CIA op of the C++ dispatcher once
per namespace. The answer only changes when ops are registered, so it is kept per registry state: the
dispatcher's CIA registrations, the namespaces ``torch.ops`` knows and the modules imported.

Every pass that rewrites a node records where it came from (``node.meta["from_node"]``, a list of
``NodeSource``) by deep-copying the node's whole history into the new record, so a node's history costs
the square of the passes it went through. Nothing changes a ``NodeSource`` once made, so the new record
shares the older ones and copies only the list.

Every ``torch.onnx.export`` builds its op registry anew (``ONNXRegistry.from_torchlib``): it compiles the IR of
every torchlib function and looks up each one's torch op, the same answer each time as long as no op is
registered. It is built once per op set and opset, and each call gets its own copy (the exporter adds
custom translations to the one it is handed).
"""

from __future__ import annotations

import inspect
import sys

import torch

from egoedge.trainer.common.rebind import rebind

# Modules that bound the collector's name at their import.
_USERS = ("torch._export.utils", "torch.export.exported_program", "torch.export.decomp_utils")
_NAME = "_collect_all_valid_cia_ops"


def _registry_state() -> tuple:
    # A module imported since may have given an op a Python-only CIA kernel, which the dispatcher's list misses.
    registrations = torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd")
    return len(registrations), tuple(torch.ops._dir), len(sys.modules)


def _collector(utils):
    cache: dict = {}

    def collect_all_valid_cia_ops() -> set:
        state = _registry_state()
        if cache.get("state") != state:
            utils._materialize_cpp_cia_ops()  # once for every namespace below, as each would repeat it
            ops = set(utils._collect_all_valid_cia_ops_for_aten_namespace())
            for name in list(torch.ops._dir):
                namespace = getattr(torch.ops, name)
                if name != "aten" and isinstance(namespace, torch._ops._OpNamespace):
                    for op in namespace:
                        for overload in getattr(namespace, op).op_overloads():
                            if utils._is_preservable_cia_op(overload):
                                ops.add(overload)
            # Read again: materializing the ops above adds their namespaces to torch.ops.
            cache.update(state=_registry_state(), ops=frozenset(ops))
        return set(cache["ops"])

    return collect_all_valid_cia_ops


def _sharing_history(init):
    def node_source_init(self, node=None, pass_name: str = "", action=None) -> None:
        history = node.meta.get("from_node") if node is not None and node.meta else None
        if not history:
            init(self, node, pass_name, action)
            return
        node.meta["from_node"] = []  # the original deep-copies what it finds here
        try:
            init(self, node, pass_name, action)
        finally:
            node.meta["from_node"] = history
        self.from_node = list(history)

    return node_source_init


def _op_names() -> frozenset:
    # The registry maps torchlib functions to the torch ops that exist now: a newly registered op changes it.
    return frozenset(torch._C._dispatch_get_all_op_names())


def _default_opset(build) -> int | None:
    parameter = inspect.signature(build).parameters.get("opset_version")
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _registry_once(build):
    cache: dict = {}
    default = _default_opset(build)  # one key whether a caller names torch's default opset or leaves it out

    def from_torchlib(cls, opset_version=None):
        opset = default if opset_version is None else opset_version
        key = (cls, opset, _op_names())
        if cache.get("key") != key:
            cache.update(key=key, made=build(cls, opset))
        made = cache["made"]
        registry = cls()
        registry._opset_version = made._opset_version
        registry.functions = {target: list(decomps) for target, decomps in made.functions.items()}
        return registry

    return from_torchlib


def speed_up_onnx_export() -> None:
    """Build torch.onnx's op registry once per op set and opset, a copy per export (idempotent)."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:  # another torch: its exporter as it is
        return
    registry = _registration.ONNXRegistry
    built = registry.__dict__.get("from_torchlib")
    if not isinstance(built, classmethod) or _default_opset(built.__func__) is None:
        return  # another torch: its exporter as it is
    rebind("from_torchlib", [registry], _registry_once)


def speed_up_torch_export() -> None:
    """Route torch.export's CIA-op collection through a cache and let node histories share records (idempotent)."""
    import torch._export.utils as utils
    import torch.export.decomp_utils  # noqa: F401  (binds the name patched below)
    import torch.export.exported_program  # noqa: F401
    from torch.fx.traceback import NodeSource

    rebind(_NAME, [sys.modules[name] for name in _USERS], lambda _original: _collector(utils))
    rebind("__init__", [NodeSource], _sharing_history)
