"""Host bench options: one process per target, the LiteRT delegate switch, time budgets."""

import time

import numpy as np
import pytest

from bench.host_bench import BenchConfig
from bench.measure import MIN_BUDGET_ITERATIONS, time_calls


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mini_data_cfg):
    from conftest import make_ckpt

    from edge.export import ExportConfig, export_checkpoint

    tmp = tmp_path_factory.mktemp("hostbench")
    ckpt = make_ckpt(tmp / "student.pt", mini_data_cfg)
    export_checkpoint(ckpt, tmp / "export", ExportConfig(formats=("tflite", "onnx"), parity_samples=4))
    (tmp / "export" / "student_onnx_fp32.onnx").write_bytes(b"not an onnx file")  # a broken artifact
    return tmp / "export"


def test_isolated_targets_report_their_own_memory(exported, tmp_path):
    from bench.bench_export import bench_export

    report, _ = bench_export(exported, tmp_path, "host", BenchConfig(warmup=1, iterations=3, isolate=True))
    rows = {r["name"]: r for r in report["results"]}
    for name in ("student", "student_tflite_fp32"):
        r = rows[name]
        assert r["status"] == "ok", r
        assert r["peak_rss_mb"] > r["rss_added_mb"] > 0  # the child's peak includes its imports
    assert rows["student_tflite_fp32"]["top1_agreement"] == 100.0
    broken = rows["student_onnx_fp32"]  # the child's error comes back as the row's error; the run goes on
    assert broken["status"] == "failed" and broken["error"]


def test_litert_without_xnnpack_gives_the_same_logits(exported, tmp_path):
    from bench.bench_export import bench_export

    cfg = BenchConfig(warmup=1, iterations=3, options={"tflite": {"xnnpack": False}, "onnx": {"xnnpack": False}})
    report, _ = bench_export(exported, tmp_path, "host", cfg)
    rows = {r["name"]: r for r in report["results"]}
    tfl = rows["student_tflite_fp32"]
    assert tfl["status"] == "ok" and tfl["runtime_options"] == {"xnnpack": False}
    assert tfl["parity_max_abs"] < 1e-4
    assert "takes no options ['xnnpack']" in rows["student_onnx_fp32"]["error"]


def test_time_budget():
    t0 = time.perf_counter()
    stats = time_calls(lambda: time.sleep(0.01), warmup=0, iterations=1000, budget_s=0.1)
    assert time.perf_counter() - t0 < 1.0
    assert MIN_BUDGET_ITERATIONS <= stats["iterations"] < 20 and stats["budget_s"] == 0.1
    assert time_calls(lambda: None, 0, 1, budget_s=1e-9)["iterations"] == MIN_BUDGET_ITERATIONS
    with pytest.raises(ValueError, match="budget_s"):
        time_calls(lambda: None, 0, 1, budget_s=0)


def test_tflite_loader_switches_the_delegate(exported):
    from edge.exporters import EXPORTERS

    path = exported / "student_tflite_fp32.tflite"
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 32, 32)).astype(np.float32)
    on = EXPORTERS.get("tflite").load(path, threads=1)([x])[0]
    off = EXPORTERS.get("tflite").load(path, threads=1, xnnpack=False)([x])[0]
    np.testing.assert_allclose(on, off, atol=1e-4)
