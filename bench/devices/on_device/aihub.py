"""Run artifacts on Qualcomm AI Hub's hosted phones through the official ``qai-hub`` client: one inference job
per artifact, profiled (``submit_inference_job(..., profile=True)``), gives speed, memory, where each layer ran
and the outputs on the test inputs.

``.tflite`` and ``.onnx`` artifacts run as they are (LiteRT and ONNX Runtime on the phone), on a device whose
attributes list that framework (checked before anything is uploaded). Each job waits at most
``--device-timeout`` seconds, and all of them together at most ``--budget-s``; a job that fails or times out
becomes a failed row with the reason and the job's address.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from egoedge.bench.devices.base import DeviceError, DeviceInfo
from egoedge.bench.devices.hub_client import client, hub_error
from egoedge.bench.host_bench import BenchConfig
from egoedge.bench.measure import latency_stats
from egoedge.edge.preprocess import dequantize, runtime_input

FORMATS = ("tflite", "onnx")


def profile_fields(profile: dict) -> dict:
    """Report-row fields from a job's ``download_profile()`` dict (times in µs, memory in bytes): latency, load
    time, peak memory, and ``placement``, how many layers ran on each compute unit (NPU, GPU, CPU)."""
    summary = profile.get("execution_summary") or {}
    times = summary.get("all_inference_times") or [summary.get("estimated_inference_time")]
    times = [t for t in times if t is not None]
    if not times:
        raise DeviceError("the AI Hub profile has no inference time")
    peak, load = summary.get("estimated_inference_peak_memory"), summary.get("first_load_time")
    units = Counter(layer.get("compute_unit", "?") for layer in profile.get("execution_detail") or [])
    return {"load_ms": load / 1000.0 if load is not None else None,
            "latency_ms": latency_stats([t / 1000.0 for t in times], 0),
            "peak_rss_mb": round(peak / 2**20, 1) if peak is not None else None, "rss_added_mb": None,
            "placement": dict(units)}


FRAMEWORK = {"tflite": "framework:tflite", "onnx": "framework:onnx"}


class AIHubBench:
    """One hosted device of the farm; ``unsupported(format)`` says why a format cannot run there."""

    kind = "aihub"

    def __init__(self, device: DeviceInfo, cfg: BenchConfig, tools: dict[str, Path]) -> None:
        self.device, self.cfg = device, cfg
        self.deadline = time.monotonic() + cfg.budget_s if cfg.budget_s else None
        self.hub = client()
        self.target = self.hub.Device(device.id, device.details.get("os") or "")

    def alive(self) -> str | None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"the --budget-s of {self.cfg.budget_s:.0f} s for AI Hub jobs is spent"
        return None

    def unsupported(self, format: str) -> str | None:
        if format not in FRAMEWORK:
            return f"AI Hub runs {' and '.join(FRAMEWORK)} artifacts here, not {format}"
        attributes = self.device.details.get("attributes")
        if attributes is not None and FRAMEWORK[format] not in attributes:  # the client would refuse the upload
            have = ", ".join(a for a in attributes if a.startswith("framework:")) or "no framework"
            return f"{self.device.name} lacks {FRAMEWORK[format]} (it lists {have})"
        return None

    def runtime(self, format: str) -> str:
        return f"qai-hub-{format}"

    def _submit(self, **kwargs):
        try:
            return self.hub.submit_inference_job(device=self.target, profile=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - upload refused, quota, network: this artifact's row says why
            raise DeviceError(f"inference job not submitted: {hub_error(e)}") from None

    def _wait(self, job, what: str) -> None:
        timeout = self.cfg.device_timeout_s
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
        if timeout <= 0:
            raise DeviceError(self.alive() or "no time left for AI Hub jobs")
        try:
            status = job.wait(timeout=max(1, math.ceil(timeout)))
        except TimeoutError:
            raise DeviceError(f"AI Hub {what} job {job.job_id} did not finish within {timeout:.0f} s "
                              f"({job.url})") from None
        except Exception as e:  # noqa: BLE001
            raise DeviceError(f"AI Hub {what} job {job.job_id}: {hub_error(e)}") from None
        if not status.success:
            raise DeviceError(f"AI Hub {what} job {job.job_id} failed: {status.message or status.code} ({job.url})")

    def run(self, artifact: Path, format: str, inputs: np.ndarray | None, io: dict | None = None) -> dict:
        """One profiled inference job: its profile gives the timings, its output data the logits."""
        io = io or {}
        data = None
        iterations = self.cfg.iterations
        if inputs is not None:
            spec = (io.get("inputs") or [{"name": "clip", "shape": [1, *inputs.shape[1:]], "dtype": "float32"}])[0]
            data = {spec["name"]: [runtime_input(inputs[i:i + 1], spec) for i in range(len(inputs))]}
            iterations = max(iterations, len(inputs))  # the client splits them over the samples: each runs once
        job = self._submit(model=str(artifact), name=f"egoedge {artifact.stem}", inputs=data,
                           options=f"--max_profiler_iterations {iterations}")
        self._wait(job, "inference")
        try:
            out = profile_fields(job.download_profile())
            outputs = job.download_output_data() if data is not None else None
        except DeviceError:
            raise
        except Exception as e:  # noqa: BLE001
            raise DeviceError(f"AI Hub inference job {job.job_id}: {hub_error(e)}") from None
        out["logits"] = None if outputs is None else self._logits(outputs, io, job.job_id)
        out["details"] = {"tool": "qai-hub", "device": self.device.name, "chipset": self.device.details.get("chipset"),
                          "os": self.device.details.get("os"), "job": job.job_id, "url": job.url}
        return out

    @staticmethod
    def _logits(data: dict, io: dict, job_id: str) -> np.ndarray:
        """The first output over every sample as float32 rows, dequantised where the artifact is integer."""
        if not data:
            raise DeviceError(f"AI Hub inference job {job_id} returned no outputs")
        first = next(iter(data.values()))
        logits = np.concatenate([np.asarray(o).reshape(1, -1) for o in first])
        out_spec = (io.get("outputs") or [{}])[0]
        if out_spec.get("scale") is not None and np.issubdtype(logits.dtype, np.integer):
            logits = dequantize(logits, out_spec["scale"], out_spec["zero_point"])
        return logits.astype(np.float32)
