"""Phone benchmarks: output parsers on tool logs, command lines, the app protocol, device choice,
and whole runs against a scripted stand-in adb (files, tool runs, app, crash, unplug)."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from egoedge.bench.devices import DeviceError, DeviceInfo
from egoedge.bench.devices.on_device.android import intent_command
from egoedge.bench.devices.on_device.app_protocol import AppRequest
from egoedge.bench.devices.on_device.dispatch import parse_device_specs, select_device
from egoedge.bench.devices.on_device.ios import launch_env
from egoedge.bench.devices.on_device.native import NATIVE_TOOLS
from egoedge.bench.devices.on_device.parsers import parse_app_result, parse_benchmark_model, parse_executor_runner
from egoedge.bench.host_bench import BenchConfig

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = FIXTURES / "ondevice"
FAKE_ADB = FIXTURES / "adb" / "fake_device_adb.py"


def test_benchmark_model_recent_output():
    r = parse_benchmark_model((LOGS / "benchmark_model_v2.txt").read_text())
    lat = r["latency_ms"]
    assert (lat["iterations"], lat["warmup"]) == (262, 128)
    assert lat["mean"] == pytest.approx(3.8124) and lat["median"] == pytest.approx(3.726)
    assert lat["p95"] == pytest.approx(4.388) and lat["std"] == pytest.approx(0.287)
    assert r["load_ms"] == pytest.approx(41.226 + 9.811)  # init + first inference, like the host's load_ms
    assert r["peak_rss_mb"] == pytest.approx(21.4805) and r["rss_added_mb"] == pytest.approx(14.1094)
    assert r["details"]["xnnpack_nodes"] == "218/231"


def test_benchmark_model_older_output_has_no_median():
    r = parse_benchmark_model((LOGS / "benchmark_model_v1.txt").read_text())
    assert r["latency_ms"]["median"] == r["latency_ms"]["mean"] == pytest.approx(8.06427)
    assert "mean" in r["details"]["median_from"]
    assert r["peak_rss_mb"] is None and r["rss_added_mb"] == pytest.approx(31.8086)


def test_executor_runner_drops_warmup_iterations():
    r = parse_executor_runner((LOGS / "executor_runner.txt").read_text(), warmup=2)
    samples = [4.051, 3.958, 4.010, 3.999, 4.104, 3.947]
    assert r["latency_ms"]["iterations"] == 6 and r["latency_ms"]["warmup"] == 2
    assert r["latency_ms"]["median"] == pytest.approx(float(np.median(samples)))
    assert r["load_ms"] == pytest.approx(27.702 + 9.554)
    assert r["details"]["threads"] == 2


def test_executor_runner_total_only():
    r = parse_executor_runner((LOGS / "executor_runner_old.txt").read_text(), warmup=5)
    assert r["latency_ms"]["mean"] == pytest.approx(119.091 / 20) and r["latency_ms"]["iterations"] == 20
    assert "total" in r["details"]["median_from"]


@pytest.mark.parametrize("fixture,parse,message", [
    ("benchmark_model_error.txt", parse_benchmark_model, "Could not open"),
    ("executor_runner_error.txt", lambda t: parse_executor_runner(t, 0), "Missing operator"),
])
def test_tool_failures_name_the_cause(fixture, parse, message):
    with pytest.raises(DeviceError, match=message):
        parse((LOGS / fixture).read_text())


def test_native_command_lines():
    cfg = BenchConfig(warmup=3, iterations=20, threads=4)
    bm = NATIVE_TOOLS.get("tflite").command("/t/benchmark_model", "/t/m.tflite", cfg)
    assert "--graph=/t/m.tflite" in bm and "--num_threads=4" in bm and "--num_runs=20" in bm
    assert "--warmup_runs=3" in bm and "--use_xnnpack=true" in bm
    off = BenchConfig(budget_s=2.5, options={"tflite": {"xnnpack": False}})
    bm = NATIVE_TOOLS.get("tflite").command("b", "m", off)
    assert "--use_xnnpack=false" in bm and "--min_secs=2.5" in bm
    er = NATIVE_TOOLS.get("executorch").command("/t/executor_runner", "/t/m.pte", cfg)
    assert "--model_path=/t/m.pte" in er and "--num_executions=23" in er and "--cpu_threads=4" in er


def test_app_protocol_parameters():
    req = AppRequest("/sdcard/x/m.pte", "/sdcard/x/result.json", "/sdcard/x/inputs.f32", (16, 2, 3, 32, 32),
                     BenchConfig(warmup=2, iterations=7, threads=3))
    cmd = intent_command(req)
    for part in ("-n org.egoedge.demo/org.egoedge.demo.BenchmarkActivity", "--es model /sdcard/x/m.pte",
                 "--ei iterations 7", "--ei warmup 2", "--ei threads 3", "--ez xnnpack true",
                 "--es input_shape 16,2,3,32,32", "--es result /sdcard/x/result.json"):
        assert part in cmd
    env = launch_env(req)
    assert "EGOEDGE_ITERATIONS=7" in env and "EGOEDGE_XNNPACK=true" in env and env[0] == "--env"


def _ok_result(**change) -> dict:
    """A result as the app writes it (see android_demo/.../BenchmarkActivity.kt)."""
    result = {"protocol": 1, "status": "ok", "error": None, "name": "student_tflite_int8", "format": "tflite",
              "precision": "int8", "device": "Pixel 8 (Android 15, arm64-v8a)", "runtime": "litert 2.3.0 (xnnpack)",
              "threads": 4, "size_bytes": 127480, "load_ms": 10.0,
              "latency_ms": {"mean": 4.0, "median": 4.0, "p90": 4.8, "p99": 4.98, "std": 0.8165, "iterations": 3,
                             "warmup": 2},
              "latency_samples_ms": [3.0, 4.0, 5.0], "peak_rss_mb": 80.0, "logits": [[0.1, 0.9]]}
    result.update(change)
    return result


@pytest.mark.parametrize("text,message", [
    ("not json", "not JSON"),
    (json.dumps({"protocol": 2, "status": "ok"}), "protocol 2"),
    (json.dumps({"protocol": 1, "status": "error", "error": "out of memory"}), "out of memory"),
    (json.dumps({"protocol": 1, "status": "error"}), "breaks the protocol: \\(top\\): 'error' is a required"),
    (json.dumps(_ok_result(latency_samples_ms=[])), "latency_samples_ms: \\[\\] should be non-empty"),
    (json.dumps({k: v for k, v in _ok_result().items() if k != "device"}), "'device' is a required property"),
    (json.dumps(_ok_result(threads=0)), "threads: 0 is less than the minimum of 1"),
])
def test_app_result_errors(text, message):
    with pytest.raises(DeviceError, match=message):
        parse_app_result(text)


def test_app_result_ok():
    r = parse_app_result(json.dumps(_ok_result()))
    # egoedge recomputes the statistics from the samples; the app's own summary agrees with them.
    assert r["latency_ms"]["median"] == 4.0 and r["latency_ms"]["warmup"] == 2
    for key in ("mean", "median", "p90", "p99", "std"):
        assert r["latency_ms"][key] == pytest.approx(_ok_result()["latency_ms"][key], abs=1e-4)
    assert r["logits"].shape == (1, 2) and r["peak_rss_mb"] == 80.0
    assert r["details"]["device"].startswith("Pixel 8")


def _info(id, usable=True, emulator=False, reason=None):
    return DeviceInfo("android", id, id, "device" if usable else "unauthorized", usable, reason,
                      {"emulator": emulator})


@pytest.mark.parametrize("spec,found,expect", [
    ("android", [_info("A")], "A"),
    ("android:B", [_info("A"), _info("B")], "B"),
    ("emulator", [_info("A"), _info("emulator-5554", emulator=True)], "emulator-5554"),
    ("android", [_info("A"), _info("B")], "several android devices"),
    ("android:C", [_info("A")], "no android device 'C' (attached: A)"),
    ("android", [_info("A", usable=False, reason="accept the prompt")], "A: accept the prompt"),
    ("emulator", [_info("A")], "no usable emulator device"),
])
def test_select_device(spec, found, expect):
    if len(expect) < 16:
        assert select_device(spec, lambda kind: found).id == expect
    else:
        with pytest.raises(DeviceError, match=expect.replace("(", r"\(").replace(")", r"\)")):
            select_device(spec, lambda kind: found)


def test_device_specs():
    assert parse_device_specs("host, android:X") == ["host", "android:X"]
    for bad, message in (("", "empty"), ("gpu", "unknown device"), ("host:1", "takes no"), ("ios,ios", "twice")):
        with pytest.raises(DeviceError, match=message):
            parse_device_specs(bad)


# --- whole runs through the stand-in adb -------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(fp32_export):
    return fp32_export


@pytest.fixture
def phone(monkeypatch, tmp_path):
    # Run by this very Python: the stand-in app executes the pushed artifacts with egoedge's runtimes.
    adb = tmp_path / "adb"
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ADB}" "$@"\n')
    adb.chmod(0o755)
    monkeypatch.setenv("EGOEDGE_ADB", str(adb))
    monkeypatch.setenv("FAKE_DEVICE_ROOT", str(tmp_path / "phone"))
    monkeypatch.setattr("egoedge.bench.devices.on_device.android.POLL_S", 0.01)
    return monkeypatch


def _tool(tmp_path, name, log):
    """A 'native binary' that prints a recorded log, as the real tool would on the phone."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\ncat {LOGS / log}\n")
    return path


