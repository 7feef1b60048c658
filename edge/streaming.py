"""Run a streaming artifact the way an app does: one frame in, logits out.

A pair (frame encoder + temporal head): the caller keeps the last T embeddings in a ring buffer
and hands the head its contents oldest first with a 0/1 mask of the slots filled so far (the
Android app's ``core/StreamBuffer.kt`` is the same buffer). A fused step: one call per frame,
the window and mask carried as the step's own inputs and outputs. The export's parity check
and the bench both go through :class:`StreamRunner` and :class:`StepRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egoedge.edge.exporters import Session
from egoedge.trainer.common.io import EgoedgeError, first_line


class RingBuffer:
    """The last ``window`` embeddings of width ``dim``; :meth:`view` gives them oldest first with their mask.

    Example::

        buf = RingBuffer(4, 256)
        buf.push(embedding)            # (256,) or (1, 256)
        window, valid = buf.view()     # (1, 4, 256), (1, 4): empty slots first, zero and 0
    """

    def __init__(self, window: int, dim: int) -> None:
        self.window, self.dim = window, dim
        self.slots = np.zeros((window, dim), np.float32)
        self.next, self.count = 0, 0

    def reset(self) -> None:
        self.slots[:] = 0.0
        self.next, self.count = 0, 0

    def push(self, embedding: np.ndarray) -> None:
        e = np.asarray(embedding, np.float32).reshape(-1)
        if e.shape[0] != self.dim:
            raise ValueError(f"embedding of width {e.shape[0]} pushed into a buffer of width {self.dim}")
        self.slots[self.next] = e
        self.next = (self.next + 1) % self.window
        self.count = min(self.count + 1, self.window)

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        order = (self.next + np.arange(self.window)) % self.window  # oldest slot first
        window = self.slots[order]
        valid = (np.arange(self.window) >= self.window - self.count).astype(np.float32)
        return window[None], valid[None]


class FrameRunner:
    """Either streaming form, loaded: frames in one at a time from an empty window, logits out per step."""

    def reset(self) -> None:
        raise NotImplementedError

    def step(self, frame: np.ndarray) -> np.ndarray:
        """One new frame ``(1, *frame_shape)`` -> ``(1, num_classes)`` logits over the window so far."""
        raise NotImplementedError

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """Feed ``(S, *frame_shape)`` frames from an empty window; ``(S, num_classes)`` logits, one row per step."""
        self.reset()
        return np.concatenate([self.step(frames[i:i + 1]) for i in range(len(frames))])

    def clip(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """A clip session's call: ``[(1, T, *frame_shape)]`` -> ``[(1, num_classes)]``, frame by frame."""
        return [self.frames(inputs[0][0])[-1:]]


@dataclass
class StreamRunner(FrameRunner):
    """A loaded encoder and head session plus the ring buffer between them (the pair form)."""

    encoder: Session
    head: Session
    window: int
    dim: int
    runtime: str = "runtime"  # named in errors: which engine refused the buffer

    def __post_init__(self) -> None:
        self.buffer = RingBuffer(self.window, self.dim)

    def reset(self) -> None:
        self.buffer.reset()

    def step(self, frame: np.ndarray) -> np.ndarray:
        embedding = self.encoder([frame])[0]
        if embedding.size != self.dim:
            raise EgoedgeError(f"{self.runtime}: the frame encoder gives embeddings of {embedding.size} values but "
                               f"the stream buffer holds {self.dim} (the manifest's streaming.embedding_dim)")
        self.buffer.push(embedding)
        window, valid = self.buffer.view()
        try:
            return self.head([window, valid])[0].reshape(1, -1)
        except Exception as e:  # noqa: BLE001  (each runtime raises its own types)
            raise EgoedgeError(f"{self.runtime}: the temporal head refused a buffer of shape {window.shape} with a "
                               f"mask of shape {valid.shape}: {type(e).__name__}: {first_line(e)[:200]}") from None


@dataclass
class StepRunner(FrameRunner):
    """A loaded fused step: one call per frame, its state outputs fed back as the next call's state inputs.

    Example::

        runner = StepRunner(EXPORTERS.get("onnx").load(path), window=4, dim=256)
        logits = runner.step(frame)    # (1, num_classes); runner.state holds the window and mask
    """

    session: Session
    window: int
    dim: int
    runtime: str = "runtime"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.state = [np.zeros((1, self.window, self.dim), np.float32), np.zeros((1, self.window), np.float32)]

    def step(self, frame: np.ndarray) -> np.ndarray:
        out = self.session([frame, *self.state])
        if len(out) != 3 or out[1].size != self.window * self.dim or out[2].size != self.window:
            raise EgoedgeError(f"{self.runtime}: the stream step gave outputs of shapes {[o.shape for o in out]}; "
                               f"expected logits, a ({self.window}, {self.dim}) window and a ({self.window},) mask")
        self.state = [out[1].reshape(1, self.window, self.dim), out[2].reshape(1, self.window)]
        return out[0].reshape(1, -1)


