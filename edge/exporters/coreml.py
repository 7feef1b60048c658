"""Core ML: ``.mlpackage`` ML programs for iOS 17 (fp32, fp16, weight-only int8, W8A8).

coremltools converts on any OS but predicts only on macOS. Elsewhere the saved package is
read back and its spec validated (IO names and shapes, op set, weight dtypes); on a Mac the
artifact is also run and parity-checked like every other backend.

W8A8 is calibrated on the torch side through PT2E (the same XNNPACK-style symmetric int8
scheme as ExecuTorch), because coremltools' own activation calibration needs macOS to run the
model and its ``CoreMLQuantizer`` targets the ``torch.ao`` API that torch 2.14 has removed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from egoedge.edge.exporters.base import (
    CLIP_IO,
    Calibration,
    ExportError,
    IONames,
    Session,
    check_precision,
    example_graph,
    lowering_error,
)
from egoedge.edge.exporters.registry import EXPORTERS
from egoedge.trainer.common.io import atomic_write_dir
from egoedge.trainer.common.modules import in_modules
from egoedge.trainer.quantize import QUANTIZERS, quantize_pt2e

DEPLOYMENT_TARGET = "iOS17"


def _coremltools():
    # coremltools logs a warning per missing macOS binding and untested torch version on import.
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools

    return coremltools


def _drop_aliases(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Remove ``aten.alias`` nodes (a no-op view, e.g. a full slice), which coremltools cannot convert."""
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()
    return program


def spec_summary(path: Path) -> dict:
    """What the saved package holds: spec version, IO, op counts and weight elements per dtype."""
    ct = _coremltools()
    from coremltools.proto import MIL_pb2

    spec = ct.utils.load_spec(str(path))
    if spec.WhichOneof("Type") != "mlProgram":
        raise ExportError(f"coreml: {path.name} is not an ML program")
    function = spec.mlProgram.functions["main"]
    ops: Counter = Counter()
    weights: Counter = Counter()
    for op in function.block_specializations[function.opset].operations:
        ops[op.type] += 1
        if op.type == "const" or op.type.startswith("constexpr"):
            for attr in op.attributes.values():
                t = attr.type.tensorType
                n = int(np.prod([d.constant.size for d in t.dimensions])) if t.dimensions else 1
                dtype = MIL_pb2.DataType.Name(t.dataType).lower()
                if dtype not in ("bool", "string"):
                    weights[dtype] += n

    def io(features) -> list[dict]:
        return [{"name": f.name, "shape": list(f.type.multiArrayType.shape)} for f in features]

    return {"spec_version": spec.specificationVersion, "opset": function.opset,
            "inputs": io(spec.description.input), "outputs": io(spec.description.output),
            "ops": dict(sorted(ops.items())), "weight_elements": dict(sorted(weights.items()))}


def quantizable_share(model: torch.nn.Module) -> float:
    """The share of the model's weights that w8a8 quantizes: all but those of its ``float_modules``."""
    keep = tuple(getattr(model, "float_modules", ()))
    sizes = [(n, p.numel()) for n, p in model.named_parameters()]
    total = sum(k for _, k in sizes) or 1
    return sum(k for n, k in sizes if not in_modules(n, keep)) / total


