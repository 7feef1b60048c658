"""The per-layer numeric gap of an int8 PT2E program: each layer's int8 output against the float program's.

The float reference is the same model exported the same way, with batch norm folded as PT2E folds
it, so its nodes carry the int8 program's names and compute the same function in float. Both run
on the same samples; each layer (a conv, linear or matmul with the activation that follows it) is
compared where the next layer reads it: after its output's quantize/dequantize pair. A row says
how far the layer's output is from float (SQNR in dB, max |d|) and how much of that the layer adds
itself (``lost_db``: its output's noise-to-signal ratio over its input's, in dB): a deep layer
inherits the error of everything before it, and the layer that adds the most is the one worth
keeping in float.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from egoedge.trainer.quantize.pt2e import export_for_calibration

LAYER_OPS = ("conv1d", "conv2d", "conv3d", "convolution", "conv_transpose", "linear", "matmul", "bmm", "addmm",
             "baddbmm", "mm")
# Ops a runtime fuses into the layer before it (its output quantized after them).
FUSED_AFTER = ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "clamp", "hardswish", "hardswish_", "silu",
               "silu_", "gelu", "sigmoid")
# Ops that only move or reshape values: their output shares the quantization of their input.
MOVES = ("reshape", "view", "_unsafe_view", "permute", "transpose", "flatten", "squeeze", "unsqueeze", "expand",
         "clone", "contiguous", "slice", "select", "pad", "constant_pad_nd", "cat", "split", "chunk", "unbind",
         "getitem", "dropout", "alias", "t", "unflatten", "sym_size")
FLOOR = 1e-6  # noise-to-signal ratio floor (-60 dB): an exact match still ranks


def op_name(node: torch.fx.Node) -> str:
    """``aten.conv2d.default`` -> ``conv2d``."""
    target = getattr(node.target, "__name__", str(node.target))
    return target.split(".")[0]


def is_dequantize(node: torch.fx.Node) -> bool:
    """A dequantize op of a PT2E program (per tensor or per channel)."""
    return node.op == "call_function" and "dequantize" in str(node.target)


def is_quantize(node: torch.fx.Node) -> bool:
    """A quantize op of a PT2E program (per tensor or per channel)."""
    return node.op == "call_function" and "quantize" in str(node.target) and not is_dequantize(node)


def is_layer(node: torch.fx.Node) -> bool:
    """A node that does a layer's multiply-accumulates (conv, linear, matmul)."""
    return node.op == "call_function" and not is_quantize(node) and not is_dequantize(node) and \
        op_name(node) in LAYER_OPS


def is_quantization_point(node: torch.fx.Node) -> bool:
    """A computing op (not a layer, not a move) whose output the int8 program quantizes: a norm, an add, a pool."""
    return (node.op == "call_function" and not is_quantize(node) and not is_dequantize(node)
            and op_name(node) not in MOVES and any(is_quantize(u) for u in node.users))


