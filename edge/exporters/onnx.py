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
import time
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
from egoedge.trainer.common.export_speedups import speed_up_onnx_export
from egoedge.trainer.common.io import EgoedgeError, atomic_write
from egoedge.trainer.common.modules import in_modules
from egoedge.trainer.quantize.gap import Stat, gap_row
from egoedge.trainer.quantize.pt2e import BIAS_SAMPLES
from egoedge.trainer.quantize.ptq import GAP_SAMPLES

OPSET = 18


_shared_pool: dict = {}  # this process's ONNX Runtime state: "sessions" made, the global pool's "threads"


def ort_session(path: Path, threads: int | None = None, profile_prefix: str | None = None, shared: bool = False):
    """A CPU ``onnxruntime.InferenceSession`` on ``threads`` intra-op threads, profiling to ``profile_prefix`` if given.

    The bench's timing and its op profiler both open sessions here, so a profile describes the
    session that was timed. ``shared``: on the process's global pool (:func:`ort_shared_sessions`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if shared:
        options.use_per_session_threads = False
    elif threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    _shared_pool["sessions"] = True
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_shared_sessions(paths: list[Path], threads: int | None) -> list:
    """Sessions on one global pool of ``threads`` intra-op threads, for running one after another in this process.

    Each session otherwise keeps a pool of its own, and on a 2-core machine the idle session's
    workers take the cores the other one runs on: timed in turns with its fused step, the CBKD
    student's clip model took 6.4 ms a call against 2.0 ms alone. ONNX Runtime builds its global
    pool with its environment, at the first session of the process; asked for later, it is not
    used and the sessions run on one thread. So only a process that has made no session yet may
    ask (the bench's fresh process for timing in turns), and it keeps that pool's size.
    """
    from onnxruntime.capi import _pybind_state as capi

    size = threads or 0  # 0: ONNX Runtime's default, one thread per core
    if _shared_pool.get("threads") != size:
        if _shared_pool.get("threads") is not None or _shared_pool.get("sessions"):
            raise EgoedgeError("onnx: sessions share one thread pool only in a process that has made no ONNX "
                               f"Runtime session yet (this one has; asked for {size} threads)")
        capi.set_global_thread_pool_sizes(size, 1)
        _shared_pool["threads"] = size
    return [ort_session(p, shared=True) for p in paths]


def module_nodes(graph, modules: tuple[str, ...]) -> set[str]:
    """Names of the nodes the dynamo exporter traced inside any of ``modules`` (dotted paths, e.g. ``pool``)."""
    found = set()
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        if any(in_modules(s, modules) for s in scopes):
            found.add(node.name)
    return found


# What the PT2E program every other backend lowers leaves float (XNNPACK's quantizer annotates convolutions,
# linears, adds, muls and concatenations): ONNX Runtime's quantizer would take these too, and its int8 would
# drift from the program whose agreement the gate's search measured (docs/export.md).
FLOAT_OP_TYPES = ("LayerNormalization", "Softmax")


def activation_matmuls(graph) -> list[str]:
    """The ``MatMul`` nodes of ``graph`` with no constant operand: attention products, which the program keeps float."""
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not constants.intersection(n.input)]


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
    recipe_precision = "int8"  # its own QDQ int8, made from the int8 recipe's calibration and fp32 modules

    def export(self, model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path,
               precision: str, calibration: Calibration, names: IONames = CLIP_IO,
               program: torch.nn.Module | None = None, choice: int = 0) -> dict:
        # ``program`` is not lowered: ONNX Runtime's int8 is its own QDQ format, made from ``model``
        # with the program's modules kept float and its calibration set. ``choice``: which int8 weights, the
        # fastest first (``int8_choices`` in the details says how many there are).
        import onnx

        check_precision(self, precision)
        speed_up_onnx_export()
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
            source, excluded, (chosen, choices) = (fp32, [], (0, 1)) if precision == "fp32" else \
                self._quantize(fp32, Path(tmp), calibration, names, keep, getattr(model, "int8_bias_correction", False),
                               choice)
            atomic_write(path, lambda p: p.write_bytes(source.read_bytes()))
            gap = None if precision == "fp32" else runtime_gap(
                Path(tmp) / "pre.onnx", source, fp32, [tuple(t.numpy() for t in s) for s in calibration[:GAP_SAMPLES]],
                names.inputs)
        graph = onnx.load(str(path)).graph
        ops = sorted({n.op_type for n in graph.node})
        weights = _weight_kind(graph)
        info = {"opset": OPSET, "ops": ops,
                "quantization": f"static QDQ, per-channel {weights}, uint8 activations (MinMax); layer "
                                "norms, softmax and attention products float, as in the PT2E program"
                if precision == "int8" else None}
        if precision == "int8":
            info["int8_weights_pct"] = int8_weight_share(_initializer_elements(graph))
            info["int8_choices"], info["int8_choice"] = choices, chosen
        if precision == "int8" and keep:
            info["float_nodes"] = len(excluded)
        if gap is not None:
            info["layer_gap"] = gap
        return info

    def _quantize(self, fp32: Path, tmp: Path, calibration: Calibration, names: IONames,
                  keep: tuple[str, ...] = (), correct: bool = False,
                  choice: int = 0) -> tuple[Path, list[str], tuple[int, int]]:
        """The int8 QDQ model, the nodes kept float, and (the weights taken, how many there were): ``choice`` asks
        for one, the last there is if there are fewer."""
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
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
            types = [t for t in sorted(set(QDQRegistry) | set(QLinearOpsRegistry)) if t not in FLOAT_OP_TYPES]
            samples = [tuple(t.numpy() for t in s) for s in calibration[:BIAS_SAMPLES]]

            graph = onnx.load(str(pre)).graph
            excluded = sorted({*exclude, *activation_matmuls(graph)})

            def make(path: Path, seven_bit: tuple[str, ...] = (), weights: QuantType = QuantType.QInt8) -> Path:
                # uint8 activations x int8 weights (U8S8) is the pair ONNX Runtime's x86 kernels are fastest
                # at (VNNI's u8*s8 dot product); int8 activations were measured slower (docs/export.md).
                quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=weights,
                                op_types_to_quantize=types,
                                nodes_to_exclude=excluded,
                                extra_options={"TensorQuantOverrides": {w: [{"reduce_range": True}]
                                                                        for w in seven_bit}})
                # 7-bit weights round twice as coarsely; the bias correction takes out the mean shift that adds.
                if correct or seven_bit:
                    correct_bias(pre, path, samples, names.inputs)
                return path

            make(out)
            check = samples[:SATURATION_SAMPLES]
            reference = qdq_outputs(pre, check, names.inputs)
            kernels = mse(qdq_outputs(out, check, names.inputs), reference)
            exact = mse(qdq_outputs(out, check, names.inputs, exact=True), reference)
            found = []  # (model, error, time over fp32's) of each candidate closer to fp32 than the full-range one
            if kernels > SATURATION_RATIO * exact:
                for name, variant in _unsaturated(graph, tuple(exclude)):
                    candidate = make(tmp / name, **variant)
                    # A candidate clearly slower than fp32 is no int8 worth having (uint8 depthwise convs run several
                    # times slower here); within SPEED_SLACK it is timing noise, which must not decide the gate.
                    if ((error := mse(qdq_outputs(candidate, check, names.inputs), reference)) < kernels
                            and (ratio := time_ratio(candidate, pre, check, names.inputs)) <= SPEED_SLACK):
                        found.append((candidate, error, ratio))
            choices = weight_choices(found) or [out]
        except Exception as e:  # noqa: BLE001
            raise lowering_error(self.format, e) from e
        finally:
            root.setLevel(level)
        chosen = min(choice, len(choices) - 1)
        return choices[chosen], exclude, (chosen, len(choices))

    def unavailable(self) -> str | None:
        return None

    def load(self, path: Path, threads: int | None = None) -> Session:
        return _runner(ort_session(path, threads))

    def load_in_turns(self, paths: list[Path], threads: int | None = None) -> list[Session]:
        """Sessions to run one after another in this process, on one shared pool (:func:`ort_shared_sessions`)."""
        return [_runner(s) for s in ort_shared_sessions(paths, threads)]


def _runner(session) -> Session:
    names = [i.name for i in session.get_inputs()]

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        return session.run(None, dict(zip(names, inputs, strict=True)))

    return run


EXPORTERS.register("onnx")(OnnxExporter())


# How many calibration samples the saturation check runs, and how far this CPU's int8 kernels may stray from the
# same QDQ model computed exactly before 7-bit weights are tried.
SATURATION_SAMPLES, SATURATION_RATIO = 32, 2.0
# How much slower than fp32 a candidate may run and still count as no slower. Timed in turns with fp32 the ratio
# holds on a loaded machine, but a model's speed still differs by tens of percent from one session to the next.
SPEED_SLACK = 1.5


# Candidates that time within this factor of the quickest run on the same kernels (7-bit weights in some layers or
# in all): among them the one closest to fp32 counts as the fastest.
SAME_SPEED = 1.2


def weight_choices(found: list[tuple[Path, float, float]]) -> list[Path]:
    """From ``(model, error, time ratio)`` candidates: the fastest (the closest to fp32 among those within
    ``SAME_SPEED`` of the quickest), then the closest to fp32 if that is another one; ``[]`` for none."""
    if not found:
        return []
    quickest = min(r for _, _, r in found)
    fastest = min((f for f in found if f[2] <= SAME_SPEED * quickest), key=lambda f: f[1])
    closest = min(found, key=lambda f: f[1])
    return [fastest[0]] + ([closest[0]] if closest is not fastest else [])


def _session(path: Path, exact: bool = False, spin: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if not spin:
        # Two sessions called in turns: workers spinning after one session's call take the cores the other runs on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def qdq_outputs(path: Path, samples: list[tuple[np.ndarray, ...]], input_names: tuple[str, ...],
                exact: bool = False) -> list[np.ndarray]:
    """Each sample's outputs of the model at ``path``, flattened into one vector: on this CPU's kernels, or with
    ``exact`` computed exactly (ONNX Runtime's graph optimizations off: a QDQ model's ops run in float on the
    quantized values, as no int8 kernel of this CPU does)."""
    session = _session(path, exact)
    return [np.concatenate([np.ravel(o) for o in session.run(None, dict(zip(input_names, s, strict=True)))])
            for s in samples]


def time_ratio(path: Path, reference: Path, samples: list[tuple[np.ndarray, ...]],
               input_names: tuple[str, ...]) -> float:
    """How many times longer the model at ``path`` takes than the one at ``reference``: the median, over ``samples``,
    of one call's time over the other's, the two called in turns so that load on the machine reaches both alike."""
    sessions = [_session(path, spin=False), _session(reference, spin=False)]
    ratios = []
    for i, s in enumerate([samples[0], *samples]):
        feed = dict(zip(input_names, s, strict=True))
        seconds = [0.0, 0.0]
        for k in (0, 1) if i % 2 else (1, 0):  # alternate which goes first
            start = time.perf_counter()
            sessions[k].run(None, feed)
            seconds[k] = time.perf_counter() - start
        if i:  # the first pair warms both up
            ratios.append(seconds[0] / seconds[1])
    return float(np.median(ratios))


def _dense(node) -> bool:
    """Whether ``node`` is a dense layer: a Gemm, MatMul, or Conv of one group (not depthwise or grouped)."""
    return node.op_type in ("Gemm", "MatMul") or node.op_type == "Conv" and \
        next((a.i for a in node.attribute if a.name == "group"), 1) == 1


def _weighted(graph, dense: bool = False):
    """``graph``'s Conv, Gemm and MatMul nodes with a second input (their weight); with ``dense``, its dense layers."""
    return (n for n in graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and (not dense or _dense(n)))


def weight_names(graph, dense: bool = False, skip: tuple[str, ...] = ()) -> list[str]:
    """The weight initializers of ``graph``'s Conv, Gemm and MatMul nodes but those named in ``skip``; with ``dense``,
    of its dense layers only."""
    inits = {i.name for i in graph.initializer}
    return [n.input[1] for n in _weighted(graph, dense) if n.input[1] in inits and n.name not in skip]


def _unsaturated(graph, skip: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """The int8 models of ``graph`` that cannot saturate ONNX Runtime's x86 u8*s8 kernels, as ``(file name, make's
    arguments)``; ``skip`` names the nodes kept float.

    Without VNNI (AVX2) those kernels add two products in int16 (vpmaddubsw), which saturates with
    full-range weights. 7-bit weights (reduce_range) cannot, on the same kernels, but lose a bit: first on dense
    layers only, as depthwise convs keep fewer weights per channel and lose more to 7 bits, then on every layer.
    uint8 weights (U8U8) keep 8 bits on slower kernels.
    """
    from onnxruntime.quantization import QuantType

    dense, everywhere = tuple(weight_names(graph, True, skip)), tuple(weight_names(graph, False, skip))
    seven = [("int8_7bit_dense.onnx", {"seven_bit": dense})] if dense != everywhere else []
    return [*seven, ("int8_7bit.onnx", {"seven_bit": everywhere}), ("int8_u8u8.onnx", {"weights": QuantType.QUInt8})]


def mse(got: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean over samples of the mean squared difference of ``got`` from ``reference``."""
    return float(np.mean([np.mean((g - r) ** 2) for g, r in zip(got, reference, strict=True)]))


def correct_bias(fp32: Path, int8: Path, samples: list[tuple[np.ndarray, ...]], input_names: tuple[str, ...]) -> int:
    """Take back, in each int8 Conv's int32 bias, the mean output shift its int8 weights cause; rewrites ``int8``.

    The PT2E program's bias correction (:func:`trainer.quantize.pt2e.quantize_pt2e`) for ONNX Runtime's
    own QDQ model: the shift per output channel is the weight error times the mean of each input
    channel, read from the fp32 model on the calibration samples. Returns how many convs changed.
    """
    import onnx
    from onnx import numpy_helper

    qm, fm = onnx.load(str(int8)), onnx.load(str(fp32))
    made_by = {o: n for n in qm.graph.node for o in n.output}
    inits = {t.name: t for t in qm.graph.initializer}
    floats = {t.name: t for t in fm.graph.initializer}

    def dequantized(name: str):
        node = made_by.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    plans = []
    for conv in qm.graph.node:
        if conv.op_type != "Conv" or len(conv.input) < 3:
            continue
        x, w, b = (dequantized(i) for i in conv.input[:3])
        q = made_by.get(x.input[0]) if x is not None else None
        if w is None or b is None or q is None or q.op_type != "QuantizeLinear":
            continue
        original = w.input[0].removesuffix("_quantized")
        if original not in floats or w.input[0] not in inits or b.input[0] not in inits:
            continue
        plans.append((conv, q.input[0], w, b, original))
    if not plans:
        return 0
    means = _channel_means(fm, sorted({p[1] for p in plans}), samples, input_names)
    for conv, source, w, b, original in plans:
        exact = numpy_helper.to_array(floats[original]).astype(np.float64)
        ints = numpy_helper.to_array(inits[w.input[0]]).astype(np.float64)
        per_channel = (-1, *([1] * (ints.ndim - 1)))
        scale = numpy_helper.to_array(inits[w.input[1]]).astype(np.float64).reshape(per_channel)
        zero = numpy_helper.to_array(inits[w.input[2]]).astype(np.float64).reshape(per_channel) \
            if len(w.input) > 2 and w.input[2] in inits else 0.0  # uint8 weights are asymmetric
        error = (ints - zero) * scale - exact  # (C_out, C_in / groups, k...)
        groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
        mean = means[source].reshape(groups, -1)  # input channels by group
        per_out = mean[np.arange(len(error)) // (len(error) // groups)]  # (C_out, C_in / groups)
        shift = (error.sum(axis=tuple(range(2, error.ndim))) * per_out).sum(1)
        bias = inits[b.input[0]]
        b_scale = numpy_helper.to_array(inits[b.input[1]]).astype(np.float64)
        fixed = numpy_helper.to_array(bias).astype(np.int64) - np.round(shift / b_scale).astype(np.int64)
        bias.CopyFrom(numpy_helper.from_array(np.clip(fixed, -2**31, 2**31 - 1).astype(np.int32), bias.name))
    onnx.save(qm, str(int8))
    return len(plans)


def quantized_weights(graph, dense: bool = False) -> list[np.ndarray]:
    """The stored integer weights of ``graph``'s Conv, Gemm and MatMul nodes (with ``dense``, of its dense layers
    only); quantized constants that are not weights, such as an embedding added to activations, left out."""
    return [w for is_dense, w in _stored_weights(graph) if is_dense or not dense]


def _stored_weights(graph) -> list[tuple[bool, np.ndarray]]:
    """``(dense layer?, stored integer weight)`` per quantized weight of ``graph``'s Conv, Gemm and MatMul nodes."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    made_by = {o: n for n in graph.node for o in n.output}
    out = []
    for node in _weighted(graph):
        dq = made_by.get(node.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
            out.append((_dense(node), numpy_helper.to_array(inits[dq.input[0]])))
    return out


def _weight_kind(graph) -> str:
    """The weights' type, as the manifest says it: uint8 (U8U8), 7-bit int8 when every int8 weight lies within +-64
    (``reduce_range``), 7-bit in dense layers when only those do, else 8-bit int8."""
    def seven_bit(weights: list[np.ndarray]) -> bool:
        return bool(weights) and max(int(np.abs(w.astype(np.int32)).max(initial=0)) for w in weights) <= 64

    stored = _stored_weights(graph)
    if any(w.dtype == np.uint8 for _, w in stored):
        return "uint8 weights"
    return "7-bit int8 weights" if seven_bit([w for _, w in stored]) else "int8 weights (7-bit in dense layers)" \
        if seven_bit([w for dense, w in stored if dense]) else "8-bit int8 weights"


def _exposing(model, names: list[str]):
    """A one-thread ONNX Runtime session of a copy of ``model`` with ``names`` also graph outputs: ``feed -> {name:
    value}`` for every output."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in names if t not in present)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    run = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in run.get_outputs()]
    return lambda feed: dict(zip(outputs, run.run(None, feed), strict=True))


def _channel_means(model, tensors: list[str], samples: list[tuple[np.ndarray, ...]],
                   input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each named tensor's mean per channel (axis 1) over ``samples``, from the float model."""
    run = _exposing(model, [t for t in tensors if t not in input_names])
    sums: dict[str, np.ndarray] = {}
    for sample in samples:
        feed = dict(zip(input_names, sample, strict=True))
        got = {**run(feed), **feed}
        for t in tensors:
            value = np.asarray(got[t], np.float64)
            axes = tuple(d for d in range(value.ndim) if d != 1)
            sums[t] = sums.get(t, 0) + value.mean(axes)
    return {t: v / len(samples) for t, v in sums.items()}


LAYER_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MOVE_TYPES = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Concat", "Split", "Slice",
              "Gather", "Expand", "Shape", "Cast")


def _scopes(traced: Path) -> dict[str, str]:
    """Node name -> the innermost module the dynamo exporter traced it in."""
    import onnx

    out = {}
    for node in onnx.load(str(traced)).graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        out[node.name] = scopes[-2] if len(scopes) >= 2 else ""
    return out


def runtime_gap(fp32: Path, int8: Path, traced: Path, samples: list[tuple[np.ndarray, ...]],
                input_names: tuple[str, ...]) -> list[dict]:
    """Each layer of the int8 QDQ model as ONNX Runtime computes it, against the fp32 model it was quantized from.

    A layer (Conv, Gemm, MatMul, or an op whose output is quantized) is read where the next op
    reads it, after its QuantizeLinear/DequantizeLinear pair; rows as
    :func:`trainer.quantize.gap.program_gap`'s, ``layer`` from the traced graph's module scopes.
    """
    import onnx

    fm, qm = onnx.load(str(fp32)), onnx.load(str(int8))
    floats = {o for n in fm.graph.node for o in n.output} | {i.name for i in fm.graph.input}
    made_by = {o: n for n in qm.graph.node for o in n.output}
    read_by: dict[str, list] = {}
    for n in qm.graph.node:
        for i in n.input:
            read_by.setdefault(i, []).append(n)
    scope = _scopes(traced)

    def dequantized(tensor: str) -> str:
        users = read_by.get(tensor, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            dq = [u for u in read_by.get(users[0].output[0], []) if u.op_type == "DequantizeLinear"]
            return dq[0].output[0] if dq else tensor
        return tensor

    def source(tensor: str) -> str:
        dq = made_by.get(tensor)
        if dq is not None and dq.op_type == "DequantizeLinear" and (q := made_by.get(dq.input[0])) is not None \
                and q.op_type == "QuantizeLinear":
            return q.input[0]
        return tensor

    points = []
    for n in qm.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type in MOVE_TYPES or not n.output:
            continue
        out = n.output[0]
        quantized = any(u.op_type == "QuantizeLinear" for u in read_by.get(out, []))
        # The quantizer renames a quantized graph output's producer (``logits`` -> ``logits_QuantizeLinear_Input``):
        # the fp32 model's name is then the one after its dequantize.
        reference = out if out in floats else dequantized(out)
        if reference not in floats or not (n.op_type in LAYER_TYPES or quantized):
            continue
        inp = source(n.input[0]) if n.input and n.input[0] else None
        points.append((n, (reference, dequantized(out)), (inp, n.input[0]) if inp in floats else None))
    want_f = sorted({p[0] for _, o, i in points for p in (o, i) if p is not None} - set(input_names))
    want_q = sorted({p[1] for _, o, i in points for p in (o, i) if p is not None} - set(input_names))

    run_f, run_q = _exposing(fm, want_f), _exposing(qm, want_q)
    stats = {n.name: (Stat(), Stat() if i is not None else None) for n, _, i in points}
    for sample in samples:
        feed = dict(zip(input_names, sample, strict=True))
        got_f, got_q = {**run_f(feed), **feed}, {**run_q(feed), **feed}
        for n, out, inp in points:
            s_out, s_in = stats[n.name]
            s_out.add(_tensor(got_f[out[0]]), _tensor(got_q[out[1]]))
            if s_in is not None:
                s_in.add(_tensor(got_f[inp[0]]), _tensor(got_q[inp[1]]))
    rows = []
    for n, _, _ in points:
        s_out, s_in = stats[n.name]
        dequantized_in = [made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear" for i in n.input]
        # A layer kept float still reads its int8 neighbour's dequantized output: int8 means its weights are too.
        int8 = all(dequantized_in[:2]) and len(dequantized_in) >= 2 if n.op_type in LAYER_TYPES else any(dequantized_in)
        rows.append(gap_row(n.name, scope.get(n.name, scope.get(n.name.split("/")[0], "")), n.op_type, int8,
                            s_out, s_in))
    return rows


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, np.float32))


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

