"""Host bench options: one process per target, the LiteRT delegate switch, time budgets."""

import json
import shutil
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from egoedge.bench.host_bench import BenchConfig
from egoedge.bench.measure import MIN_BUDGET_ITERATIONS, TURN_CALLS, time_calls, time_in_turns
from egoedge.cli import app
from egoedge.trainer.common.io import sha256_file


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mini_data_cfg):
    from conftest import make_ckpt

    from egoedge.edge.export import ExportConfig, export_checkpoint

    tmp = tmp_path_factory.mktemp("hostbench")
    ckpt = make_ckpt(tmp / "student.pt", mini_data_cfg)
    export_checkpoint(ckpt, tmp / "export", ExportConfig(formats=("tflite", "onnx"), parity_samples=4))
    # An artifact that was broken when exported (the manifest describes these very bytes): its runtime fails.
    broken = tmp / "export" / "student_onnx_fp32.onnx"
    broken.write_bytes(b"not an onnx file")
    manifest = json.loads((tmp / "export" / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "student_onnx_fp32")
    entry.update(bytes=broken.stat().st_size, sha256=sha256_file(broken))
    (tmp / "export" / "manifest.json").write_text(json.dumps(manifest))
    return tmp / "export"


def test_isolated_targets_report_their_own_memory(exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

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
    from egoedge.bench.bench_export import bench_export

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


def test_timing_in_turns_keeps_a_ratio_through_a_slow_spell():
    """A spell when the machine runs 3x slower falls on both callables timed in turns; timed one after the other,
    it falls on the second alone and triples their ratio."""
    calls = []

    def work(ms: float):
        def call():
            calls.append(1)
            time.sleep(ms * (3 if 30 <= len(calls) < 55 else 1) / 1000)
        return call

    fast, slow = work(2), work(4)
    apart = time_calls(fast, 0, 30)["median"], time_calls(slow, 0, 30)["median"]
    calls.clear()
    a, b = time_in_turns([fast, slow], 0, 30)
    assert apart[1] / apart[0] > 4 and 1.6 < b["median"] / a["median"] < 2.5
    assert a["iterations"] == b["iterations"] == 30 and len(calls) == 2 * 6 * (TURN_CALLS + 1)
    assert time_in_turns([fast], 1, 3)[0]["iterations"] == TURN_CALLS
    with pytest.raises(ValueError, match="iterations"):
        time_in_turns([fast], 0, 0)


def test_turns_take_the_budget_as_time_calls_does():
    """``--budget-s`` reaches timing in turns: each callable gets at least that many seconds of timed calls, in whole
    turns (so as many calls as the slowest-to-fill one needs)."""
    fast, slow = (lambda: time.sleep(0.001)), (lambda: time.sleep(0.004))
    a, b = time_in_turns([fast, slow], 0, 1000, budget_s=0.05)
    assert a["budget_s"] == b["budget_s"] == 0.05 and a["iterations"] % TURN_CALLS == 0
    assert sum(a["samples"]) >= 50 and sum(b["samples"]) >= 50  # ms: each its own budget, not 1000 calls
    assert MIN_BUDGET_ITERATIONS <= a["iterations"] == b["iterations"] < 1000
    with pytest.raises(ValueError, match="budget_s"):
        time_in_turns([fast], 0, 1, budget_s=0)


def test_tflite_loader_switches_the_delegate(exported):
    from egoedge.edge.exporters import EXPORTERS

    path = exported / "student_tflite_fp32.tflite"
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 32, 32)).astype(np.float32)
    with_delegate = EXPORTERS.get("tflite").load(path, threads=1)
    builtin = EXPORTERS.get("tflite").load(path, threads=1, xnnpack=False)
    # The switch takes effect: XNNPACK replaces the ops it takes with DELEGATE nodes; without it there are none.
    assert "DELEGATE" in {op["op_name"] for op in with_delegate.interpreter._get_ops_details()}
    assert "DELEGATE" not in {op["op_name"] for op in builtin.interpreter._get_ops_details()}
    np.testing.assert_allclose(with_delegate([x])[0], builtin([x])[0], atol=1e-4)


