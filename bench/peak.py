"""This CPU's measured matrix-multiply peak, so each artifact can be read as a fraction of it.

fp32: a square GEMM through PyTorch (oneDNN/MKL). int8: the same GEMM as ONNX Runtime's
``MatMulInteger`` (MLAS int8 kernels, VNNI where the CPU has it). Both run with the bench's
thread count, best of several timed calls: a peak is what the machine *can* do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

# fp32 artifacts compute in float; Core ML's w8 (weight-only) too. int8/w8a8 run integer kernels.
PEAK_KIND = {"fp32": "fp32", "fp16": "fp32", "w8": "fp32", "int8": "int8", "w8a8": "int8"}
# LiteRT's w8 is dynamic range: XNNPACK quantizes each activation on the fly and multiplies in int8.
PEAK_KIND_OF_FORMAT = {("tflite", "w8"): "int8"}


def peak_kind(row: dict) -> str:
    """Which peak a row's arithmetic is measured against: ``"fp32"`` or ``"int8"``."""
    return PEAK_KIND_OF_FORMAT.get((row.get("format"), row["precision"]), PEAK_KIND.get(row["precision"], "fp32"))


def _best_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


def fp32_gemm_gmacs(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """GMAC/s of an ``n``×``n``×``n`` fp32 matmul in PyTorch."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        with torch.inference_mode():
            ms = _best_ms(lambda: a @ b, 3, repeats)
    finally:
        torch.set_num_threads(previous)
    return n ** 3 / (ms / 1000.0) / 1e9


def int8_gemm_gmacs(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """GMAC/s of an ``n``×``n``×``n`` uint8×int8→int32 matmul in ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 127, (n, n), dtype=np.int8), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 255, (n, n), dtype=np.uint8)
    ms = _best_ms(lambda: session.run(None, {"A": a}), 3, repeats)
    return n ** 3 / (ms / 1000.0) / 1e9


def measure_peaks(threads: int) -> dict[str, float]:
    """``{"fp32": GMAC/s, "int8": GMAC/s}`` of this CPU at ``threads`` threads."""
    return {"fp32": round(fp32_gemm_gmacs(threads), 2), "int8": round(int8_gemm_gmacs(threads), 2)}


def add_throughput(results: list[dict], peaks: dict[str, float] | None) -> None:
    """Give every timed row ``gmacs_per_s`` (its MACs over its median latency) and ``peak_pct``."""
    for r in results:
        median = (r.get("latency_ms") or {}).get("median")  # device parsers fill it (from the mean if need be)
        if not median or not r.get("macs"):
            r["gmacs_per_s"], r["peak_pct"] = None, None
            continue
        r["gmacs_per_s"] = float(f"{r['macs'] / 1e9 / (median / 1000.0):.4g}")
        # The peak is this host's: a row measured on a phone gets throughput but no % of it.
        on_host = r.get("device", "host") == "host"
        peak = (peaks or {}).get(peak_kind(r)) if on_host else None
        # Significant digits, not decimals: a tiny model far from the peak is a small number, never 0.
        r["peak_pct"] = float(f"{100.0 * r['gmacs_per_s'] / peak:.3g}") if peak else None
