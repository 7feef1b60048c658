"""Qualcomm AI Hub as a device backend, up to the client boundary: the `qai_hub` module's functions are
replaced by stand-ins that answer in the client's documented shapes (tests/fixtures/aihub/) and run the
artifacts on this host's own runtimes, so what comes back is what the artifact computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import qai_hub
from clients import like
from typer.testing import CliRunner

from egoedge.bench.devices.on_device.aihub import profile_fields
from egoedge.bench.host_bench import BenchConfig
from egoedge.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "aihub"
PROFILE = json.loads((FIXTURES / "profile_tflite.json").read_text())


class FakeJob:
    """A finished (or failing, or hanging) profiled inference job, with the client's ``wait``/``download_*``."""

    def __init__(self, job_id: str, profile=None, outputs=None, state=qai_hub.JobStatus.State.SUCCESS, message=None,
                 hang: bool = False) -> None:
        self.job_id, self.url = job_id, f"https://workbench.aihub.qualcomm.com/jobs/{job_id}/"
        self._profile, self._outputs = profile, outputs
        self._status, self._hang = qai_hub.JobStatus(state, message), hang

    @like(qai_hub.InferenceJob.wait)
    def wait(self, timeout=None):
        if self._hang:
            raise TimeoutError(f"timed out after {timeout} s")
        return self._status

    @like(qai_hub.InferenceJob.download_profile)
    def download_profile(self, filename=None):
        return self._profile

    @like(qai_hub.InferenceJob.download_output_data)
    def download_output_data(self, filename=None):
        return self._outputs


class FakeHub:
    """The client's module-level API as egoedge calls it, with the installed client's signatures; a profiled
    inference job runs the artifact with this host's runtime on the inputs it was sent."""

    JobStatus, Device = qai_hub.JobStatus, qai_hub.Device

    def __init__(self, fail: dict[str, str] | None = None, hang: tuple[str, ...] = ()) -> None:
        self.fail, self.hang, self.submitted = fail or {}, hang, []

    @like(qai_hub.get_devices)
    def get_devices(self, name: str = "", os: str = "", attributes=None):
        return [qai_hub.Device(d["name"], d["os"], d["attributes"]) for d in
                json.loads((FIXTURES / "devices.json").read_text())]

    @like(qai_hub.submit_profile_job)
    def submit_profile_job(self, *args, **kwargs):
        raise AssertionError("unreachable: the deprecated call fails in like()")

    @like(qai_hub.submit_inference_job)
    def submit_inference_job(self, model, device, inputs=None, name=None, options="", retry=True, profile=True,
                             project=None):
        from egoedge.edge.exporters import EXPORTERS

        self.submitted.append({"model": Path(model).name, "device": (device.name, device.os), "options": options,
                               "profile": profile, "inputs": None if inputs is None else sorted(inputs)})
        stem = Path(model).stem
        if stem in self.fail:
            return FakeJob("ji" + stem[:6], state=qai_hub.JobStatus.State.FAILED, message=self.fail[stem])
        outputs = None
        if inputs is not None:
            session = EXPORTERS.get({".tflite": "tflite", ".onnx": "onnx"}[Path(model).suffix]).load(Path(model))
            [(key, samples)] = inputs.items()
            outputs = {"logits": [session([x])[0] for x in samples]}
        return FakeJob("ji" + stem[:6], PROFILE if profile else None, outputs, hang=stem in self.hang)


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
    assert out["placement"] == {"NPU": 5, "GPU": 1, "CPU": 1}
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
        assert r["status"] == "ok" and r["runtime"] == f"qai-hub-{fmt}", r["error"]
        assert r["latency_ms"]["median"] == pytest.approx(0.6115) and r["peak_rss_mb"] == pytest.approx(9.3)
        # The stand-in ran the artifact on exactly the inputs egoedge sent: they must be the test clips.
        assert r["top1_agreement"] == 100.0 and r["parity_max_abs"] < 1e-4
        assert r["placement"] == {"NPU": 5, "GPU": 1, "CPU": 1}  # layers per compute unit, from the profile
        assert r["tool"]["chipset"] == "qualcomm-snapdragon-8gen3" and r["tool"]["job"].startswith("ji")
    # One profiled inference job per artifact, on the test clips, each clip timed at least once.
    n = len(json.loads((exported / "manifest.json").read_text())["artifacts"])
    assert len(hub.submitted) == 2 and n > 2
    for job in hub.submitted:
        assert job["profile"] is True and job["inputs"] == ["clip"]
        assert job["device"] == ("Samsung Galaxy S24 (Family)", "14")
        iterations = int(job["options"].split()[-1])
        assert job["options"].startswith("--max_profiler_iterations ") and iterations >= 10


