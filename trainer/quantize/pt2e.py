"""PT2E static quantization: export -> insert observers -> run calibration samples -> fold to q/dq.

Each backend has its own quantizer because each annotates the ops its kernels implement in int8
(XNNPACK for ExecuTorch and the Core ML W8A8 path, LiteRT for TFLite). All of them produce the
same kind of graph: ``quantized_decomposed`` quantize/dequantize pairs around float ops.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch

from egoedge.trainer.common.export_speedups import speed_up_torch_export
from egoedge.trainer.common.modules import in_modules
from egoedge.trainer.common.registry import Registry
from egoedge.trainer.quantize.observers import fast_histograms
from egoedge.trainer.quantize.pads import fold_symmetric_pads, share_pad_quantization
from egoedge.trainer.quantize.pattern_cache import memoize_pattern_tracing

QUANTIZERS: Registry = Registry("quantizer")


CLAMPS = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default, torch.ops.aten.clamp.default,
          torch.ops.aten.relu6.default)


def observe_after_clamps(graph: torch.fx.GraphModule) -> None:
    """Quantize a conv's, linear's or add's output after the ReLU6 (or clamp) that follows it, not before; in place.

    Both quantizers fuse only ReLU into the op before it and give a clamp its input's scale: the
    output of a batch-norm-folded conv is then quantized over its whole range (tens), and the
    [0, 6] that ReLU6 keeps gets a few of the 256 steps. Observing after the clamp gives those
    values all of them; every runtime fuses the clamp into the op (XNNPACK's output min/max,
    TFLite's fused RELU6), so the float edge between them never exists on the device.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec

    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in CLAMPS or not isinstance(node.args[0], torch.fx.Node):
            continue
        producer = node.args[0]
        before = _annotation(producer)
        if len(producer.users) != 1 or before is None or not isinstance(before.output_qspec, QuantizationSpec):
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={}, output_qspec=before.output_qspec, _annotated=True)
        before.output_qspec = None


SILUS = (torch.ops.aten.silu.default, torch.ops.aten.silu_.default)
SIGMOID = torch.ops.aten.sigmoid.default


def silu_as_product(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Write each SiLU as ``x * sigmoid(x)`` (the same maths), in place; the product keeps the SiLU's name.

    No quantizer annotates ``silu``, so each was a float island in an int8 program: on ExecuTorch's XNNPACK
    delegate a conversion to float, a float sigmoid and multiply, and a conversion back, after every
    convolution of a SiLU network (MobileViT, EfficientNet-B). Written as a product, both halves have int8
    kernels (:func:`annotate_swish`). The product keeps the name so that a gap's float reference, which
    keeps ``silu``, still pairs with it.
    """
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target not in SILUS or not isinstance(node.args[0], torch.fx.Node):
            continue
        x = node.args[0]
        with graph.graph.inserting_before(node):
            sigmoid = graph.graph.call_function(SIGMOID, (x,))
        sigmoid.meta.update(node.meta)
        node.target, node.args, node.kwargs = torch.ops.aten.mul.Tensor, (x, sigmoid), {}
    graph.recompile()
    return graph


def _swish_sigmoid(node: torch.fx.Node) -> torch.fx.Node | None:
    """The sigmoid of a product ``x * sigmoid(x)`` (either order), else None."""
    if node.op != "call_function" or node.target != torch.ops.aten.mul.Tensor or len(node.args) != 2:
        return None
    for x, s in (node.args, node.args[::-1]):
        if isinstance(s, torch.fx.Node) and s.target == SIGMOID and s.args and s.args[0] is x:
            return s
    return None


def annotate_swish(graph: torch.fx.GraphModule, input_spec, output_spec) -> int:
    """Quantize each ``x * sigmoid(x)``: the sigmoid's int8 output on the fixed 1/256 scale of [0, 1), the product
    like any op's output; in place, returns how many.

    On ExecuTorch's XNNPACK delegate the quantize/dequantize pairs around the sigmoid and the product go into the
    delegate with them, and XNNPACK computes the whole int8 SiLU as one elementwise op (its profiler calls it
    "Invalid Unary Op"): no conversion to float and back.
    """
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    unit = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=1.0 / 256, zero_point=-128, quant_min=-128,
                                        quant_max=127, qscheme=torch.per_tensor_affine)
    done = 0
    for node in graph.graph.nodes:
        sigmoid = _swish_sigmoid(node)
        if sigmoid is None or _annotation(sigmoid) is not None:
            continue
        x = sigmoid.args[0]
        sigmoid.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={x: input_spec}, output_qspec=unit, _annotated=True)
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={x: input_spec, sigmoid: SharedQuantizationSpec(sigmoid)}, output_qspec=output_spec,
            _annotated=True)
        done += 1
    return done


@QUANTIZERS.register("xnnpack")
def xnnpack_quantizer(dynamic: bool = False):
    """Symmetric int8, per-channel weights: what XNNPACK runs in int8 (conv, linear, add, mul, sigmoid, ...)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    class ClampAware(XNNPACKQuantizer):
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return super().transform_for_annotation(silu_as_product(model))

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            config = self.global_config
            if config is not None and config.output_activation is not None:  # static int8 (dynamic has none)
                annotate_swish(model, config.input_activation, config.output_activation)
            observe_after_clamps(model)
            return model

    return ClampAware().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))


