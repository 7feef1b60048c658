"""The benchmark protocol the demo apps speak (Android activity, iOS app), version 1.

egoedge copies the model (and, for accuracy, the test clips) into the app's own storage, then
starts the app with these parameters (Android: intent extras; iOS: ``EGOEDGE_*`` environment):

======================  =======  ==================================================================
parameter               type     meaning
======================  =======  ==================================================================
``model``               string   path of the artifact, readable by the app
``iterations``          int      timed runs (the app times each one)
``warmup``              int      untimed runs first
``threads``             int      CPU threads for the runtime
``xnnpack``             bool     LiteRT: use the XNNPACK delegate
``inputs``              string   optional: raw little-endian float32 clips, shape ``input_shape``
``input_shape``         string   ``N,T,3,H,W`` of ``inputs``
``result``              string   where to write the result JSON (write a temp file, then rename)
``head``                string   streaming mode, a pair: the temporal head of the pair whose encoder is ``model``
``step_inputs``         string   streaming mode, a fused step (``model``): its inputs' roles in its order, from
                                 ``frame``, ``buffer``, ``valid`` (e.g. ``frame,buffer,valid``)
``step_outputs``        string   with ``step_inputs``: its outputs' roles, from ``logits``, ``next_buffer``,
                                 ``next_valid``
``window``              int      streaming mode: embeddings in the window (T)
``embedding_dim``       int      streaming mode: width of one embedding
``frame_shape``         string   streaming mode: ``1,3,H,W`` of one preprocessed frame
``head_threads``        int      streaming mode, a pair: threads for the head where its runtime's pool is its own
======================  =======  ==================================================================

In streaming mode every timed run is one new frame on a full window (a pair: encoder, then head; a
step: one call, its window fed back) and each input clip is played frame by frame from an empty
window (its logits: the last step's); the result adds ``"streaming": {"window", "head"}`` for a pair,
``{"window", "form": "step"}`` for a step.

The result JSON follows ``edge/schemas/app_result.schema.json``: ``{"protocol": 1, "status": "ok" |
"error", "error": str | null}`` and, when ok, the host report's fields for one row -- ``"name",
"format", "precision", "device", "runtime", "threads", "size_bytes", "load_ms", "latency_ms": {"mean",
"median", "p90", "p99", "std", "iterations", "warmup"}, "peak_rss_mb"`` -- plus ``"latency_samples_ms"``
(every timed run, from which egoedge recomputes the statistics) and ``"logits"`` (one row per input
clip, when ``inputs`` were given).

The Android app implements this in ``android_demo/app/src/main/java/org/egoedge/demo/BenchmarkActivity.kt``;
started by hand it is::

    adb shell am start -W -S -n org.egoedge.demo/org.egoedge.demo.BenchmarkActivity \
        --es model /sdcard/Android/data/org.egoedge.demo/files/egoedge/student_executorch_int8.pte \
        --ei iterations 50 --ei warmup 5 --ei threads 4 --ez xnnpack true \
        --es result /sdcard/Android/data/org.egoedge.demo/files/egoedge/result.json
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egoedge.bench.host_bench import BenchConfig

ANDROID_PACKAGE = "org.egoedge.demo"
ANDROID_ACTIVITY = "org.egoedge.demo.BenchmarkActivity"
IOS_BUNDLE = "org.egoedge.demo"
RESULT_NAME = "result.json"
INPUTS_NAME = "inputs.f32"


@dataclass(frozen=True)
class StreamRequest:
    """Streaming mode's parameters: where a pair's head was pushed (``None``: a fused step, whose tensors'
    roles ``step_inputs``/``step_outputs`` give in its own order, :func:`edge.streaming.step_roles`) and the
    shapes around the window."""

    head: str | None
    window: int
    embedding_dim: int
    frame_shape: tuple[int, ...]
    head_threads: int = 1
    step_inputs: tuple[str, ...] = ()
    step_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppRequest:
    """One benchmark the app is asked to run; ``params`` are the protocol's parameters."""

    model: str
    result: str
    inputs: str | None
    input_shape: tuple[int, ...] | None
    cfg: BenchConfig
    stream: StreamRequest | None = None

    def params(self) -> dict[str, str | int | bool]:
        out: dict[str, str | int | bool] = {
            "model": self.model, "iterations": self.cfg.iterations, "warmup": self.cfg.warmup,
            "threads": self.cfg.threads, "xnnpack": bool((self.cfg.options.get("tflite") or {}).get("xnnpack", True)),
            "result": self.result}
        if self.inputs is not None and self.input_shape is not None:
            out["inputs"] = self.inputs
            out["input_shape"] = ",".join(str(d) for d in self.input_shape)
        if self.stream is not None:
            out.update(window=self.stream.window, embedding_dim=self.stream.embedding_dim,
                       frame_shape=",".join(str(d) for d in self.stream.frame_shape))
            if self.stream.head is not None:
                out.update(head=self.stream.head, head_threads=self.stream.head_threads)
            else:
                out.update(step_inputs=",".join(self.stream.step_inputs),
                           step_outputs=",".join(self.stream.step_outputs))
        return out


def inputs_bytes(inputs: np.ndarray) -> bytes:
    """The clips as the app reads them: C-order little-endian float32."""
    return np.ascontiguousarray(inputs, dtype="<f4").tobytes()
