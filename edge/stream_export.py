"""Streaming pairs: export a clip model's frame encoder and temporal head per backend, then gate the pair.

Reads top to bottom: split the model -> calibration frames and windows -> the sample stream and
its expected logits per step -> for each backend and precision: export encoder, export head ->
load both -> play the parity clips, the test clips and the sample stream through them frame by
frame -> compare with the PyTorch clip model -> one verdict for the pair, on both entries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egoedge.edge.artifact import export_artifact, io_spec, run_session, runtime_failure
from egoedge.edge.exporters import EXPORTERS, IONames, lowers_program
from egoedge.edge.gap import attach_gap
from egoedge.edge.int8 import OBSERVER
from egoedge.edge.parity import ParityGate, on_test_split
from egoedge.edge.streaming import HEAD_THREADS, FrameRunner, StepRunner, StreamRunner, stream_of
from egoedge.trainer.common.io import EgoedgeError, atomic_write
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.calibration import as_samples
from egoedge.trainer.models.streaming import STREAM_IO, FrameEncoder, StreamStep, TemporalHead, window_logits
from egoedge.trainer.quantize.gap import float_reference, program_gap
from egoedge.trainer.quantize.pt2e import quantize_pt2e
from egoedge.trainer.quantize.ptq import GAP_SAMPLES, quantizer_for
from egoedge.trainer.tasks.base import Arrays
from egoedge.trainer.tasks.clips import logit_parity

ROLES = ("clip", "frame_encoder", "temporal_head", "stream_step")
SAMPLE_STREAM, SAMPLE_STREAM_LOGITS = "sample_stream.npy", "sample_stream_logits.npy"
ENCODER_IO = IONames((STREAM_IO.frame_input,), (STREAM_IO.embedding_output,))
HEAD_IO = IONames((STREAM_IO.buffer_input, STREAM_IO.valid_input), (STREAM_IO.logits_output,))
STEP_IO = IONames((STREAM_IO.frame_input, STREAM_IO.buffer_input, STREAM_IO.valid_input),
                  (STREAM_IO.logits_output, STREAM_IO.next_buffer_output, STREAM_IO.next_valid_output))


def _embed(encoder: FrameEncoder, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([encoder(torch.from_numpy(frames[i:i + batch])).numpy()
                               for i in range(0, len(frames), batch)])


def embed_clips(encoder: FrameEncoder, clips: np.ndarray) -> np.ndarray:
    """The PyTorch encoder's embedding of every frame of ``(N, T, ...)`` clips: ``(N, T, D)``, computed once for
    both streaming forms' calibration."""
    return _embed(encoder, stream_of(clips, len(clips))).reshape(len(clips), clips.shape[1], -1)


def stream_calibration(clips: np.ndarray, emb: np.ndarray) -> tuple[list, list]:
    """Calibration samples for each half from the clip artifacts' calibration clips and their embeddings
    (:func:`embed_clips`): every frame, every window.

    The encoder sees exactly the frames the clip model's encoder saw, in the same batches when its program
    is calibrated with ``group=T`` (:func:`step_program`, :func:`pair_programs`), so its observers (and with
    them its int8 ranges) are the clip artifact's; a subsample of frames cost ONNX int8 pairs a point of
    agreement. The head is calibrated on the PyTorch encoder's embeddings of full
    windows, what it sees on a live camera after the first T frames.
    """
    return as_samples(stream_of(clips, len(clips))), as_samples(emb, np.ones(emb.shape[:2], np.float32))


def step_calibration(clips: np.ndarray, emb: np.ndarray) -> list[tuple[torch.Tensor, ...]]:
    """Calibration samples for the fused step: the calibration clips played back to back, each frame with the
    state a live camera would hold before it (the embeddings of the frames before it, :func:`embed_clips`).

    Every frame of the clip artifacts' calibration is seen once, as the pair's encoder sees them, and
    every window position (partial windows at the start, windows across two clips after it).
    """
    t = clips.shape[1]
    frames, flat = stream_of(clips, len(clips)), emb.reshape(-1, emb.shape[-1])
    padded = np.concatenate([np.zeros((t, flat.shape[1]), np.float32), flat])
    valid = np.concatenate([np.zeros(t, np.float32), np.ones(len(flat), np.float32)])
    return [(torch.from_numpy(frames[s:s + 1]), torch.from_numpy(padded[s:s + t][None]),
             torch.from_numpy(valid[s:s + t][None])) for s in range(len(frames))]


