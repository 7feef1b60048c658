"""TFLite: ``.tflite`` via litert-torch (no TensorFlow), run with the ai-edge-litert Interpreter.

Precisions: fp32; ``w8`` dynamic-range (int8 weights, float activations quantized on the fly);
``int8`` full-integer, calibrated, whose input and output tensors are int8 themselves: the
session (and the app, from the manifest's scale/zero_point) quantizes and dequantizes them.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from egoedge.edge.exporters.base import (
    CLIP_IO,
    Calibration,
    IONames,
    Session,
    check_precision,
    example_graph,
    int8_weight_share,
    lowering_error,
)
from egoedge.edge.exporters.litert_layout import channels_last_pads
from egoedge.edge.exporters.registry import EXPORTERS
from egoedge.edge.preprocess import from_tensor, to_tensor
from egoedge.trainer.common.io import atomic_write
from egoedge.trainer.quantize import QUANTIZERS, fixed_softmax_outputs, quantize_pt2e, unfold_weights


def _io_specs(details: list[dict], names: list[str] | None = None) -> list[dict]:
    """The manifest's entries of an interpreter's input or output tensors (its own names unless given): the one
    place a LiteRT tensor is judged quantized (an integer tensor with a non-zero scale)."""
    names = names if names is not None else [d["name"] for d in details]
    specs = []
    for name, d in zip(names, details, strict=True):
        scale, zero = d["quantization"]
        quantized = np.dtype(d["dtype"]).kind in "iu" and bool(scale)
        specs.append({"name": name, "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                      "scale": float(scale) if quantized else None, "zero_point": int(zero) if quantized else None})
    return specs


class TFLiteExporter:
    format = "tflite"
    ext = "tflite"
    runtime = "litert-interpreter"  # what the bench calls the host runtime of these artifacts
    process_threads = False
    precisions = ("fp32", "w8", "int8")
    float_precisions = ("fp32",)
    int8_precisions = ("w8", "int8")
    program_precision = "int8"  # the precision it lowers an int8 PT2E program for (edge.int8)

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO,
               program: torch.nn.Module | None = None) -> dict:
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        check_precision(self, precision)
        channels_last_pads()
        try:
            # litert-torch reports progress on stdout; the CLI has its own.
            with contextlib.redirect_stdout(io.StringIO()):
                if precision == "fp32":
                    converted = litert_torch.convert(model, example_inputs)
                else:
                    quantizer = QUANTIZERS.get("litert")(dynamic=precision == "w8")
                    if precision == "int8" and program is not None:
                        # The converter reads float weights behind quantize nodes, not folded int8 ones,
                        # and TFLite's int8 softmax takes only its own fixed output scale.
                        graph = fixed_softmax_outputs(unfold_weights(program))
                    else:
                        # The recipe's bias correction (int8_bias_correction) applies to w8's int8 weights too.
                        correct = bool(calibration) and getattr(model, "int8_bias_correction", False)
                        graph = quantize_pt2e(model, example_inputs,
                                              calibration if precision == "int8" or correct else [], quantizer,
                                              fold=False, correct_bias=correct)
                    converted = litert_torch.convert(graph, example_inputs,
                                                     quant_config=QuantConfig(pt2e_quantizer=quantizer))
                atomic_write(path, lambda p: converted.export(str(p)))
            interpreter = self._interpreter(path, None)  # a model LiteRT cannot prepare fails here, not later
        except Exception as e:  # noqa: BLE001  (conversion errors come from torch.export, MLIR and the converter)
            raise lowering_error(self.format, e, example_graph(model, example_inputs)) from e
        from ai_edge_litert.interpreter import Interpreter

        # A fresh, unallocated interpreter shows the model as written: once tensors are allocated the
        # XNNPACK delegate has replaced the ops it took with one DELEGATE node.
        written = Interpreter(model_path=str(path))
        ops = written._get_ops_details()
        info = {"converter": f"litert-torch {litert_torch.__version__}",
                "inputs": _io_specs(interpreter.get_input_details(), list(names.inputs)),
                "outputs": _io_specs(interpreter.get_output_details(), list(names.outputs)),
                "ops": sorted({op["op_name"] for op in ops})}
        if precision != "fp32":
            info["int8_weights_pct"] = int8_weight_share(_constant_elements(written, ops))
        if precision == "int8":
            info["float_ops"] = _float_ops(written, ops)
        return info

    @staticmethod
    def _interpreter(path: Path, threads: int | None, xnnpack: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # AUTO applies LiteRT's default delegate (XNNPACK); the other resolver runs the builtin kernels.
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter = Interpreter(model_path=str(path), num_threads=threads or 1,
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        return interpreter

    def unavailable(self) -> str | None:
        return None

    def load(self, path: Path, threads: int | None = None, xnnpack: bool = True) -> Session:
        """Open with the XNNPACK delegate (``xnnpack=False``: LiteRT's builtin kernels only)."""
        interpreter = self._interpreter(path, threads, xnnpack)
        # Each tensor's conversion is settled at load: a stream step feeds three inputs a frame, and working out
        # each one's dtype and scale on every call cost about as much as its int8 window's arithmetic.
        in_details, out_details = interpreter.get_input_details(), interpreter.get_output_details()
        feeds = [(d["index"], to_tensor(spec)) for d, spec in zip(in_details, _io_specs(in_details), strict=True)]
        reads = [(d["index"], from_tensor(spec)) for d, spec in zip(out_details, _io_specs(out_details), strict=True)]

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            for (index, convert), x in zip(feeds, inputs, strict=True):
                interpreter.set_tensor(index, np.ascontiguousarray(convert(x)))
            interpreter.invoke()
            return [convert(interpreter.get_tensor(index)) for index, convert in reads]

        run.interpreter = interpreter  # what was opened, for a caller (or test) that inspects it
        return run


EXPORTERS.register("tflite")(TFLiteExporter())


def _float_ops(interpreter, ops: list[dict]) -> list[str]:
    """The ops of a full-integer model that compute in float (each a DEQUANTIZE/QUANTIZE round trip): names, once."""
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    return sorted({op["op_name"] for op in ops if op["op_name"] not in ("DEQUANTIZE", "QUANTIZE")
                   and any(dtypes[i].kind == "f" for i in op["inputs"] if i >= 0)})


def _constant_elements(interpreter, ops: list[dict]) -> dict[str, int]:
    """Stored weight elements by kind, in an unallocated interpreter: the tensors no op produces and the
    model does not take as input."""
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    out: dict[str, int] = {}
    for t in interpreter.get_tensor_details():
        dtype = np.dtype(t["dtype"])
        kind = "int8" if dtype in (np.int8, np.uint8) else "float" if dtype.kind == "f" else None
        if kind is not None and t["index"] not in produced and len(t["shape"]):
            out[kind] = out.get(kind, 0) + int(np.prod(t["shape"], dtype=np.int64))
    return out