def softmax_as_core_op(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite ``aten.softmax.int`` as ``aten._softmax.default`` (same maths), in place.

    ``torch.export`` keeps the former; LiteRT's quantizer only recognises the latter, and only
    then gives softmax the fixed int8 output scale (1/256) that TFLite's kernel insists on.
    """
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.softmax.int:
            x, dim, *rest = node.args
            if (rest and rest[0] is not None) or node.kwargs.get("dtype") is not None:
                continue  # a softmax that casts is left alone
            node.target, node.args, node.kwargs = torch.ops.aten._softmax.default, (x, dim, False), {}
    graph.recompile()
    return graph


def annotate_every_softmax(graph: torch.fx.GraphModule, input_spec, output_spec) -> None:
    """Quantize each softmax still unannotated: int8 input, fixed-scale int8 output.

    LiteRT's own annotator skips a softmax whose producer was not annotated when it ran (a
    broadcast add, a squeeze annotated only later); its output is then quantized by the next
    op's observer, and the converter fuses that into an int8 SOFTMAX whose scale is not the
    1/256 TFLite's kernel requires, so the model fails to prepare.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten._softmax.default:
            continue
        if node.meta.get("quantization_annotation") is not None:
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={node.args[0]: input_spec}, output_qspec=output_spec, _annotated=True)


ARITHMETIC = (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor)
RELUS = (torch.ops.aten.relu.default, torch.ops.aten.relu_.default)


def annotate_arithmetic(graph: torch.fx.GraphModule, input_spec, output_spec) -> int:
    """Quantize each float add and multiply still unannotated (a ReLU right after one takes its output), in place.

    LiteRT's annotators find adds and multiplies through ``source_fn_stack``, which non-strict
    ``torch.export`` no longer records: every residual add then stayed float, a DEQUANTIZE, a
    float ADD and a QUANTIZE in the .tflite. Returns how many were annotated.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    done = 0
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in ARITHMETIC or _annotation(node) is not None:
            continue
        inputs = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if _integer(node) or not inputs or any(_integer(a) for a in inputs):
            continue
        users = list(node.users)
        relu = users[0] if len(users) == 1 and users[0].target in RELUS and _annotation(users[0]) is None else None
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map=dict.fromkeys(inputs, input_spec), output_qspec=None if relu else output_spec,
            _annotated=True)
        if relu is not None:
            relu.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={}, output_qspec=output_spec, _annotated=True)
        done += 1
    return done


@QUANTIZERS.register("litert")
def litert_quantizer(dynamic: bool = False):
    """LiteRT's PT2E quantizer: full-integer when static, dynamic-range (int8 weights) when dynamic."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class LiteRTQuantizer(PT2EQuantizer):
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return super().transform_for_annotation(silu_as_product(softmax_as_core_op(model)))

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            config = self.global_config
            if config is not None and config.input_activation is not None:
                annotate_every_softmax(model, config.input_activation, config.fixed_qparams)
                if config.output_activation is not None:
                    annotate_swish(model, config.input_activation, config.output_activation)
                annotate_arithmetic(model, config.input_activation, config.output_activation)
            observe_after_clamps(model)
            return model

    return LiteRTQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))


