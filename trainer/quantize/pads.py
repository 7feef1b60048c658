"""Zero padding in front of a convolution, kept out of float in int8 programs.

TF-style "same" padding (EfficientNet, many converted mobile nets) is an explicit pad before each
convolution. fp32 runtimes fold it into the convolution; in an int8 graph the quantizer puts a
quantize/dequantize pair between pad and convolution and leaves the pad unannotated, so it ran as a
float island with a conversion on each side (on ExecuTorch's XNNPACK delegate: a float pad and two
converts per layer). Before annotation, a pad that is symmetric becomes the convolution's own
padding (every runtime); one that is not (stride-2 "same" padding) shares its input's quantization.
"""

from __future__ import annotations

import torch

PADS = (torch.ops.aten.constant_pad_nd.default, torch.ops.aten.pad.default)
# Spatial dimensions of each convolution whose padding a zero pad can join.
CONVS = {torch.ops.aten.conv1d.default: 1, torch.ops.aten.conv2d.default: 2}


def zero_pad(node: torch.fx.Node) -> list[int] | None:
    """The amounts of a constant zero pad node (F.pad order: last dimension first), else None."""
    if node.op != "call_function" or node.target not in PADS or not isinstance(node.args[0], torch.fx.Node):
        return None
    if node.target == torch.ops.aten.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
        if mode != "constant":
            return None
    else:
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
    amounts = [int(a) for a in node.args[1]]
    return amounts if (value or 0) == 0 and all(a >= 0 for a in amounts) else None


def _spatial(amounts: list[int], dims: int) -> list[tuple[int, int]] | None:
    """(before, after) per spatial dimension, first dimension first; None when the pad reaches batch or channels."""
    if len(amounts) > 2 * dims:
        return None
    amounts = amounts + [0] * (2 * dims - len(amounts))
    return [(amounts[2 * i], amounts[2 * i + 1]) for i in reversed(range(dims))]


def _padding(conv: torch.fx.Node, dims: int) -> list[int] | None:
    """A convolution's own padding per spatial dimension, or None when it is not a plain list ("same", "valid")."""
    padding = conv.args[4] if len(conv.args) > 4 else conv.kwargs.get("padding", 0)
    if isinstance(padding, int):
        return [padding] * dims
    if isinstance(padding, (list, tuple)) and all(isinstance(p, int) for p in padding):
        return list(padding) * dims if len(padding) == 1 else list(padding)
    return None


def _conv_reads(pad: torch.fx.Node) -> list[tuple[torch.fx.Node, int]] | None:
    """The convolutions that read ``pad`` as their input, with their spatial rank; None if anything else reads it."""
    convs = [(user, CONVS.get(user.target)) for user in pad.users]
    if not convs or any(dims is None or user.args[0] is not pad for user, dims in convs):
        return None
    return convs


def _set_padding(conv: torch.fx.Node, padding: list[int]) -> None:
    """Give ``conv`` this padding, its arguments spelled out in full (``aten.conv2d`` defaults the rest)."""
    dims = len(padding)
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    defaults = (None, None, None, [1] * dims, [0] * dims, [1] * dims, 1)
    args = [conv.args[i] if i < len(conv.args) else conv.kwargs.get(name, default)
            for i, (name, default) in enumerate(zip(names, defaults, strict=True))]
    args[4] = padding
    conv.args, conv.kwargs = tuple(args), {}


def fold_symmetric_pads(graph: torch.fx.GraphModule) -> int:
    """Move each zero pad that is the same on both sides of every spatial dimension into the padding of the
    convolutions that read it, in place (the same sums); returns how many pads were removed."""
    folded = 0
    for pad in list(graph.graph.nodes):
        amounts = zero_pad(pad)
        convs = _conv_reads(pad) if amounts is not None else None
        if convs is None:
            continue
        plans = []
        for conv, dims in convs:
            sides, own = _spatial(amounts, dims), _padding(conv, dims)
            if sides is None or own is None or any(before != after for before, after in sides):
                break
            plans.append((conv, [p + before for p, (before, _) in zip(own, sides, strict=True)]))
        else:
            for conv, padding in plans:
                _set_padding(conv, padding)
                conv.replace_input_with(pad, pad.args[0])
            graph.graph.erase_node(pad)
            folded += 1
    if folded:
        graph.recompile()
    return folded


def share_pad_quantization(graph: torch.fx.GraphModule) -> int:
    """Give each remaining zero pad that feeds int8 convolutions its input's quantization, in place; returns how
    many.

    The pads left are asymmetric (stride-2 "same" padding). Unannotated, each is a float island; with
    one scale on both sides the pad is exact in int8 (zero is the zero point), LiteRT converts it to an
    int8 PAD, and ExecuTorch can drop the requantize after it (:func:`egoedge.edge.delegate_rewrites`)
    so that XNNPACK pads inside the int8 convolution.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    shared = 0
    for pad in graph.graph.nodes:
        if zero_pad(pad) is None or pad.meta.get("quantization_annotation") is not None:
            continue
        source, note = pad.args[0], pad.args[0].meta.get("quantization_annotation")
        readers = _conv_reads(pad)  # a pad anywhere else (a mask's) stays as the quantizer left it
        if note is None or note.output_qspec is None or readers is None or not all(
                pad in getattr(conv.meta.get("quantization_annotation"), "input_qspec_map", ()) for conv, _ in readers):
            continue
        pad.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={source: SharedQuantizationSpec(source)},
            output_qspec=SharedQuantizationSpec((source, pad)), _annotated=True)
        shared += 1
    return shared