def validate_spec(summary: dict, precision: str, input_shapes: list[list[int]], names: IONames = CLIP_IO,
                  quantizable: float = 1.0) -> None:
    """Raise if the package is not what was asked for: IO, and weights stored in the right dtype.

    ``quantizable``: the share of weights w8a8 was allowed to quantize (modules kept float are not);
    a model kept float whole (a streaming head with ``--int8-keep-float pool,head``) has none.
    """
    got_in = [(i["name"], i["shape"]) for i in summary["inputs"]]
    got_out = [(o["name"], o["shape"]) for o in summary["outputs"]]
    want_in = list(zip(names.inputs, input_shapes, strict=True))
    if got_in != want_in:
        raise ExportError(f"coreml: inputs {got_in} != {want_in}")
    if [n for n, _ in got_out] != list(names.outputs):
        raise ExportError(f"coreml: outputs {got_out} are not {list(names.outputs)}")
    w = summary["weight_elements"]
    total = sum(w.values()) or 1
    share = quantizable if precision == "w8a8" else 1.0  # w8 quantizes every weight, kept-float modules too
    if precision in ("w8", "w8a8") and share > 0 and w.get("int8", 0) / total < 0.5 * share:
        raise ExportError(f"coreml {precision}: only {w.get('int8', 0)} of {total} weight elements are int8")
    if precision == "fp16" and w.get("float32", 0) > w.get("float16", 0):
        raise ExportError(f"coreml fp16: weights are mostly float32 ({w})")
    if precision == "w8a8" and quantizable > 0 and not summary["ops"].get("quantize"):
        raise ExportError("coreml w8a8: no activation quantize ops in the program")


class CoreMLExporter:
    format = "coreml"
    ext = "mlpackage"
    runtime = "coreml-cpu"  # what the bench calls the host runtime of these artifacts
    process_threads = False
    precisions = ("fp32", "fp16", "w8", "w8a8")
    float_precisions = ("fp16",)
    int8_precisions = ("w8", "w8a8")
    program_precision = "w8a8"  # the precision it lowers an int8 PT2E program for (edge.int8)

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO,
               program: torch.nn.Module | None = None) -> dict:
        check_precision(self, precision)
        ct = _coremltools()
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # the converter draws a tqdm bar per pass
                if precision == "w8a8" and program is None:
                    program = quantize_pt2e(model, example_inputs, calibration, QUANTIZERS.get("xnnpack")())
                mlmodel = self._convert(ct, program if precision == "w8a8" else model, example_inputs, precision,
                                        names)
        except Exception as e:  # noqa: BLE001  (the converter raises from many layers)
            raise lowering_error(self.format, e, example_graph(model, example_inputs)) from e
        atomic_write_dir(path, lambda p: mlmodel.save(str(p)))
        summary = spec_summary(path)
        validate_spec(summary, precision, [list(x.shape) for x in example_inputs], names, quantizable_share(model))
        return {"deployment_target": DEPLOYMENT_TARGET, "coremltools": ct.__version__, "spec": summary}

    @staticmethod
    def _convert(ct, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], precision: str,
                 names: IONames = CLIP_IO):
        program = _drop_aliases(torch.export.export(model, example_inputs, strict=False).run_decompositions())
        mlmodel = ct.convert(
            program,
            # Integer inputs (token ids) stay int32; everything else is float32.
            inputs=[ct.TensorType(name=n, shape=tuple(x.shape),
                                  dtype=np.int32 if not x.is_floating_point() else np.float32)
                    for n, x in zip(names.inputs, example_inputs, strict=True)],
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in names.outputs],
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
            compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
            skip_model_load=True)
        if precision == "w8":
            op_config = ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                                   granularity="per_channel")
            mlmodel = ct.optimize.coreml.linear_quantize_weights(
                mlmodel, config=ct.optimize.coreml.OptimizationConfig(global_config=op_config))
        return mlmodel

    def unavailable(self) -> str | None:
        return None if sys.platform == "darwin" else "Core ML predicts only on macOS"

    def load(self, path: Path, threads: int | None = None) -> Session:
        if reason := self.unavailable():
            raise ExportError(f"coreml: cannot run {Path(path).name}: {reason}")
        ct = _coremltools()
        mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        description = mlmodel.get_spec().description
        ins, outs = [i.name for i in description.input], [o.name for o in description.output]

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            result = mlmodel.predict(dict(zip(ins, inputs, strict=True)))
            return [np.asarray(result[n], dtype=np.float32) for n in outs]

        return run


EXPORTERS.register("coreml")(CoreMLExporter())