CFG = BenchConfig(warmup=1, iterations=3, isolate=False)


def test_native_tools_on_a_phone(phone, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    tools = {"tflite": _tool(tmp_path, "benchmark_model", "benchmark_model_v2.txt"),
             "executorch": _tool(tmp_path, "executor_runner", "executor_runner.txt")}
    report, paths = bench_export(exported, tmp_path / "out", "android", CFG, tools)
    phone_rows = [r for r in report["results"] if r["device"] == "android:FAKE0001"]
    assert {r["name"] for r in phone_rows} == {"student_executorch_fp32@android", "student_tflite_fp32@android"}
    assert all(r["status"] == "ok" for r in phone_rows), phone_rows
    tfl = next(r for r in phone_rows if r["format"] == "tflite")
    assert tfl["runtime"] == "litert-benchmark_model" and tfl["latency_ms"]["median"] == pytest.approx(3.726)
    assert tfl["gmacs_per_s"] > 0 and tfl["peak_pct"] is None  # the host's GEMM peak is not the phone's
    assert report["devices"]["android:FAKE0001"]["skipped"]["student_onnx_fp32"].startswith("no Android runner")
    assert [r["device"] for r in report["results"] if r["format"] == "pytorch"] == ["host"]
    assert (tmp_path / "phone/data/local/tmp/egoedge/student_tflite_fp32.tflite").is_file()
    saved = json.loads(paths["report.json"].read_text())
    assert "partial" not in saved and len(saved["results"]) == 3


def test_demo_app_gives_accuracy_and_agreement(phone, exported, tmp_path, mini_data_cfg):
    from egoedge.bench.bench_export import bench_export
    from egoedge.trainer.data import load_split, preprocess_spec, to_model_input

    inputs = to_model_input(load_split(mini_data_cfg, "test").clips, preprocess_spec(mini_data_cfg)).numpy()
    phone.setenv("FAKE_APP", "1")  # the stand-in app runs each pushed artifact on the pushed clips
    report, _ = bench_export(exported, tmp_path / "out", "android:FAKE0001", CFG)
    rows = [r for r in report["results"] if r["device"] != "host"]
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), rows
    for r in rows:
        assert r["runtime"].endswith("-android-app") and r["top1_agreement"] == 100.0
        assert r["latency_ms"]["iterations"] == 3 and r["peak_rss_mb"] == 88.2
    assert (tmp_path / "phone/sdcard/Android/data/org.egoedge.demo/files/egoedge/inputs.f32").stat().st_size \
        == inputs.astype(np.float32).nbytes


