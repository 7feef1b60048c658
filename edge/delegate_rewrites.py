"""Rewrite an exported graph so that one XNNPACK delegate takes all of it: same maths, ops XNNPACK has.

ExecuTorch's XNNPACK partitioner cuts a graph at every op it has no kernel for: a delegate call
ends, a portable kernel runs, another call starts, and tensors are copied across each cut. What
cuts transformer-style students (MobileViT's blocks, every student's temporal pool):

- ``layer_norm``: XNNPACK has no layer norm. Written as means (a fully connected layer with one
  output, weights 1/D), a subtraction, ``rsqrt`` and an affine multiply-add.
- ``matmul`` of 4-D tensors: decomposes into identity ``expand`` copies around a ``bmm``. Written
  as a ``bmm`` on 3-D views.
- ``unbind`` / ``select`` (``q, k, v = qkv.unbind(0)``, ``x[:, 0]``): become ``squeeze`` / ``select``
  copies. Written as slices and reshapes.
- identity ``expand``, ``alias`` and inference ``dropout``: removed.
- in an int8 program, the quantize/dequantize pair after a zero pad that shares its input's scale
  (:func:`egoedge.trainer.quantize.pads.share_pad_quantization`): removed, so that the partitioner
  sees ``dequantize -> pad -> convolution`` and XNNPACK pads inside the int8 convolution; left in,
  the pad runs in float with a conversion on each side (EfficientNet's stride-2 "same" padding).

And one mend of ExecuTorch's own lowering (:func:`float_pads_stay_float`): a zero pad that a convolution kept
float reads stays float.

Each rewrite is a plain Python function put in place of the ATen op on the graph of
``torch.export.export(...).module()``; exporting that module again traces the functions into ops
the delegate takes. Quantize/dequantize nodes are left where they are, so a PT2E int8 program keeps
its quantization and its float islands (layer norms stay float, as XNNPACK's quantizer leaves them).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import torch

from egoedge.trainer.quantize.gap import is_dequantize, is_quantize
from egoedge.trainer.quantize.pads import CONVS, zero_pad

aten = torch.ops.aten


def _mean_last(x: torch.Tensor, averager: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis as a fully connected layer with one output and weights 1/D.

    A mean over the last axis is no XNNPACK op; a global average pooling over a 4-D view is, but
    it needs NHWC, and the layout changes around it cost two transposes per mean.
    """
    return torch.nn.functional.linear(x, averager)


