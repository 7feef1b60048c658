"""Qualcomm AI Hub as a device backend, up to the client boundary: the `qai_hub` module's functions are
replaced by stand-ins that answer in the client's documented shapes (tests/fixtures/aihub/) and run the
artifacts on this host's own runtimes, so what comes back is what the artifact computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import qai_hub
from typer.testing import CliRunner

from egoedge.bench.devices.on_device.aihub import profile_fields
from egoedge.bench.host_bench import BenchConfig
from egoedge.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "aihub"
PROFILE = json.loads((FIXTURES / "profile_tflite.json").read_text())


class FakeJob:
    """A finished (or failing, or hanging) job, with the client's ``wait``/``download_*`` methods."""

    def __init__(self, job_id: str, result=None, state=qai_hub.JobStatus.State.SUCCESS, message=None,
                 hang: bool = False) -> None:
        self.job_id, self.url = job_id, f"https://workbench.aihub.qualcomm.com/jobs/{job_id}/"
        self._result, self._status, self._hang = result, qai_hub.JobStatus(state, message), hang

    def wait(self, timeout=None):
        if self._hang:
            raise TimeoutError(f"timed out after {timeout} s")
        return self._status

    def download_profile(self):
        return self._result

    def download_output_data(self):
        return self._result


class FakeHub:
    """The client's module-level API as egoedge calls it; inference runs the artifact with the host runtime."""

    JobStatus, Device = qai_hub.JobStatus, qai_hub.Device

    def __init__(self, fail: dict[str, str] | None = None, hang: tuple[str, ...] = ()) -> None:
        self.fail, self.hang, self.submitted = fail or {}, hang, []

    def get_devices(self, name: str = "", os: str = "", attributes=None):
        return [qai_hub.Device(d["name"], d["os"], d["attributes"]) for d in
                json.loads((FIXTURES / "devices.json").read_text())]

    def submit_profile_job(self, model, device, name=None, options="", retry=True):
        self.submitted.append(("profile", Path(model).name, device.name, options))
        stem = Path(model).stem
        if stem in self.fail:
            return FakeJob("jp" + stem[:6], state=qai_hub.JobStatus.State.FAILED, message=self.fail[stem])
        return FakeJob("jp" + stem[:6], PROFILE, hang=stem in self.hang)

    def submit_inference_job(self, model, device, inputs, name=None, options="", retry=True):
        from egoedge.edge.exporters import EXPORTERS

        self.submitted.append(("inference", Path(model).name, device.name, sorted(inputs)))
        fmt = {".tflite": "tflite", ".onnx": "onnx"}[Path(model).suffix]
        session = EXPORTERS.get(fmt).load(Path(model))
        [(key, samples)] = inputs.items()
        outputs = [session([x])[0] for x in samples]
        return FakeJob("ji" + Path(model).stem[:6], {"logits": outputs})


@pytest.fixture(scope="module")
def exported(fp32_export):
    return fp32_export


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr("egoedge.bench.devices.aihub.client", lambda: fake)
    monkeypatch.setattr("egoedge.bench.devices.on_device.aihub.client", lambda: fake)
    return fake


def test_profile_fields_read_the_documented_profile():
    out = profile_fields(PROFILE)
    assert out["latency_ms"]["median"] == pytest.approx(0.6115) and out["latency_ms"]["iterations"] == 10
    assert out["peak_rss_mb"] == pytest.approx(9.3) and out["load_ms"] == pytest.approx(184.213)
    assert out["compute_units"] == {"NPU": 5, "GPU": 1, "CPU": 1}
    legacy = {"execution_summary": {"estimated_inference_time": 700, "estimated_inference_peak_memory": None}}
    assert profile_fields(legacy)["latency_ms"]["median"] == pytest.approx(0.7)  # profile format 0: one figure