def _program(module: torch.nn.Module, calibration: list, correct_bias: bool, observer: str,
             group: int = 1) -> torch.nn.Module:
    return quantize_pt2e(module, module.example_inputs(), calibration, quantizer_for("xnnpack", observer),
                         correct_bias=correct_bias, group=group)


def _gap(module: torch.nn.Module, calibration: list, program: torch.nn.Module) -> list[dict]:
    return program_gap(float_reference(module, calibration[0], calibration), program, calibration[:GAP_SAMPLES])


def step_program(step: StreamStep, calibration: list, progress: Progress = no_progress,
                 correct_bias: bool = False, observer: str = OBSERVER) -> torch.nn.Module:
    """The fused step's int8 PT2E program, calibrated once for every backend that lowers one (with the clip
    recipe's bias correction and activation observer)."""
    progress("int8 streaming step", 0, 1, {})
    # A clip's T frames in one group: the encoder's int8 is then the clip program's (stream_calibration).
    program = _program(step, calibration, correct_bias, observer, step.frames)
    progress("int8 streaming step", 1, 1, {})
    return program


def pair_programs(encoder: FrameEncoder, head: TemporalHead, calibration: tuple[list, list],
                  progress: Progress = no_progress, correct_bias: bool = False,
                  observer: str = OBSERVER) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Each half's int8 PT2E program, calibrated once for every backend that lowers one (as the clip model's is).

    Each backend quantizing the halves itself calibrated the same samples once per backend.
    """
    progress("int8 streaming pair", 0, 1, {})
    made = (_program(encoder, calibration[0], correct_bias, observer, head.frames),
            _program(head, calibration[1], correct_bias, observer))
    progress("int8 streaming pair", 1, 1, {})
    return made


def pair_gaps(encoder: FrameEncoder, head: TemporalHead, calibration: tuple[list, list],
              programs: tuple[torch.nn.Module, torch.nn.Module]) -> tuple[list[dict], list[dict]]:
    """Each half's per-layer numeric gap: its int8 program against its float program on calibration samples."""
    return _gap(encoder, calibration[0], programs[0]), _gap(head, calibration[1], programs[1])


def step_gap(step: StreamStep, calibration: list, program: torch.nn.Module) -> list[dict]:
    """The fused step's per-layer numeric gap: its int8 program against its float program on calibration samples."""
    return _gap(step, calibration, program)


def write_stream_sample(out_dir: Path, model: torch.nn.Module, encoder: FrameEncoder, head: TemporalHead,
                        clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Two held-out clips back to back as one stream, and the logits expected at each step; the manifest's fields.

    Steps from ``T-1`` on hold the clip model's logits on that window (every window position,
    including those across the two clips); earlier steps the PyTorch pair's on the partial window.
    """
    t = head.frames
    frames = stream_of(clips, 2)
    expected = window_logits(encoder, head, torch.from_numpy(frames)).numpy()
    with torch.no_grad():
        windows = np.stack([frames[s - t + 1:s + 1] for s in range(t - 1, len(frames))])
        expected[t - 1:] = model(torch.from_numpy(windows)).numpy()
    for name, array in ((SAMPLE_STREAM, frames), (SAMPLE_STREAM_LOGITS, expected)):
        atomic_write(out_dir / name, lambda p, a=array: np.save(open(p, "wb"), a))
    return frames, expected, {"sample_stream": SAMPLE_STREAM, "sample_stream_logits": SAMPLE_STREAM_LOGITS,
                              "full_from_step": t - 1}


def recommended_forms(artifacts: list[dict]) -> dict[str, str]:
    """Per ``format/precision``, the streaming artifact an app should run: the fused step if it passed its gate
    (one call per frame, no buffer to keep), else the pair's frame encoder if the pair did; none if neither."""
    out: dict[str, str] = {}
    for role in ("frame_encoder", "stream_step"):  # the step last: it replaces the pair where both pass
        for a in artifacts:
            if a.get("role") == role and a["status"] == "ok" and a["file"]:
                out[f"{a['format']}/{a['precision']}"] = a["name"]
    return out