def node_in_modules(node: torch.fx.Node, modules: Sequence[str]) -> bool:
    """Whether an exported graph's node was traced inside any of ``modules`` (dotted paths)."""
    stack = node.meta.get("nn_module_stack") or {}
    return any(in_modules(path, modules) for path, _ in stack.values())


def _annotation(node: torch.fx.Node):
    return node.meta.get("quantization_annotation")


def _shares_gone(spec) -> bool:
    """Whether a shared spec points at an output or an input edge that is no longer quantized."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    if not isinstance(spec, SharedQuantizationSpec):
        return False
    target = spec.edge_or_node
    if isinstance(target, tuple):  # an input edge (producer, consumer)
        ann = _annotation(target[1])
        return ann is None or target[0] not in ann.input_qspec_map
    ann = _annotation(target)
    return ann is None or ann.output_qspec is None


def _drop_dangling_shares(graph: torch.fx.Graph) -> None:
    """Leave float every node whose annotation shares observers with a node left float.

    Ops such as add, cat or reshape share their quantization parameters with a neighbour; when
    that neighbour is in a skipped block, the sharing points nowhere and ``prepare_pt2e`` fails
    (a KeyError on the missing node). Repeats until no sharing dangles.
    """
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            ann = _annotation(node)
            if ann is not None and any(_shares_gone(s) for s in (*ann.input_qspec_map.values(), ann.output_qspec)):
                node.meta.pop("quantization_annotation")
                changed = True


def _integer(node: torch.fx.Node) -> bool:
    """Whether the node computes an integer or boolean tensor (positions, indices, masks): int8 cannot hold it."""
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and not val.dtype.is_floating_point


def _integer_operands(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Give integer arithmetic its integer operands back: XNNPACK's pre-annotation pass turns every scalar operand
    of an add or mul into a float tensor constant, which turns ``arange(n) + 0`` into floats that cannot index."""
    for node in graph.graph.nodes:
        if node.op != "call_function" or not _integer(node):
            continue
        for arg in node.args:
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and "." not in arg.target:
                value = getattr(graph, arg.target)
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 0:
                    setattr(graph, arg.target, value.to(node.meta["val"].dtype))
    return graph


class SkipBlocks:
    """Wraps a PT2E quantizer and removes its annotations inside the named blocks, which stay fp32, and on integer
    tensors: a quantizer that annotates every ``add`` would otherwise observe a transformer's position arithmetic
    and hand a float tensor to the lookup that indexes with it. Zero pads join their convolutions or share their
    input's quantization (:mod:`.pads`)."""

    def __new__(cls, base, blocks: tuple[str, ...]):
        from torchao.quantization.pt2e.quantizer import Quantizer

        if (inner := getattr(base, "skip_base", None)) is not None:
            # Already wrapped (a search's skip list, then the model's own fp32 modules): one wrapper over both
            # lists, so its graph passes run once.
            base, blocks = inner, tuple(dict.fromkeys((*base.skip_blocks, *blocks)))

        class _Skip(Quantizer):
            def transform_for_annotation(self, model):
                fold_symmetric_pads(model)
                return _integer_operands(base.transform_for_annotation(model))

            def annotate(self, model):
                model = base.annotate(model)
                share_pad_quantization(model)
                for node in model.graph.nodes:
                    if node_in_modules(node, blocks) or _integer(node):
                        node.meta.pop("quantization_annotation", None)
                    elif (note := node.meta.get("quantization_annotation")) is not None:
                        for arg in [a for a in note.input_qspec_map if _integer(a)]:
                            del note.input_qspec_map[arg]
                _drop_dangling_shares(model.graph)
                return model

            def validate(self, model) -> None:
                base.validate(model)

        skip = _Skip()
        skip.skip_base, skip.skip_blocks = base, tuple(blocks)
        return skip


