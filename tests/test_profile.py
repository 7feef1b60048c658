"""Per-op profiles: aggregation, the runtimes' own trace formats, and `bench --profile` end to end."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from egoedge.bench.profile import etdump_events, ort_trace_events, profile_target, summarize_ops

FIXTURES = Path(__file__).parent / "fixtures" / "profile"


def test_summarize_ranks_ops_and_averages_per_call():
    events = [("Conv", "cpu", 3.0), ("Conv", "cpu", 1.0), ("Relu", "cpu", 0.25), ("Conv", "cpu", 2.0),
              ("Conv", "cpu", 2.0), ("Relu", "cpu", 0.25), ("Gemm", "cpu", 1.5)]
    p = summarize_ops(events, runs=2, tool="t", top=2)
    assert p["total_ms"] == 5.0 and p["distinct_ops"] == 3 and p["runs"] == 2
    assert [o["op"] for o in p["ops"]] == ["Conv", "Gemm"]  # top-2 only, slowest first
    conv = p["ops"][0]
    assert conv["calls"] == 2.0 and conv["ms"] == 4.0 and conv["pct"] == 80.0
    with pytest.raises(ValueError, match="runs must be >= 1"):
        summarize_ops(events, runs=0, tool="t")


def test_onnxruntime_trace_parsing_drops_the_warmup_run():
    # A real onnxruntime 1.32 trace: Conv -> Relu -> Flatten -> MatMul, run 3 times.
    trace = json.loads((FIXTURES / "ort_trace.json").read_text())
    every = ort_trace_events(trace)
    assert {op for op, _, _ in every} == {"Conv", "Relu", "Flatten", "MatMul"}
    assert len(every) == 12 and all(where == "cpu" and ms >= 0 for _, where, ms in every)
    assert len(ort_trace_events(trace, skip=1)) == 8
    assert ort_trace_events(trace, skip=3) == []  # more runs skipped than recorded: nothing left


def _event(name, raw, delegated):
    return SimpleNamespace(name=name, perf_data=SimpleNamespace(raw=raw), is_delegated_op=delegated,
                           delegate_backend_name=None)


def test_etdump_events_keep_kernels_and_drop_wrappers():
    block = SimpleNamespace(events=[
        _event("Method::execute", [9.0, 8.0], False),
        _event("DELEGATE_CALL", [5.0, 4.0], False),
        _event("Convolution (NHWC, F32) IGEMM #1", [1.0, 0.5], True),
        _event("Convolution (NHWC, F32) IGEMM #2", [1.0, 0.25], True),
        _event("OPERATOR_CALL", [0.3, 0.3], False),
        _event("native_call_native_layer_norm.out", [0.2, 0.1], False),
        SimpleNamespace(name="Program::load_method", perf_data=None, is_delegated_op=False),
    ])
    events = etdump_events([block], skip=1)
    assert events == [("Convolution (NHWC, F32) IGEMM", "xnnpack", 0.5),
                      ("Convolution (NHWC, F32) IGEMM", "xnnpack", 0.25), ("native_layer_norm", "portable", 0.1)]


def test_a_format_without_profiler_says_why():
    out = profile_target("tflite", Path("x.tflite"), [], 1, 1)
    assert "benchmark_model --enable_op_profiling" in out["error"]
    assert "no op profiler for coreml" in profile_target("coreml", Path("x.mlpackage"), [], 1, 1)["error"]
    missing = profile_target("onnx", Path("/nonexistent/model.onnx"), [], 1, 1)
    assert missing["error"]  # a broken artifact gives the row an error, not a crash


@pytest.fixture(scope="module")
def exported(fp32_export):
    return fp32_export


def test_bench_profile_reports_top_ops_per_runtime(exported, tmp_path):
    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig

    cfg = BenchConfig(warmup=1, iterations=3, profile_runs=3)
    report, paths = bench_export(exported, tmp_path, "host", cfg)
    rows = {r["name"]: r for r in report["results"]}
    et, ort, eager = rows["student_executorch_fp32"], rows["student_onnx_fp32"], rows["student"]
    assert et["profile"]["tool"] == "executorch etdump"
    assert {o["where"] for o in et["profile"]["ops"]} & {"xnnpack"}
    assert any(o["op"].startswith("Convolution") for o in et["profile"]["ops"])
    assert ort["profile"]["tool"] == "onnxruntime profiler" and any(o["op"] == "Conv" for o in ort["profile"]["ops"])
    assert eager["profile"]["tool"] == "torch.profiler"
    assert any("conv" in o["op"] for o in eager["profile"]["ops"])
    for r in (et, ort, eager):
        p = r["profile"]
        assert p["runs"] == 3 and p["total_ms"] > 0
        assert sum(o["pct"] for o in p["ops"]) <= 100.5
    # ExecuTorch rows carry the manifest's delegation counts, shown in the table
    assert et["delegation"]["delegated_subgraphs"] >= 1 and "portable_nodes" in et["delegation"]
    md = paths["report.md"].read_text()
    assert "## Where the time goes" in md and "**student_executorch_fp32** — executorch etdump" in md
    assert f"| {et['delegation']['delegated_subgraphs']} / {et['delegation']['portable_nodes']} |" in md


def test_bench_without_profile_has_no_profile(exported, tmp_path):
    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig

    report, paths = bench_export(exported, tmp_path, "host", BenchConfig(warmup=1, iterations=2, isolate=True))
    assert all("profile" not in r for r in report["results"])
    assert "Where the time goes" not in paths["report.md"].read_text()


def test_cli_rejects_a_bad_profile_run_count(exported):
    from typer.testing import CliRunner

    from egoedge.cli import app

    result = CliRunner().invoke(app, ["bench", str(exported), "--profile", "--profile-runs", "0"])
    assert result.exit_code != 0 and "--profile-runs must be >= 1" in result.output