def test_farm_devices_are_listed_on_request_only(hub, monkeypatch):
    result = CliRunner().invoke(app, ["devices", "--farm", "aihub"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Samsung Galaxy S24 (Family)" in text and "qualcomm-snapdragon-8gen3" in text and "Google Pixel 8" in text
    from egoedge.bench.devices.aihub import discover_aihub

    found = {d.id: d for d in discover_aihub()}
    assert len(found) == 3 and found["Samsung Galaxy S24 (Family)"].details["os"] == "14"  # per name, newest OS
    monkeypatch.setattr(hub, "get_devices", lambda **kw: pytest.fail("a plain `egoedge devices` queried the farm"))
    monkeypatch.setenv("EGOEDGE_ADB", "/nonexistent/adb")
    assert CliRunner().invoke(app, ["devices"]).exit_code == 0
    bad = CliRunner().invoke(app, ["devices", "--farm", "awsfarm"])
    assert bad.exit_code == 1 and "unknown farm 'awsfarm'; valid: aihub" in bad.output


def test_an_unconfigured_client_gets_one_line(hub, monkeypatch, exported, tmp_path):
    def unconfigured(**kw):
        raise qai_hub.client.UserError("Failed to load client configuration file.\n~/.qai_hub/client.ini not found")

    monkeypatch.setattr(hub, "get_devices", unconfigured)
    listed = CliRunner().invoke(app, ["devices", "--farm", "aihub"], env={"COLUMNS": "250"})
    assert "AI Hub is not configured" in " ".join(listed.output.split())
    result = CliRunner().invoke(app, ["bench", str(exported), "--device", "aihub:Google Pixel 8",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert line.startswith("error: no aihub device 'Google Pixel 8' (attached: none): AI Hub is not configured")
    assert "qai-hub configure --api_token" in line


def test_artifacts_are_profiled_and_scored_on_a_hosted_phone(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    cfg = BenchConfig(iterations=10, warmup=0)
    report, _ = bench_export(exported, tmp_path, "aihub:Samsung Galaxy S24 (Family)", cfg)
    rows = {r["name"]: r for r in report["results"] if r["device"].startswith("aihub:")}
    assert set(rows) == {"student_tflite_fp32@aihub", "student_onnx_fp32@aihub"}
    assert "runs tflite and onnx artifacts here, not executorch" in \
        report["devices"]["aihub:Samsung Galaxy S24 (Family)"]["skipped"]["student_executorch_fp32"]
    for fmt in ("tflite", "onnx"):
        r = rows[f"student_{fmt}_fp32@aihub"]
        assert r["status"] == "ok" and r["runtime"] == f"qai-hub-{fmt}"
        assert r["latency_ms"]["median"] == pytest.approx(0.6115) and r["peak_rss_mb"] == pytest.approx(9.3)
        # The stand-in ran the artifact on exactly the inputs egoedge sent: they must be the test clips.
        assert r["top1_agreement"] == 100.0 and r["parity_max_abs"] < 1e-4
        assert r["tool"]["chipset"] == "qualcomm-snapdragon-8gen3" and r["tool"]["compute_units"]["NPU"] == 5
        assert set(r["tool"]["jobs"]) == {"profile", "inference"}
    assert ("profile", "student_tflite_fp32.tflite", "Samsung Galaxy S24 (Family)",
            "--max_profiler_iterations 10") in hub.submitted
    assert all(s[3] == ["clip"] for s in hub.submitted if s[0] == "inference")


def test_failed_and_hung_jobs_become_failed_rows_and_the_rest_go_on(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    hub.fail = {"student_tflite_fp32": "Failed to run the model on the device: TFLite op MEAN unsupported"}
    hub.hang = ("student_onnx_fp32",)
    report, _ = bench_export(exported, tmp_path, "aihub:Google Pixel 8", BenchConfig(iterations=3, warmup=0,
                                                                                    device_timeout_s=5))
    rows = {r["name"]: r for r in report["results"] if r["device"].startswith("aihub:")}
    tfl, onnx = rows["student_tflite_fp32@aihub"], rows["student_onnx_fp32@aihub"]
    assert tfl["status"] == "failed" and "TFLite op MEAN unsupported" in tfl["error"]
    assert "jobs/jpstuden" in tfl["error"]  # the job's address, to look it up
    assert onnx["status"] == "failed" and "did not finish within 5 s" in onnx["error"]
    assert [r["status"] for r in report["results"] if r["device"] == "host"] == ["ok"]  # the eager reference


def test_the_budget_bounds_all_waiting(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    report, _ = bench_export(exported, tmp_path, "aihub:Google Pixel 8", BenchConfig(iterations=3, warmup=0,
                                                                                    budget_s=1e-9))
    rows = [r for r in report["results"] if r["device"].startswith("aihub:")]
    assert rows and all(r["status"] == "failed" for r in rows)
    assert "budget-s" in rows[0]["error"] and all("not run" in r["error"] for r in rows[1:])