# The roles a fused step's tensors play, by the manifest's ``streaming`` names (how the demo app's benchmark
# protocol tells the app which input is the frame and which output the next window): the manifest key ->
# (the role, the tensor's name in manifests written before the block named it).
STEP_INPUT_ROLES = {"frame_input": ("frame", "frame"), "buffer_input": ("buffer", "embeddings"),
                    "valid_input": ("valid", "valid")}
STEP_OUTPUT_ROLES = {"next_buffer_output": ("next_buffer", "next_embeddings"),
                     "next_valid_output": ("next_valid", "next_valid")}


def step_roles(streaming: dict, inputs: list[str], outputs: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A fused step's input and output roles in its own order, from its tensor names and the ``streaming`` block.

    Example: ``step_roles(manifest["streaming"], ["frame", "embeddings", "valid"], ["logits", "next_embeddings",
    "next_valid"])`` -> ``(("frame", "buffer", "valid"), ("logits", "next_buffer", "next_valid"))``
    """
    ins = {streaming.get(key, old): role for key, (role, old) in STEP_INPUT_ROLES.items()}
    outs = {streaming.get(key, old): role for key, (role, old) in STEP_OUTPUT_ROLES.items()}
    unknown = [n for n in inputs if n not in ins]
    if unknown or len(inputs) != 3 or len(outputs) != 3 or sorted(n in outs for n in outputs) != [False, True, True]:
        raise EgoedgeError(f"a streaming step takes {', '.join(ins)} and gives logits, {', '.join(outs)}; this one "
                           f"takes {', '.join(inputs)} and gives {', '.join(outputs)} (the manifest's streaming names)")
    return tuple(ins[n] for n in inputs), tuple(outs.get(n, "logits") for n in outputs)


HEAD_THREADS = 1


def head_threads(process_threads: bool) -> int | None:
    """Threads for a streaming pair's temporal head: one, unless the runtime's pool is process-wide.

    The head is about a million multiply-accumulates: a second thread costs more in hand-off than
    it saves, and an idle session's spinning workers steal the cores the encoder runs on next
    (ONNX Runtime int8 steps took 0.36 ms with a 2-thread head and 0.20 ms with a 1-thread one).
    Where one pool serves the whole process, resizing it would slow the encoder: keep it.
    """
    return None if process_threads else HEAD_THREADS


def stream_of(clips: np.ndarray, count: int) -> np.ndarray:
    """The frames of the first ``count`` clips one after another: ``(N, T, ...)`` -> ``(count*T, ...)``."""
    return np.ascontiguousarray(clips[:count].reshape(-1, *clips.shape[2:]))


def sliding_accuracy(logits: np.ndarray, labels: np.ndarray, window: int) -> dict:
    """Per-step top-1 over clips played back to back, and how fast the prediction follows each change.

    ``logits`` ``(S, K)`` come from feeding the clips of ``labels`` (``T = window`` frames each)
    one after another. A step is scored against the action of its newest frame, from the first
    full window on. ``lag`` counts the new action's frames seen until the prediction first names
    it (1 = at its first frame; a window at T means only once the window is all new frames);
    a change not followed within its clip counts as ``missed``.
    """
    steps = np.repeat(labels, window)
    pred = logits.argmax(-1)
    scored = np.arange(len(steps)) >= window - 1
    lags, missed = [], 0
    for i in range(1, len(labels)):
        if labels[i] == labels[i - 1]:
            continue
        seg = pred[i * window:(i + 1) * window] == labels[i]
        if seg.any():
            lags.append(int(np.argmax(seg)) + 1)
        else:
            missed += 1
    changes = len(lags) + missed
    return {"steps": int(scored.sum()), "top1": round(float(100.0 * np.mean(pred[scored] == steps[scored])), 2),
            "changes": changes, "followed": len(lags),
            "lag_frames_median": float(np.median(lags)) if lags else None,
            "lag_frames_mean": round(float(np.mean(lags)), 2) if lags else None, "missed": missed}
