"""PT2E static quantization: export -> insert observers -> run calibration samples -> fold to q/dq.

Each backend has its own quantizer because each annotates the ops its kernels implement in int8
(XNNPACK for ExecuTorch and the Core ML W8A8 path, LiteRT for TFLite). All of them produce the
same kind of graph: ``quantized_decomposed`` quantize/dequantize pairs around float ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainer.common.registry import Registry

QUANTIZERS: Registry = Registry("quantizer")


@QUANTIZERS.register("xnnpack")
def xnnpack_quantizer(dynamic: bool = False):
    """Symmetric int8, per-channel weights: what XNNPACK runs in int8 (conv, linear, add, mul, ...)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))


@QUANTIZERS.register("litert")
def litert_quantizer(dynamic: bool = False):
    """LiteRT's PT2E quantizer: full-integer when static, dynamic-range (int8 weights) when dynamic."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))


def _in_blocks(node: torch.fx.Node, blocks: tuple[str, ...]) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    return any(path == b or path.startswith(b + ".") for path, _ in stack.values() for b in blocks)


class SkipBlocks:
    """Wraps a PT2E quantizer and removes its annotations inside the named blocks, which stay fp32."""

    def __new__(cls, base, blocks: tuple[str, ...]):
        from torchao.quantization.pt2e.quantizer import Quantizer

        class _Skip(Quantizer):
            def transform_for_annotation(self, model):
                return base.transform_for_annotation(model)

            def annotate(self, model):
                model = base.annotate(model)
                for node in model.graph.nodes:
                    if _in_blocks(node, blocks):
                        node.meta.pop("quantization_annotation", None)
                return model

            def validate(self, model) -> None:
                base.validate(model)

        return _Skip()


CALIBRATION_BATCH = 32


def _batches(calibration: Sequence[tuple[torch.Tensor, ...]], size: int) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(torch.cat(parts) for parts in zip(*calibration[i:i + size], strict=True))
            for i in range(0, len(calibration), size)]


def _export_for_calibration(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                            calibration: Sequence[tuple[torch.Tensor, ...]]):
    """Export with a symbolic batch so calibration runs in batches (3x faster on CPU than one by one).

    Models whose code fixes the batch size fall back to a batch-1 graph fed sample by sample.
    """
    batches = _batches(calibration, CALIBRATION_BATCH) if calibration else []
    if len(calibration) > 1:
        try:
            dims = tuple({0: torch.export.Dim("batch", min=1, max=4096)} for _ in example_inputs)
            graph = torch.export.export(model, batches[0], dynamic_shapes=dims, strict=False).module()
            return graph, batches
        except Exception:  # noqa: BLE001  (any specialisation on the batch size)
            pass
    return torch.export.export(model, example_inputs, strict=False).module(), list(calibration or [example_inputs])


def quantize_pt2e(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                  calibration: Sequence[tuple[torch.Tensor, ...]], quantizer,
                  fold: bool = True) -> torch.fx.GraphModule:
    """Quantize ``model`` with ``quantizer``, observing activations on every calibration sample.

    A dynamic quantizer needs no calibration (activation ranges are taken at run time); one
    example pass still runs so every observer has seen data. ``fold=False`` keeps float weights
    behind explicit quantize nodes, which LiteRT's converter expects.

    Example::

        q = quantize_pt2e(model, model.example_inputs(), calib, QUANTIZERS.get("xnnpack")())
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # A model may name modules that must stay float (e.g. an embedding table: a lookup gains
    # nothing from int8, and LiteRT's int8 lookup needs a zero point the quantizer does not give).
    keep_float = tuple(getattr(model, "float_modules", ()))
    if keep_float:
        quantizer = SkipBlocks(quantizer, keep_float)
    graph, feeds = _export_for_calibration(model, example_inputs, calibration)
    prepared = move_exported_model_to_eval(prepare_pt2e(graph, quantizer))
    with torch.no_grad():
        for batch in feeds:
            prepared(*batch)
    converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=fold))
    # The graph was traced in eval mode; exported modules refuse .eval(), so clear the flag directly
    # (converters read it and warn about training-mode models).
    for module in converted.modules():
        module.training = False
    return converted