def streaming_block(encoder: FrameEncoder, head: TemporalHead, sample_fields: dict,
                    recommended: dict[str, str] | None = None) -> dict:
    """The manifest's top-level ``streaming`` block: the window, the tensor names, the sample stream, the
    multiply-accumulates of one new frame (encoder + head), against which the bench sets the per-frame time,
    and ``use``: per ``format/precision`` the streaming artifact an app should run (:func:`recommended_forms`)."""
    from egoedge.trainer.common.complexity import count_macs

    return {"window": head.frames, "embedding_dim": head.embed_dim, "frame_input": STREAM_IO.frame_input,
            "embedding_output": STREAM_IO.embedding_output, "buffer_input": STREAM_IO.buffer_input,
            "valid_input": STREAM_IO.valid_input, "next_buffer_output": STREAM_IO.next_buffer_output,
            "next_valid_output": STREAM_IO.next_valid_output, "order": "oldest_first", "head_threads": HEAD_THREADS,
            "frame_macs": count_macs(encoder, encoder.example_inputs()) + count_macs(head, head.example_inputs()),
            "use": dict(recommended or {}), **sample_fields}


def export_pair(fmt: str, precision: str, encoder: FrameEncoder, head: TemporalHead, out_dir: Path, stem: str,
                calibration: tuple[list, list], entry: dict, check, progress: Progress = no_progress,
                programs: tuple[torch.nn.Module, torch.nn.Module] | None = None,
                gaps: tuple[list[dict], list[dict]] | None = None) -> list[dict]:
    """Export one backend's encoder and head at ``precision``; ``check(exporter, enc, head, precision, name)``
    gives the pair's verdict, written on both entries. ``programs``: each half's int8 PT2E program
    (:func:`pair_programs`), which a backend lowers for its static int8 precision, and ``gaps`` their
    per-layer gaps (:func:`pair_gaps`), written as each int8 half's ``NAME.gap.json``."""
    frame = encoder.example_inputs()
    window = head.example_inputs()
    with torch.no_grad():
        emb = encoder(*frame)
        logits = head(*window)
    specs = {"frame_encoder": (io_spec(list(ENCODER_IO.inputs), [frame[0].numpy()]),
                               io_spec(list(ENCODER_IO.outputs), [emb.numpy()])),
             "temporal_head": (io_spec(list(HEAD_IO.inputs), [w.numpy() for w in window]),
                               io_spec(list(HEAD_IO.outputs), [logits.numpy()]))}
    unchecked = lambda *_: {"status": "ok", "verified": None}  # noqa: E731  (the pair is checked as one)
    made = []
    halves = (("frame_encoder", encoder, frame, ENCODER_IO, calibration[0]),
              ("temporal_head", head, window, HEAD_IO, calibration[1]))
    for (role, model, example, names, calib), program in zip(halves, programs or (None, None), strict=True):
        inputs, outputs = specs[role]
        made.append(export_artifact(fmt, precision, model, example, out_dir, f"{stem}_{role}", calib,
                                    {**entry, "inputs": inputs, "outputs": outputs, "role": role}, unchecked,
                                    progress, names, program))
    for e, (_, _, _, _, calib), gap in zip(made, halves, gaps or (None, None), strict=True):
        attach_gap(out_dir, e, gap, lowers_program(fmt, precision), min(GAP_SAMPLES, len(calib)))
    enc, hd = made
    enc["pair"], hd["pair"] = hd["name"], enc["name"]
    if enc["file"] is None or hd["file"] is None:
        failed = enc if enc["file"] is None else hd
        verdict = {"status": "failed", "verified": None,
                   "reason": f"{failed['role'].replace('_', ' ')}: {failed['reason']}"}
    else:
        verdict = check(EXPORTERS.get(fmt), out_dir / enc["file"], out_dir / hd["file"], precision, enc["name"])
    for e in made:
        e.update(verdict)
    return made