CALIBRATION_BATCH = 32


def _batches(calibration: Sequence[tuple[torch.Tensor, ...]], size: int) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(torch.cat(parts) for parts in zip(*calibration[i:i + size], strict=True))
            for i in range(0, len(calibration), size)]


# The last few exports, by model: a PTQ search quantizes one model several times (both bias settings, probes,
# the chosen fallback, the float reference), and tracing it again each time cost more than calibrating.
_EXPORTS: OrderedDict[tuple, tuple[torch.nn.Module, torch.fx.GraphModule | Exception]] = OrderedDict()
EXPORT_CACHE_SIZE = 4


def _export_key(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple:
    """What a traced graph depends on: the model object, its modules and modes, every tensor's storage and version
    (an in-place update such as a training step bumps it), and the input shapes and dtypes."""
    tensors = [*model.parameters(), *model.buffers()]
    return (id(model), tuple((type(m), m.training) for m in model.modules()),
            tuple((t.data_ptr(), t._version, t.shape, t.dtype) for t in tensors),
            tuple((x.shape, x.dtype) for x in inputs))


def _export(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], dims=None) -> torch.fx.GraphModule:
    """``torch.export`` (non-strict) of ``model`` as a module, a fresh copy per call: the caller's quantizer
    rewrites it in place."""
    key = (*_export_key(model, inputs), dims is not None)
    hit = _EXPORTS.get(key)
    if hit is None:  # an entry holds its model, so the id in its key cannot be another model's while cached
        try:
            hit = (model, torch.export.export(model, inputs, dynamic_shapes=dims, strict=False).module())
        except Exception as e:  # noqa: BLE001  (remembered too: a batch-fixed model fails the same way each time)
            hit = (model, e)
        _EXPORTS[key] = hit
    _EXPORTS.move_to_end(key)
    while len(_EXPORTS) > EXPORT_CACHE_SIZE:
        _EXPORTS.popitem(last=False)
    if isinstance(hit[1], Exception):
        raise hit[1]
    return copy.deepcopy(hit[1])


def export_for_calibration(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                            calibration: Sequence[tuple[torch.Tensor, ...]], group: int = 1):
    """Export with a symbolic batch so calibration runs in batches of ``CALIBRATION_BATCH * group`` samples (3x
    faster on CPU than one by one).

    Models whose code fixes the batch size fall back to a batch-1 graph fed sample by sample.
    """
    batches = _batches(calibration, CALIBRATION_BATCH * group) if calibration else []
    if len(calibration) > 1:
        try:
            dims = tuple({0: torch.export.Dim("batch", min=1, max=4096)} for _ in example_inputs)
            return _export(model, batches[0], dims), batches
        except Exception:  # noqa: BLE001  (any specialisation on the batch size)
            pass
    return _export(model, example_inputs), list(calibration or [example_inputs])