@pytest.mark.parametrize("mode,message", [("crash", "exited without a result (crash log: "),
                                          ("error", "Failed to load method forward")])
def test_app_faults_are_per_artifact(phone, exported, tmp_path, mode, message):
    from egoedge.bench.bench_export import bench_export

    phone.setenv("FAKE_APP", "1")
    phone.setenv("FAKE_APP_MODE", mode)
    report, _ = bench_export(exported, tmp_path / "out", "android", CFG)
    rows = [r for r in report["results"] if r["device"] != "host"]
    assert len(rows) == 2 and all(r["status"] == "failed" and message in r["error"] for r in rows), rows


def test_unplugged_mid_run_keeps_what_was_measured(phone, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    phone.setenv("FAKE_UNPLUG_AFTER", "1")
    tools = {"tflite": _tool(tmp_path, "benchmark_model", "benchmark_model_v2.txt"),
             "executorch": _tool(tmp_path, "executor_runner", "executor_runner.txt")}
    report, paths = bench_export(exported, tmp_path / "out", "android", CFG, tools)
    rows = [r for r in report["results"] if r["device"] != "host"]
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "failed" and "not found" in rows[1]["error"]
    saved = json.loads(paths["report.json"].read_text())
    assert saved["results"][-2]["status"] == "ok"


@pytest.mark.parametrize("fault,reason", [
    ("hang", "did not answer within 5 s"),  # adb wedged on the first app start: the call times out
    ("silent", "no result from the demo app within 5 s"),  # the app runs on and never writes its result
])
def test_a_wedged_adb_or_a_silent_app_is_a_failed_row_within_its_timeout(phone, exported, tmp_path, fault, reason):
    import time

    from egoedge.bench.bench_export import bench_export

    phone.setenv("FAKE_APP", "1")
    if fault == "hang":
        phone.setenv("FAKE_HANG", "am start")
        # Long enough for every other (fake) adb call on a loaded 2-core machine; the wedged one never answers.
        phone.setattr("egoedge.bench.devices.adb.TIMEOUT_S", 5.0)
    else:
        phone.setenv("FAKE_APP_MODE", "silent")
    start = time.monotonic()
    report, paths = bench_export(exported, tmp_path / "out", "android", replace(CFG, device_timeout_s=5.0))
    took = time.monotonic() - start
    rows = [r for r in report["results"] if r["device"] != "host"]
    assert len(rows) == 2 and reason in rows[0]["error"] and rows[0]["status"] == "failed"
    # The phone is still there: the next artifact runs (the wedge was once) or fails the same way (the app).
    assert rows[1]["status"] == ("ok" if fault == "hang" else "failed"), rows[1]
    saved = json.loads(paths["report.json"].read_text())
    assert [r["name"] for r in saved["results"]][-2:] == [r["name"] for r in rows]  # nothing lost, written
    assert took < 60  # bounded by the timeouts, not by the fault


def test_tool_failure_on_the_phone_is_reported(phone, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    tools = {"executorch": _tool(tmp_path, "executor_runner", "executor_runner_error.txt")}
    report, _ = bench_export(exported, tmp_path / "out", "android", CFG, tools)
    et = next(r for r in report["results"] if r["name"] == "student_executorch_fp32@android")
    assert et["status"] == "failed" and "Missing operator" in et["error"]
    skipped = report["devices"]["android:FAKE0001"]["skipped"]  # no tool and no app for tflite: not a row
    assert "demo app (org.egoedge.demo) is not installed" in skipped["student_tflite_fp32"]


@pytest.mark.slow
def test_demo_app_streams_a_step_and_a_pair_per_frame(phone, tmp_path, mini_data_cfg):
    """Streaming mode up to the boundary: a step with its tensors' roles, a pair with both halves pushed; the mode's
    extras sent, per-frame rows back."""
    from conftest import make_ckpt

    from egoedge.bench.bench_export import bench_export
    from egoedge.edge.export import ExportConfig, export_checkpoint

    ckpt = make_ckpt(tmp_path / "student.pt", mini_data_cfg)
    export_checkpoint(ckpt, tmp_path / "export", ExportConfig(formats=("executorch",), parity_samples=4,
                                                              streaming=True))
    phone.setenv("FAKE_APP", "1")
    report, _ = bench_export(tmp_path / "export", tmp_path / "out", "android:FAKE0001", CFG)
    rows = {r["name"]: r for r in report["results"] if r["device"] != "host"}
    pair = rows["student_stream_executorch_fp32@android"]
    assert pair["status"] == "ok" and pair["top1_agreement"] == 100.0, pair
    s = pair["streaming"]
    assert s["clip"] == "student_executorch_fp32@android"
    assert s["clip_ms"] == rows[s["clip"]]["latency_ms"]["median"] and s["ratio"] is not None
    assert s["frame_ms"]["iterations"] == 3
    pushed = tmp_path / "phone/sdcard/Android/data/org.egoedge.demo/files/egoedge"
    assert (pushed / "student_temporal_head_executorch_fp32.pte").is_file()
    step = rows["student_step_executorch_fp32@android"]
    assert step["status"] == "ok" and step["top1_agreement"] == 100.0, step
    assert step["streaming"]["clip"] == "student_executorch_fp32@android" and step["streaming"]["ratio"] is not None
    assert not next(iter(report["devices"].values()))["skipped"]  # the app streams both forms