def layer_path(node: torch.fx.Node) -> str:
    """The innermost module the node was traced in (``""``: the model's own forward)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _read_point(node: torch.fx.Node) -> tuple[str, str]:
    """Where the next layer reads ``node``'s result: (the float node's name, the int8 program's node's name).

    Follows the single-user chain of fused activations, then the output's quantize -> dequantize pair.
    """
    end = node
    while len(end.users) == 1:
        (user,) = end.users
        if user.op != "call_function" or op_name(user) not in FUSED_AFTER:
            break
        end = user
    seen = end
    if len(end.users) == 1 and is_quantize(next(iter(end.users))):
        q = next(iter(end.users))
        seen = next((u for u in q.users if is_dequantize(u)), end)
    return end.name, seen.name


def _input_point(node: torch.fx.Node) -> tuple[str, str] | None:
    """The layer's activation input: (float node's name, int8 program's node's name)."""
    if not node.args or not isinstance(node.args[0], torch.fx.Node):
        return None
    arg = node.args[0]
    if is_dequantize(arg) and arg.args and isinstance(arg.args[0], torch.fx.Node) and is_quantize(arg.args[0]):
        source = arg.args[0].args[0]
        return (source.name, arg.name) if isinstance(source, torch.fx.Node) else None
    return arg.name, arg.name


def _is_int8(node: torch.fx.Node) -> bool:
    """Whether the op computes on int8 operands, i.e. was not kept float.

    A layer is int8 when both its operands (input and weights, or a product's two inputs) are dequantized: a
    layer kept float between int8 layers still reads its neighbour's dequantized output. Another op (an add, a
    pool) is int8 when it reads any dequantized operand.
    """
    if is_layer(node):
        first = 1 if op_name(node) in ("addmm", "baddbmm") else 0  # their first operand is the added term
        operands = [a for a in node.args[first:first + 2] if isinstance(a, torch.fx.Node)]
        return len(operands) == 2 and all(is_dequantize(a) for a in operands)
    return any(is_dequantize(a) for a in node.all_input_nodes)


class _Capture(torch.fx.Interpreter):
    def __init__(self, graph: torch.fx.GraphModule, names: set[str]) -> None:
        super().__init__(graph)
        self.names, self.values = names, {}

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        if n.name in self.names and isinstance(out, torch.Tensor):
            # A copy: an in-place op later in the graph (timm's ``silu_``) would overwrite the tensor itself.
            self.values[n.name] = out.detach().clone().float()
        return out


class Stat:
    """Running sums of one compared tensor: signal power, error power, largest |difference|."""

    def __init__(self) -> None:
        self.signal = self.noise = self.max_abs = 0.0

    def add(self, ref: torch.Tensor, got: torch.Tensor) -> None:
        diff = got - ref
        self.signal += float((ref * ref).sum())
        self.noise += float((diff * diff).sum())
        self.max_abs = max(self.max_abs, float(diff.abs().max()) if diff.numel() else 0.0)

    def nsr(self) -> float:
        return self.noise / self.signal if self.signal > 0 else (0.0 if self.noise == 0 else math.inf)

    def sqnr_db(self) -> float | None:
        """``None`` when int8 equals float exactly."""
        nsr = self.nsr()
        return None if nsr == 0 else round(-10.0 * math.log10(nsr), 2) if math.isfinite(nsr) else -999.0


def lost_db(out: Stat, inp: Stat | None) -> float:
    """How many dB of SQNR the layer itself loses: its output's noise-to-signal ratio over its input's."""
    before = inp.nsr() if inp is not None else 0.0
    return round(10.0 * math.log10((out.nsr() + FLOOR) / (before + FLOOR)), 2)


def gap_row(node: str, layer: str, op: str, int8: bool, out: Stat, inp: Stat | None) -> dict:
    """One row of a gap table: a layer's output against float (``out``) and its input's (``inp``, if measured)."""
    return {"node": node, "layer": layer, "op": op, "int8": int8, "sqnr_db": out.sqnr_db(),
            "input_sqnr_db": inp.sqnr_db() if inp is not None else None, "lost_db": lost_db(out, inp),
            "max_abs": float(f"{out.max_abs:.4g}"), "read_by": []}


def program_gap(reference: torch.fx.GraphModule, program: torch.fx.GraphModule,
                samples: Sequence[tuple[torch.Tensor, ...]], batch: int = 4) -> list[dict]:
    """Each layer of ``program`` (and each other op it quantizes the output of) in program order, compared with
    ``reference`` on ``samples``.

    Rows: ``{"node", "layer", "op", "int8", "sqnr_db", "input_sqnr_db", "lost_db", "max_abs", "read_by"}``;
    ``sqnr_db`` is ``None`` where int8 equals float; ``read_by`` names the layers whose input is this
    row's output (a loss in quantizing that output is theirs to avoid). Samples run ``batch`` at a time when both
    graphs take a batch, else one by one.

    Example: ``min(program_gap(ref, q, calib), key=lambda r: r["sqnr_db"] or 1e9)["layer"]``.
    """
    known = {n.name for n in reference.graph.nodes}
    nodes = {n.name: n for n in program.graph.nodes}

    def in_reference(name: str) -> str | None:
        """The name itself, or its nearest producer the float program has (export drops no-ops such as dropout)."""
        while name not in known:
            args = nodes[name].args if name in nodes else ()
            if not args or not isinstance(args[0], torch.fx.Node):
                return None
            name = args[0].name
        return name

    layers, covered = [], set()
    for node in program.graph.nodes:
        if node.name in covered or not (is_layer(node) or is_quantization_point(node)):
            continue
        out, inp = _read_point(node), _input_point(node)
        if inp is not None:
            inp = (in_reference(inp[0]), inp[1])
        covered.add(out[0])
        if out[0] not in known or (inp is not None and inp[0] not in known):
            continue  # a node the float program does not have (should not happen: same export)
        layers.append((node, out, inp))
    want_ref = {p[0] for _, out, inp in layers for p in (out, inp) if p is not None}
    want_q = {p[1] for _, out, inp in layers for p in (out, inp) if p is not None}
    stats = {node.name: (Stat(), Stat() if inp is not None else None) for node, _, inp in layers}
    for group in _groups(samples, batch, reference, program):
        ref, got = _Capture(reference, want_ref), _Capture(program, want_q)
        with torch.no_grad():
            ref.run(*group)
            got.run(*group)
        for node, out, inp in layers:
            s_out, s_in = stats[node.name]
            s_out.add(ref.values[out[0]], got.values[out[1]])
            if s_in is not None:
                s_in.add(ref.values[inp[0]], got.values[inp[1]])
    rows, by_output = [], {}
    for node, out, inp in layers:
        s_out, s_in = stats[node.name]
        row = gap_row(node.name, layer_path(node), op_name(node), _is_int8(node), s_out, s_in)
        if inp is not None and inp[0] in by_output:
            by_output[inp[0]]["read_by"].append(row["layer"])
        by_output[out[0]] = row
        rows.append(row)
    return rows


def _groups(samples: Sequence[tuple[torch.Tensor, ...]], batch: int, *graphs: torch.fx.GraphModule):
    """The samples in groups of ``batch`` when every graph runs a batch, else one at a time."""
    if batch > 1 and len(samples) > 1:
        first = tuple(torch.cat(parts) for parts in zip(*samples[:2], strict=True))
        try:
            with torch.no_grad():
                for g in graphs:
                    g(*first)
        except Exception:  # noqa: BLE001  (a graph traced for batch 1 refuses a batch)
            batch = 1
    else:
        batch = 1
    for i in range(0, len(samples), batch):
        yield tuple(torch.cat(parts) for parts in zip(*samples[i:i + batch], strict=True))


def float_reference(model: torch.nn.Module, example: tuple[torch.Tensor, ...],
                    calibration: Sequence[tuple[torch.Tensor, ...]]) -> torch.fx.GraphModule:
    """``model`` exported as :func:`~trainer.quantize.pt2e.quantize_pt2e` exports it, batch norm folded, all float."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer import Quantizer

    class Nothing(Quantizer):
        def annotate(self, graph):
            return graph

        def validate(self, graph) -> None:
            return None

    graph, _ = export_for_calibration(model, example, calibration)
    reference = move_exported_model_to_eval(prepare_pt2e(graph, Nothing()))
    for module in reference.modules():
        module.training = False
    return reference


def worst(rows: list[dict], count: int = 5) -> list[dict]:
    """The ``count`` int8 layers that lose the most SQNR themselves, worst first."""
    return sorted((r for r in rows if r["int8"]), key=lambda r: r["lost_db"], reverse=True)[:count]