def _drop_unused_tensors(graph: torch.fx.GraphModule) -> None:
    """Delete the float weights that folding replaced by int8 constants (else a saved program holds both)."""
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for name, _ in [*graph.named_parameters(), *graph.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(graph.get_submodule(owner), attr)


def quantize_pt2e(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                  calibration: Sequence[tuple[torch.Tensor, ...]], quantizer,
                  fold: bool = True, correct_bias: bool = False, group: int = 1) -> torch.fx.GraphModule:
    """Quantize ``model`` with ``quantizer``, observing activations on every calibration sample.

    A dynamic quantizer needs no calibration (activation ranges are taken at run time); one
    example pass still runs so every observer has seen data. ``fold=False`` keeps float weights
    behind explicit quantize nodes, which LiteRT's converter expects. ``correct_bias``: each conv's
    and linear's bias takes back the mean shift its int8 weights cause on the calibration inputs.
    ``group``: how many samples make one sample of the clip program whose int8 this one must repeat (a
    streaming step's or frame encoder's T frames): the observers then see the same frames at once as the clip
    program's did (a histogram observer's ranges depend on how its data is batched) and the bias shift is
    measured on the same frames.

    Example::

        q = quantize_pt2e(model, model.example_inputs(), calib, QUANTIZERS.get("xnnpack")())
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    memoize_pattern_tracing()
    speed_up_torch_export()

    # A model may name modules that must stay float (e.g. an embedding table: a lookup gains
    # nothing from int8, and LiteRT's int8 lookup needs a zero point the quantizer does not give).
    quantizer = SkipBlocks(quantizer, tuple(getattr(model, "float_modules", ())))
    graph, feeds = export_for_calibration(model, example_inputs, calibration, group)
    prepared = move_exported_model_to_eval(prepare_pt2e(graph, quantizer))
    fast_histograms(prepared)
    with torch.no_grad():
        for batch in feeds:
            prepared(*batch)
    weights = _float_weights(prepared) if correct_bias else {}
    converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=fold))
    if weights:
        _correct_bias(converted, weights, feeds, BIAS_SAMPLES * group)
    _drop_unused_tensors(converted)
    # The graph was traced in eval mode; exported modules refuse .eval(), so clear the flag directly
    # (converters read it and warn about training-mode models).
    for module in converted.modules():
        module.training = False
    return converted


BIAS_SAMPLES = 64  # calibration samples the bias shift is averaged over (a mean per channel settles fast)
WEIGHTED = (torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default,
            torch.ops.aten.linear.default)


def _float_weights(prepared: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    """Each observed conv's and linear's float weight (batch norm folded in), by node name, before convert."""
    out = {}
    for node in prepared.graph.nodes:
        if node.op != "call_function" or node.target not in WEIGHTED or len(node.args) < 2:
            continue
        weight = node.args[1]
        while isinstance(weight, torch.fx.Node) and weight.op == "call_module":  # the weight's observer
            weight = weight.args[0]
        if isinstance(weight, torch.fx.Node) and weight.op == "get_attr" and weight is not node.args[1]:
            out[node.name] = _attr(prepared, weight.target).detach().clone()
    return out


def _correct_bias(graph: torch.fx.GraphModule, weights: dict[str, torch.Tensor],
                  feeds: Sequence[tuple[torch.Tensor, ...]], samples: int = BIAS_SAMPLES) -> None:
    """Subtract from each layer's bias the mean output shift its int8 weights cause on its own inputs; in place.

    Rounding weights to 8 bits shifts a layer's mean output per channel (most for a depthwise 3x3
    kernel, nine weights per channel); the int8 program's own inputs to the layer measure it, with
    the int8 and the float weights, in one pass over the calibration samples (Nagel et al. 2019,
    empirical bias correction).
    """
    shift: dict[str, torch.Tensor] = {}

    class Measure(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node):
            if n.name in weights and n.op == "call_function":
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                rest = list(args[3:])
                quantized = n.target(args[0], args[1], None, *rest, **kwargs)
                exact = n.target(args[0], weights[n.name].to(args[1].dtype), None, *rest, **kwargs)
                dims = [d for d in range(quantized.dim()) if d != (quantized.dim() - 1 if n.target ==
                                                                   torch.ops.aten.linear.default else 1)]
                delta = (quantized - exact).mean(dims).double()
                shift[n.name] = shift.get(n.name, 0) + delta * len(args[0])
            return super().run_node(n)

    count = 0
    with torch.no_grad():
        for batch in feeds:
            if count >= samples:
                break
            Measure(graph).run(*batch)
            count += len(batch[0])
    corrected = graph.meta.setdefault(BIAS_CORRECTIONS, {})
    for node in graph.graph.nodes:
        if node.name not in shift or len(node.args) < 2:
            continue
        corrected[node.name] = (shift[node.name] / count).float()
        _add_to_bias(graph, node, -corrected[node.name])
    graph.recompile()


BIAS_CORRECTIONS = "egoedge_bias_corrections"  # graph.meta: what _correct_bias took from each layer's bias


def undo_bias_correction(graph: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    """Give ``node`` back the bias it had before :func:`_correct_bias`, in place (for an op run with float weights)."""
    if (correction := graph.meta.get(BIAS_CORRECTIONS, {}).pop(node.name, None)) is not None:
        _add_to_bias(graph, node, correction)


def _add_to_bias(graph: torch.fx.GraphModule, node: torch.fx.Node, delta: torch.Tensor) -> None:
    """Add ``delta`` to a conv's or linear's bias constant (one made for it if it has none); the caller recompiles."""
    bias = node.args[2] if len(node.args) > 2 else None
    if isinstance(bias, torch.fx.Node) and bias.op == "get_attr":
        owner, _, attr = bias.target.rpartition(".")
        module = graph.get_submodule(owner) if owner else graph
        value = getattr(module, attr)
        setattr(module, attr, torch.nn.Parameter(value.detach() + delta, requires_grad=False)
                if isinstance(value, torch.nn.Parameter) else value + delta)
    elif bias is None:
        name = f"{node.name}_bias_correction"
        graph.register_buffer(name, delta.clone())
        with graph.graph.inserting_before(node):
            added = graph.graph.get_attr(name)
        node.args = (*node.args[:2], added, *node.args[3:]) if len(node.args) > 2 else (*node.args[:2], added)


def fold_weights(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of an unfolded int8 graph with its weights stored int8, as ``quantize_pt2e(fold=True)`` stores them.

    Every quantize node of a constant becomes its integers; a layer that reads its float weight directly (one the
    search's bypass keeps fp32) keeps it. The outputs are the unfolded graph's.
    """
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    graph = copy.deepcopy(graph)
    constant_fold(graph, _quant_node_constraint)  # convert_pt2e's own rule: the same constants fold=True makes
    _drop_unused_tensors(graph)
    graph.recompile()
    return graph


