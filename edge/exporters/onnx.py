"""ONNX: ``.onnx`` (opset 18) via ``torch.onnx`` (dynamo), and int8 QDQ calibrated with onnxruntime.

ONNX Runtime is the reference runtime here: it runs everywhere, so its int8 accuracy is a
check on the calibration set that the mobile backends share.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import tempfile
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
from egoedge.edge.exporters.registry import EXPORTERS
from egoedge.trainer.common.io import atomic_write
from egoedge.trainer.common.modules import in_modules

OPSET = 18


def ort_session(path: Path, threads: int | None = None, profile_prefix: str | None = None):
    """A CPU ``onnxruntime.InferenceSession`` on ``threads`` intra-op threads, profiling to ``profile_prefix`` if given.

    The bench's timing and its op profiler both open sessions here, so a profile describes the
    session that was timed.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def module_nodes(graph, modules: tuple[str, ...]) -> set[str]:
    """Names of the nodes the dynamo exporter traced inside any of ``modules`` (dotted paths, e.g. ``pool``)."""
    found = set()
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        if any(in_modules(s, modules) for s in scopes):
            found.add(node.name)
    return found


def float_nodes(traced: Path, pre: Path, modules: tuple[str, ...]) -> list[str]:
    """The nodes of the pre-processed model ``pre`` that lie in ``modules`` of the ``traced`` export.

    ONNX Runtime's quantizer excludes nodes by name, and only the traced graph knows which module
    a node came from. Pre-processing keeps most names, renames fused nodes ``ORIGINAL/Fusion`` and
    adds a few glue nodes (reshapes, transposes) with new names: those follow their neighbours.
    """
    import onnx

    traced_graph = onnx.load(str(traced)).graph
    inside = module_nodes(traced_graph, modules)
    traced_names = {n.name for n in traced_graph.node}
    nodes = list(onnx.load(str(pre)).graph.node)
    keep = {n.name for n in nodes if n.name in inside or n.name.split("/")[0] in inside}
    glue = [n for n in nodes if n.name not in traced_names and n.name.split("/")[0] not in traced_names]
    producer = {o: n.name for n in nodes for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    changed = True
    while changed:  # a chain of glue nodes between kept nodes
        changed = False
        for n in glue:
            if n.name in keep:
                continue
            near = [producer.get(i) for i in n.input] + [c for o in n.output for c in consumers.get(o, [])]
            if any(x in keep for x in near if x):
                keep.add(n.name)
                changed = True
    return sorted(keep)


class OnnxExporter:
    format = "onnx"
    ext = "onnx"
    runtime = "onnxruntime-cpu"  # what the bench calls the host runtime of these artifacts
    process_threads = False
    precisions = ("fp32", "int8")
    float_precisions = ("fp32",)
    int8_precisions = ("int8",)

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO,
               program: torch.nn.Module | None = None) -> dict:
        # ``program`` is not lowered: ONNX Runtime's int8 is its own QDQ format, made from ``model``
        # with the program's modules kept float and its calibration set.
        import onnx

        check_precision(self, precision)
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "model.onnx"
            try:
                # torch.onnx prints its progress to stdout; the CLI has its own.
                with contextlib.redirect_stdout(io.StringIO()):
                    torch.onnx.export(model, example_inputs, fp32, input_names=list(names.inputs),
                                      output_names=list(names.outputs),
                                      opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
                onnx.checker.check_model(str(fp32))
            except Exception as e:  # noqa: BLE001  (the exporter raises from many layers)
                raise lowering_error(self.format, e, example_graph(model, example_inputs)) from e
            keep = tuple(getattr(model, "float_modules", ()))
            source, excluded = (fp32, []) if precision == "fp32" else \
                self._quantize(fp32, Path(tmp), calibration, names, keep)
            atomic_write(path, lambda p: p.write_bytes(source.read_bytes()))
        graph = onnx.load(str(path)).graph
        ops = sorted({n.op_type for n in graph.node})
        info = {"opset": OPSET, "ops": ops,
                "quantization": "static QDQ, per-channel int8 weights, uint8 activations (MinMax)"
                if precision == "int8" else None}
        if precision == "int8":
            info["int8_weights_pct"] = int8_weight_share(_initializer_elements(graph))
        if precision == "int8" and keep:
            info["float_nodes"] = len(excluded)
        return info

    def _quantize(self, fp32: Path, tmp: Path, calibration: Calibration, names: IONames,
                  keep: tuple[str, ...] = ()) -> tuple[Path, list[str]]:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.samples = iter(calibration)

            def get_next(self) -> dict | None:
                sample = next(self.samples, None)
                return None if sample is None else {n: t.numpy() for n, t in zip(names.inputs, sample, strict=True)}

        pre, out = tmp / "pre.onnx", tmp / "int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a warning for every 1-D weight it skips
        try:
            quant_pre_process(str(fp32), str(pre))
            exclude = float_nodes(fp32, pre, keep) if keep else []
            # uint8 activations x int8 weights (U8S8) is the pair ONNX Runtime's x86 kernels are fastest
            # at (VNNI's u8*s8 dot product); int8 activations were measured slower (docs/export.md).
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=exclude)
        except Exception as e:  # noqa: BLE001
            raise lowering_error(self.format, e) from e
        finally:
            root.setLevel(level)
        return out, exclude

    def unavailable(self) -> str | None:
        return None

    def load(self, path: Path, threads: int | None = None) -> Session:
        session = ort_session(path, threads)
        names = [i.name for i in session.get_inputs()]

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            return session.run(None, dict(zip(names, inputs, strict=True)))

        return run


EXPORTERS.register("onnx")(OnnxExporter())


def _initializer_elements(graph) -> dict[str, int]:
    """Stored weight elements by kind: 8-bit integers and floats (int32 biases and shapes left out)."""
    import numpy as np
    from onnx import TensorProto

    kinds = {TensorProto.INT8: "int8", TensorProto.UINT8: "int8", TensorProto.FLOAT: "float",
             TensorProto.FLOAT16: "float", TensorProto.DOUBLE: "float", TensorProto.BFLOAT16: "float"}
    out: dict[str, int] = {}
    for t in graph.initializer:
        if (kind := kinds.get(t.data_type)) is not None:
            out[kind] = out.get(kind, 0) + int(np.prod(t.dims, dtype=np.int64))
    return out