def export_step(fmt: str, precision: str, step: StreamStep, out_dir: Path, stem: str, calibration: list,
                entry: dict, check, progress: Progress = no_progress, program: torch.nn.Module | None = None,
                gap: list[dict] | None = None) -> dict:
    """Export one backend's fused step at ``precision`` (``NAME`` is ``{stem}_step_{fmt}_{precision}``);
    ``check`` is :func:`step_checker`'s. ``program``/``gap``: the step's int8 PT2E program and its layer gap."""
    example = step.example_inputs()
    with torch.no_grad():
        outputs = step(*example)
    made = export_artifact(fmt, precision, step, example, out_dir, f"{stem}_step", calibration,
                           {**entry, "inputs": io_spec(list(STEP_IO.inputs), [x.numpy() for x in example]),
                            "outputs": io_spec(list(STEP_IO.outputs), [y.numpy() for y in outputs]),
                            "role": "stream_step"}, check, progress, STEP_IO, program)
    attach_gap(out_dir, made, gap, lowers_program(fmt, precision), min(GAP_SAMPLES, len(calibration)))
    return made


def frame_checker(ev, gate: ParityGate, reference: dict, parity: tuple[Arrays, Arrays], test: tuple[Arrays, Arrays],
                  stream: tuple[np.ndarray, np.ndarray], window: int, progress: Progress = no_progress):
    """The clip gate, applied to a streaming artifact played frame by frame: ``verdict(exporter, open_runner,
    precision, name)``, where ``open_runner()`` loads the artifact as a :class:`FrameRunner`.

    ``parity``/``test`` are ``(inputs, PyTorch clip outputs)``; ``stream`` the sample stream and its
    expected logits. ``max_abs`` is the worst of the parity clips and every full window of the stream.
    """
    (parity_x, parity_ref), (test_x, ref_test), (frames, expected) = parity, test, stream

    def verdict(exporter, open_runner, precision: str, name: str) -> dict:
        if reason := exporter.unavailable():
            return {"status": "ok", "verified": f"spec only ({reason})"}
        try:
            runner: FrameRunner = open_runner()
            got = run_session(runner.clip, parity_x)
            test_out = run_session(runner.clip, test_x, progress, f"verify {name} (frame by frame)")
            steps = runner.frames(frames)
        except EgoedgeError as e:
            return {"status": "failed", "verified": "runtime", "reason": str(e)}
        except Exception as e:  # noqa: BLE001  (a runtime that loads but cannot execute the artifact)
            return runtime_failure(exporter, e)
        scored = ev.score(test_out)
        clip_parity = ev.parity(parity_ref, got, parity_x)
        full = logit_parity(expected[window - 1:], steps[window - 1:])
        on_test = ev.parity(ref_test, test_out, test_x)
        result = {**on_test_split({"max_abs": max(clip_parity["max_abs"], full["max_abs"])}, on_test),
                  "stream_max_abs": full["max_abs"], "stream_top1_agreement": full["top1_agreement"]}
        reason = gate.check(precision, result, scored["accuracy"], reference["accuracy"])
        return {**scored, "parity": result, "verified": "runtime (frame by frame)",
                "status": "ok" if reason is None else "failed", "reason": reason}

    return verdict


def pair_checker(verdict, window: int, dim: int):
    """The check for a streaming pair (``verdict``: :func:`frame_checker`'s), both halves loaded in their runtime."""

    def check(exporter, enc_path: Path, head_path: Path, precision: str, name: str) -> dict:
        threads = torch.get_num_threads()  # this process's budget, as for clip artifacts
        # A runtime with one process-wide pool (ExecuTorch) is sized once, by the first session.
        return verdict(exporter, lambda: StreamRunner(
            exporter.load(enc_path, threads=threads),
            exporter.load(head_path, threads=None if exporter.process_threads else threads),
            window, dim, exporter.format), precision, name)

    return check


def step_checker(verdict, window: int, dim: int):
    """The check for a fused step (``verdict``: :func:`frame_checker`'s): one session, its state fed back."""

    def check(exporter, path: Path, precision: str, name: str) -> dict:
        threads = torch.get_num_threads()
        return verdict(exporter, lambda: StepRunner(exporter.load(path, threads=threads), window, dim,
                                                    exporter.format), precision, name)

    return check