def unfold_weights(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of a folded int8 graph with every int8 weight stored float behind its own quantize node.

    Folding stores weights as int8 constants read by a dequantize node; LiteRT's converter reads
    the unfolded form (a float constant -> quantize -> dequantize). The float weights are the int8
    ones dequantized, so quantizing them again gives back the same integers: the same program.
    """
    graph = copy.deepcopy(graph)
    for node in list(graph.graph.nodes):
        target = str(node.target)
        weight = node.args[0] if node.op == "call_function" and "dequantize" in target and node.args else None
        if not (isinstance(weight, torch.fx.Node) and weight.op == "get_attr"):
            continue
        stored = _attr(graph, weight.target)
        if not isinstance(stored, torch.Tensor) or stored.dtype not in (torch.int8, torch.uint8):
            continue
        args = [_attr(graph, a.target) if isinstance(a, torch.fx.Node) and a.op == "get_attr" else a
                for a in node.args[1:]]
        name = f"{weight.target.replace('.', '_')}_float"
        graph.register_buffer(name, node.target(stored, *args, **node.kwargs))
        quantize = getattr(torch.ops.quantized_decomposed, node.target.name().split("::")[1].split(".")[0]
                           .replace("dequantize", "quantize")).default
        with graph.graph.inserting_before(node):
            floats = graph.graph.get_attr(name)
            requantized = graph.graph.call_function(quantize, (floats, *node.args[1:]), dict(node.kwargs))
        node.replace_input_with(weight, requantized)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def _attr(graph: torch.fx.GraphModule, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(graph.get_submodule(owner) if owner else graph, name)


SOFTMAX_OPS = (torch.ops.aten.softmax.int, torch.ops.aten._softmax.default)


def fixed_softmax_outputs(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Give each int8-quantized softmax output TFLite's fixed scale (1/256, zero point -128), in place.

    A program quantized for XNNPACK takes a softmax's output range from calibration; TFLite's int8
    SOFTMAX kernel only prepares with 1/256. A softmax lies in [0, 1], so the fixed scale loses at
    most half a step of 1/256.
    """
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in SOFTMAX_OPS:
            continue
        for q in list(node.users):
            if "quantize_per_tensor" not in str(q.target) or "dequantize" in str(q.target) or q.args[-1] != torch.int8:
                continue
            for pair in (q, *[d for d in list(q.users) if "dequantize_per_tensor" in str(d.target)]):
                pair.args = (pair.args[0], 1.0 / 256, -128, *pair.args[3:])
    graph.recompile()
    return graph