def test_failed_and_hung_jobs_become_failed_rows_and_the_rest_go_on(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    hub.fail = {"student_tflite_fp32": "Failed to run the model on the device: TFLite op MEAN unsupported"}
    hub.hang = ("student_onnx_fp32",)
    report, _ = bench_export(exported, tmp_path, "aihub:Snapdragon 8 Elite QRD",
                             BenchConfig(iterations=3, warmup=0, device_timeout_s=5))
    rows = {r["name"]: r for r in report["results"] if r["device"].startswith("aihub:")}
    tfl, onnx = rows["student_tflite_fp32@aihub"], rows["student_onnx_fp32@aihub"]
    assert tfl["status"] == "failed" and "TFLite op MEAN unsupported" in tfl["error"]
    assert "jobs/jistuden" in tfl["error"]  # the job's address, to look it up
    assert onnx["status"] == "failed" and "did not finish within 5 s" in onnx["error"]
    assert [r["status"] for r in report["results"] if r["device"] == "host"] == ["ok"]  # the eager reference


def test_the_budget_bounds_all_waiting(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    report, _ = bench_export(exported, tmp_path, "aihub:Google Pixel 8", BenchConfig(iterations=3, warmup=0,
                                                                                    budget_s=1e-9))
    rows = [r for r in report["results"] if r["device"].startswith("aihub:")]
    assert rows and all(r["status"] == "failed" for r in rows)
    assert "budget-s" in rows[0]["error"] and all("not run" in r["error"] for r in rows[1:])


def test_a_device_lacking_a_framework_is_refused_before_any_upload(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    report, _ = bench_export(exported, tmp_path, "aihub:Google Pixel 8", BenchConfig(iterations=3, warmup=0))
    skipped = report["devices"]["aihub:Google Pixel 8"]["skipped"]
    assert skipped["student_onnx_fp32"] == ("Google Pixel 8 lacks framework:onnx (it lists framework:tflite)")
    assert [j["model"] for j in hub.submitted] == ["student_tflite_fp32.tflite"]  # nothing else was uploaded


def test_a_device_is_chosen_by_name_or_by_attributes(hub, exported, tmp_path):
    from egoedge.bench.bench_export import bench_export

    report, _ = bench_export(exported, tmp_path, "aihub:chipset:qualcomm-snapdragon-8-elite+framework:onnx",
                             BenchConfig(iterations=3, warmup=0))
    assert set(report["devices"]) == {"aihub:Snapdragon 8 Elite QRD"}
    assert {j["device"] for j in hub.submitted} == {("Snapdragon 8 Elite QRD", "15")}
    result = CliRunner().invoke(app, ["bench", str(exported), "--device", "aihub:chipset:apple-a17",
                                      "--out", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no aihub device 'chipset:apple-a17'" in " ".join(result.output.split())


def test_the_stand_ins_keep_to_the_installed_client():
    """Every client function egoedge calls is called through a stand-in bound to the real signature: a
    parameter the installed client lacks fails, and so does a function it deprecates."""
    import inspect

    params = inspect.signature(qai_hub.submit_inference_job).parameters
    assert {"model", "device", "inputs", "name", "options", "profile"} <= set(params)  # what egoedge passes
    assert params["profile"].default is True

    def lacks_profile(model, device, inputs=None, name=None, options=""):
        """An older client's submit_inference_job, without ``profile``."""

    class OldHub:
        @like(lacks_profile)
        def submit_inference_job(self, **kwargs):
            return None

    with pytest.raises(TypeError, match="unexpected keyword argument 'profile'"):
        OldHub().submit_inference_job(model="m.tflite", device=qai_hub.Device("x"), profile=True)
    with pytest.raises(pytest.fail.Exception, match="submit_profile_job, which the installed client deprecates"):
        FakeHub().submit_profile_job(model="m.tflite", device=qai_hub.Device("x"))


def test_the_profile_fixture_is_what_the_installed_client_builds():
    """tests/fixtures/aihub/profile_tflite.json is the dict the client's own converter makes from the service's
    ProfileDetail message: built here with the installed client's protobuf and converter."""
    from qai_hub import client as hub_client
    from qai_hub.public_api_pb2 import ComputeUnit, ProfileDetail

    summary = PROFILE["execution_summary"]
    pb = ProfileDetail(major_version=1, minor_version=2, execution_time=summary["estimated_inference_time"],
                       after_execution_peak_memory=summary["estimated_inference_peak_memory"],
                       cold_load_time=summary["first_load_time"],
                       after_cold_load_peak_memory=summary["first_load_peak_memory"],
                       warm_load_time=summary["warm_load_time"],
                       after_warm_load_peak_memory=summary["warm_load_peak_memory"],
                       compile_time=summary["compile_time"],
                       after_compile_peak_memory=summary["compile_peak_memory"])
    for stage, field in (("first_load", "cold_load_memory"), ("warm_load", "warm_load_memory"),
                         ("inference", "execution_memory")):
        memory = getattr(pb, field)
        memory.increase.lower, memory.increase.upper = summary[f"{stage}_memory_increase_range"]
        memory.peak.lower, memory.peak.upper = summary[f"{stage}_memory_peak_range"]
    pb.all_cold_load_times.extend(summary["all_first_load_times"])
    pb.all_warm_load_times.extend(summary["all_warm_load_times"])
    pb.all_execution_times.extend(summary["all_inference_times"])
    for layer in PROFILE["execution_detail"]:
        pb.layer_details.add(name=layer["name"], layer_type_name=layer["type"], execution_time=layer["execution_time"],
                             compute_unit=ComputeUnit.Value("COMPUTE_UNIT_" + layer["compute_unit"]))
    built = json.loads(json.dumps(hub_client._profile_pb_to_python_dict(pb)))  # tuples as JSON lists
    assert built == PROFILE