def test_an_artifact_changed_after_export_is_refused_unloaded(exported, tmp_path):
    """bench compares bytes and sha256 with the manifest before loading; the other rows go on."""
    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    shutil.copy(exported.parent / "student.pt", tmp_path / "student.pt")  # the manifest's ../student.pt
    tflite = folder / "student_tflite_fp32.tflite"
    tflite.write_bytes(tflite.read_bytes()[: tflite.stat().st_size // 2])  # truncated, e.g. a copy cut short
    args = ["bench", str(folder), "--iterations", "2", "--warmup", "0", "--in-process", "--out", str(tmp_path / "b")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "1 artifact(s) modified or truncated after export, not run: student_tflite_fp32" in \
        " ".join(result.output.split())
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "report.json").read_text())["results"]}
    assert rows["student_tflite_fp32"]["status"] == "failed" and rows["student_tflite_fp32"]["latency_ms"] is None
    assert "has " in rows["student_tflite_fp32"]["error"] and rows["student"]["status"] == "ok"
    assert CliRunner().invoke(app, [*args, "--allow-failed"]).exit_code == 0
    tflite.write_bytes((exported / tflite.name).read_bytes()[::-1])  # same size, other bytes
    assert CliRunner().invoke(app, args).exit_code == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "report.json").read_text())["results"]}
    assert "sha256 differs" in rows["student_tflite_fp32"]["error"]


def test_a_copied_export_folder_is_benchmarked_on_its_saved_sample(exported, tmp_path):
    """Without its source checkpoint: each artifact timed on sample_input and checked against sample_output."""
    from egoedge.bench.bench_export import bench_export

    folder = tmp_path / "elsewhere" / "export"
    shutil.copytree(exported, folder)
    report, paths = bench_export(folder, tmp_path / "b", "host", BenchConfig(warmup=0, iterations=2))
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == {"student_tflite_fp32", "student_onnx_fp32"}  # no eager row: no model to build
    tfl = rows["student_tflite_fp32"]
    assert tfl["status"] == "ok" and tfl["top1_agreement"] == 100.0 and tfl["parity_max_abs"] < 1e-4
    assert tfl["accuracy"] is None and tfl["latency_ms"]["iterations"] == 2
    assert "the eager model and test accuracy are skipped" in report["summary"]["source checkpoint"]
    assert "source checkpoint" in paths["report.md"].read_text()
    # A sample that does not match what the artifact computes is caught: agreement is measured, not assumed.
    np.save(folder / "sample_output.npy", -np.load(folder / "sample_output.npy"))
    report, _ = bench_export(folder, tmp_path / "c", "host", BenchConfig(warmup=0, iterations=2))
    assert next(r for r in report["results"] if r["name"] == "student_tflite_fp32")["parity_max_abs"] > 1e-3


def test_a_stream_whose_turns_fail_or_whose_clip_is_damaged_keeps_the_rows_ratio(tmp_path):
    """A failed turn leaves its error and no ratio of its own; a clip artifact whose bytes differ from the
    manifest's is never opened for turns. Either way ``add_stream_ratios`` takes the ratio from the two rows."""
    from egoedge.bench.host_bench import StreamPair, add_stream_ratios, intact_file, stream_fields

    class NoLabels:
        def labels(self):
            return None

    pair = StreamPair(None, 4, 8, "student_onnx_fp32", ("student_step_onnx_fp32",), (1, 3, 8, 8))
    frame = {"median": 0.5}
    block = stream_fields(pair, frame, None, NoLabels(), {"error": "the onnxruntime-cpu process died"})
    assert block["turns_error"] == "the onnxruntime-cpu process died" and block["ratio"] is None
    rows = [{"name": "student_onnx_fp32", "status": "ok", "latency_ms": {"median": 2.0}},
            {"name": "student_step_onnx_fp32", "status": "ok", "latency_ms": frame, "streaming": block}]
    add_stream_ratios(rows)
    assert (block["timed"], block["clip_ms"], block["ratio"]) == ("apart", 2.0, 0.25)

    clip = tmp_path / "clip.onnx"
    clip.write_bytes(b"12345678")
    artifact = {"file": "clip.onnx", "bytes": 8, "sha256": sha256_file(clip)}
    assert intact_file(tmp_path, artifact) == clip
    clip.write_bytes(b"87654321")  # same size, other bytes
    assert intact_file(tmp_path, artifact) is None
    assert intact_file(tmp_path, None) is None and intact_file(tmp_path, {**artifact, "file": ""}) is None


def test_the_fork_server_imports_each_runtimes_modules_and_not_executorchs_compiler():
    """Isolated targets start warm (timm for eager models, ExecuTorch's bindings) without executorch.exir in them."""
    import importlib

    from egoedge.bench.host_bench import preloaded_modules
    from egoedge.bench.runtimes import RUNTIMES

    modules = preloaded_modules()
    assert modules[0] == "egoedge.bench.host_bench" and "timm" in modules
    assert "executorch.extension.pybindings._C" in modules
    assert not [m for m in modules if m == "executorch.runtime" or m.startswith("executorch.exir")]
    for name in RUNTIMES.keys():
        assert set(RUNTIMES.get(name).runtime_modules) <= set(modules)
    for m in modules:
        importlib.import_module(m)
