import pytest

from egoedge.bench.peak import PEAK_KIND, add_throughput, fp32_gemm_gmacs, int8_gemm_gmacs


@pytest.mark.parametrize("gemm", [fp32_gemm_gmacs, int8_gemm_gmacs])
def test_gemm_peaks_are_measured(gemm):
    assert 0.01 < gemm(1, n=128, repeats=2) < 10_000


def test_throughput_against_the_matching_peak():
    rows = [{"precision": "fp32", "macs": 2e9, "latency_ms": {"median": 100.0}},
            {"precision": "int8", "macs": 2e9, "latency_ms": {"median": 50.0}},
            {"precision": "w8", "macs": 2e9, "latency_ms": {"median": 200.0}},
            {"precision": "fp32", "macs": None, "latency_ms": {"median": 1.0}},
            {"precision": "fp32", "macs": 1e9, "latency_ms": None}]
    add_throughput(rows, {"fp32": 40.0, "int8": 80.0})
    assert [r["gmacs_per_s"] for r in rows] == [20.0, 40.0, 10.0, None, None]
    assert [r["peak_pct"] for r in rows] == [50.0, 50.0, 25.0, None, None]
    assert set(PEAK_KIND) == {"fp32", "fp16", "w8", "int8", "w8a8"}
    # LiteRT's dynamic-range w8 multiplies in int8; Core ML's weight-only w8 in float.
    w8 = [{"format": f, "precision": "w8", "macs": 1e9, "latency_ms": {"median": 50.0}} for f in ("tflite", "coreml")]
    add_throughput(w8, {"fp32": 40.0, "int8": 80.0})
    assert [r["peak_pct"] for r in w8] == [25.0, 50.0]
