"""torch.export's bookkeeping made cheaper (trainer/common/export_speedups.py) gives torch's own answers."""

from __future__ import annotations

import pytest
import torch

from egoedge.trainer.common import export_speedups
from egoedge.trainer.common.rebind import rebind


def _model() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                                torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    return model, (torch.randn(1, 3, 16, 16),)


def test_cia_ops_are_torchs_and_a_newly_registered_op_is_seen():
    import torch._export.utils as utils
    import torch.export.exported_program as ep

    export_speedups.speed_up_torch_export()
    cached = ep._collect_all_valid_cia_ops
    assert hasattr(cached, "__wrapped__") and utils._collect_all_valid_cia_ops is cached
    assert cached() == cached.__wrapped__()
    assert cached() == cached()  # the second answer comes from the cache

    lib = torch.library.Library("egoedge_speedups_test", "DEF")
    lib.define("twice(Tensor x) -> Tensor")
    lib.impl("twice", lambda x: x * 2, "CompositeImplicitAutograd")
    op = torch.ops.egoedge_speedups_test.twice.default
    assert op in cached() and op in cached.__wrapped__()


def test_rebind_wraps_once_and_binds_where_the_original_is_held():
    """Every module holding the original gets the one wrapper, then modules imported later; others are left alone."""
    import types

    def original(x):
        return x + 1

    def other(x):
        return x

    a, b, elsewhere, later = (types.ModuleType(n) for n in ("a", "b", "elsewhere", "later"))
    a.f = b.f = original
    elsewhere.f = other
    wraps = []

    def wrap(fn):
        wraps.append(fn)
        return lambda x: 2 * fn(x)

    wrapper = rebind("f", [a, b, None, elsewhere], wrap)
    assert a.f is b.f is wrapper and wrapper.__wrapped__ is original and elsewhere.f is other
    assert a.f(1) == 4
    later.f = original
    assert rebind("f", [a, b, later], wrap) is wrapper and later.f is wrapper and wraps == [original]
    assert rebind("f", [None, a], wrap) is None and rebind("g", [a], wrap) is None


def test_rebind_wraps_a_classmethod_once_and_a_function_that_functools_wrapped():
    """A classmethod is wrapped once and bound as one; another decorator's ``__wrapped__`` is no mark of ours."""
    import functools
    import types

    class Registry:
        @classmethod
        def build(cls, n=1):
            return (cls.__name__, n)

    class Child(Registry):
        pass

    wraps = []

    def wrap(fn):
        wraps.append(fn)
        return lambda cls, n=1: ("wrapped", *fn(cls, n))

    wrapper = rebind("build", [Registry], wrap)
    assert isinstance(wrapper, classmethod) and Registry.__dict__["build"] is wrapper
    assert Registry.build(2) == ("wrapped", "Registry", 2) and Child.build() == ("wrapped", "Child", 1)
    assert rebind("build", [Registry], wrap) is wrapper and len(wraps) == 1

    @functools.wraps(len)
    def decorated(x):
        return len(x)

    module = types.ModuleType("m")
    module.f = decorated
    assert rebind("f", [module], lambda fn: lambda x: fn(x) + 1) is module.f and module.f("ab") == 3


def _provenance(node_sources: list) -> list:
    """A node's history without the ids of graphs that no longer exist (they differ between two exports)."""
    def strip(d: dict) -> dict:
        return {k: ([strip(x) for x in v] if k == "from_node" else v) for k, v in d.items() if k != "graph_id"}
    return [strip(s.to_dict()) for s in node_sources]


def _lowered(model, example) -> tuple[bytes, dict]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(model, example, strict=False).run_decompositions()
    history = {n.name: _provenance(n.meta["from_node"]) for n in program.graph.nodes if "from_node" in n.meta}
    pte = to_edge_transform_and_lower(torch.export.export(model, example, strict=False),
                                      partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    return pte, history


@pytest.mark.slow
def test_lowering_and_node_histories_are_the_same_with_and_without(monkeypatch):
    from torch.fx.traceback import NodeSource

    model, example = _model()
    export_speedups.speed_up_torch_export()
    fast = _lowered(model, example)
    monkeypatch.setattr(NodeSource, "__init__", NodeSource.__init__.__wrapped__)
    for name in export_speedups._USERS:
        module = __import__(name, fromlist=["_"])
        monkeypatch.setattr(module, export_speedups._NAME, getattr(module, export_speedups._NAME).__wrapped__)
    slow = _lowered(model, example)
    assert fast[1] and fast[1] == slow[1]  # every node's history, record by record
    assert fast[0] == slow[0]  # the same .pte, byte for byte


def _onnx_bytes(model, example, tmp_path) -> bytes:
    import contextlib
    import io

    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, example, path, dynamo=True, external_data=False, verbose=False)
    return path.read_bytes()


@pytest.mark.slow
def test_the_onnx_registry_is_built_once_per_op_set_and_each_export_gets_its_own(monkeypatch, tmp_path):
    """torch.onnx's registry: torch's own, built again only when an op is registered, a copy per call, the same file."""
    from torch.onnx._internal.exporter import _registration

    lookups = []
    get_overload = _registration._get_overload
    monkeypatch.setattr(_registration, "_get_overload", lambda name: lookups.append(name) or get_overload(name))
    export_speedups.speed_up_onnx_export()
    export_speedups.speed_up_onnx_export()  # idempotent: one wrapper
    build = _registration.ONNXRegistry.from_torchlib
    assert hasattr(build.__func__, "__wrapped__") and not hasattr(build.__func__.__wrapped__, "__wrapped__")
    own = build.__func__.__wrapped__(_registration.ONNXRegistry)
    first = build()
    assert first.opset_version == own.opset_version and first.functions.keys() == own.functions.keys()
    assert all([m.onnx_function for m in first.functions[t]] == [m.onnx_function for m in own.functions[t]]
               for t in own.functions)
    first.functions.clear()  # the exporter's own copy: the next call does not see this
    lookups.clear()
    assert build().functions.keys() == own.functions.keys() and not lookups  # from the cache
    assert build(own.opset_version).opset_version == own.opset_version and not lookups  # the default named: one key

    lib = torch.library.Library("egoedge_registry_test", "DEF")
    lib.define("twice(Tensor x) -> Tensor")
    assert build().functions.keys() == own.functions.keys() and lookups  # a new op: built again

    model, example = _model()
    fast = _onnx_bytes(model, example, tmp_path)
    monkeypatch.setattr(_registration.ONNXRegistry, "from_torchlib", classmethod(build.__func__.__wrapped__))
    assert fast == _onnx_bytes(model, example, tmp_path)  # the same file, byte for byte


def test_a_torch_whose_onnx_registry_is_built_otherwise_is_left_as_it_is(monkeypatch):
    from torch.onnx._internal.exporter import _registration

    def plain(cls=None):
        return "torch's own"

    monkeypatch.setattr(_registration.ONNXRegistry, "from_torchlib", staticmethod(plain))
    export_speedups.speed_up_onnx_export()
    assert _registration.ONNXRegistry.from_torchlib() == "torch's own"