def layer_norm(x, averager, normalized_shape, weight=None, bias=None, eps: float = 1e-5, cudnn_enable: bool = True):
    centred = x - _mean_last(x, averager)
    y = centred * torch.rsqrt(_mean_last(centred * centred, averager) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def matmul(a, b):
    if a.dim() != b.dim() or a.dim() < 3 or a.shape[:-2] != b.shape[:-2]:
        return aten.matmul.default(a, b)  # broadcasting or 2-D: the default lowering is already plain
    lead = a.shape[:-2]
    out = torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.reshape(*lead, *out.shape[-2:])


def _take(x, dim: int, index: int):
    dim = dim % x.dim()
    shape = x.shape[:dim] + x.shape[dim + 1:]
    return aten.slice.Tensor(x, dim, index, index + 1).reshape(shape)


def unbind(x, dim: int = 0):
    return tuple(_take(x, dim, i) for i in range(x.shape[dim]))


def select(x, dim: int, index: int):
    return _take(x, dim, index % x.shape[dim % x.dim()])


def expand(x, size, implicit: bool = False):
    if list(x.shape) == [x.shape[i] if s == -1 else s for i, s in enumerate(size)] and len(size) == x.dim():
        return x
    return aten.expand.default(x, size, implicit=implicit)


def dropout(x, p: float, train: bool):
    return aten.dropout.default(x, p, train) if train else x


def alias(x):
    return x


REWRITES = {
    aten.matmul.default: matmul,
    aten.unbind.int: unbind,
    aten.select.int: select,
    aten.expand.default: expand,
    aten.dropout.default: dropout,
    aten.alias.default: alias,
}


def delegate_friendly(program: torch.export.ExportedProgram,
                      example_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.export.ExportedProgram, dict]:
    """``program`` exported again with :data:`REWRITES` in place of their ops; also ``{op: count}`` rewritten.

    Example::

        program, done = delegate_friendly(torch.export.export(model, example), example)
        done  # {'aten.layer_norm.default': 23, 'aten.matmul.default': 20, ...}
    """
    module = program.module()
    done: Counter = Counter()
    for node in list(module.graph.nodes):
        if node.op != "call_function":
            continue
        if _pad_requantize(node):
            done["requantize after a pad"] += 1
            for dq in list(node.users):
                dq.replace_all_uses_with(node.args[0])
                module.graph.erase_node(dq)
            module.graph.erase_node(node)
        elif node.target == aten.layer_norm.default and len(node.args[1]) == 1:
            done[str(node.target)] += 1
            node.target = layer_norm
            node.args = (node.args[0], _averager(module, node, int(node.args[1][0])), *node.args[1:])
        elif node.target in REWRITES:
            done[str(node.target)] += 1
            node.target = REWRITES[node.target]
    if not done:
        return program, {}
    module.recompile()
    return torch.export.export(module, example_inputs, strict=False), dict(done)


def _pad_requantize(node: torch.fx.Node) -> bool:
    """Whether ``node`` quantizes a zero pad's output with the parameters its input was dequantized with, and
    only convolutions read it back: in int8 the pad is then exact, and the pair a no-op."""
    if not is_quantize(node) or not isinstance(node.args[0], torch.fx.Node):
        return False
    pad, params = node.args[0], tuple(node.args[1:])
    if zero_pad(pad) is None or len(pad.users) != 1 or not node.users:
        return False
    source = pad.args[0]
    return (is_dequantize(source) and tuple(source.args[1:]) == params
            and all(is_dequantize(dq) and tuple(dq.args[1:]) == params
                    and all(c.target in CONVS for c in dq.users) for dq in node.users))


def _averager(module: torch.fx.GraphModule, before: torch.fx.Node, width: int) -> torch.fx.Node:
    """A ``get_attr`` of the module's (1, width) buffer of 1/width, made once per width.

    A buffer, not a tensor made in the rewrite: a constant created while tracing would be lifted
    as a tensor constant, which ExecuTorch cannot pass into a delegate when the graph is split.
    """
    name = f"_egoedge_mean_{width}"
    if not hasattr(module, name):
        module.register_buffer(name, torch.full((1, width), 1.0 / width))
    with module.graph.inserting_before(before):
        return module.graph.get_attr(name)


@contextlib.contextmanager
def float_pads_stay_float() -> Iterator[None]:
    """While lowering to XNNPACK: a zero pad read only by float convolutions is not quantized after it.

    ExecuTorch's ``InsertPadQDQPass`` quantizes the output of every zero pad whose input was dequantized,
    assuming an int8 convolution reads it. A "same"-padded convolution kept float in an int8 program (a
    ``ZeroPad2d`` then the convolution, as EfficientNet's ports write it; ``--int8-keep-float`` or the
    gate's search) then has an int8 input and float weights, and lowering fails with "Weight and Input
    should both be quantized". The pairs that pass put before float readers are taken out again.
    """
    from executorch.backends.xnnpack._passes.insert_pad_qdq import InsertPadQDQPass

    original = InsertPadQDQPass.call

    def call(self, graph_module: torch.fx.GraphModule):
        result = original(self, graph_module)
        if _unquantize_float_pads(graph_module.graph):
            graph_module.recompile()
        return result

    InsertPadQDQPass.call = call
    try:
        yield
    finally:
        InsertPadQDQPass.call = original


def _unquantize_float_pads(graph: torch.fx.Graph) -> int:
    """Remove each quantize/dequantize pair after a zero pad whose readers are all float convolutions; how many."""
    removed = 0
    for q in list(graph.nodes):
        if not (is_quantize(q) and isinstance(q.args[0], torch.fx.Node)
                and "constant_pad_nd" in str(q.args[0].target)):
            continue
        dqs = list(q.users)
        readers = [r for dq in dqs for r in dq.users]
        if not (dqs and readers and all(is_dequantize(dq) for dq in dqs)
                and all("convolution" in str(r.target) and not (isinstance(r.args[1], torch.fx.Node)
                                                               and is_dequantize(r.args[1])) for r in readers)):
            continue
        for dq in dqs:
            dq.replace_all_uses_with(q.args[0])
            graph.erase_node(dq)
        graph.erase_node(q)
        removed += 1
    return removed
