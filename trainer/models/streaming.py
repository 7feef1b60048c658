"""A clip model split for a live camera: a per-frame encoder and a temporal head over the last T embeddings.

``VideoClassifier`` already is encoder-per-frame then pool-over-time, so the split is exact: the
encoder sees one frame (a 4-D image, what mobile GPU delegates take), the head sees the window
of embeddings oldest first with a 0/1 mask of the slots that hold a frame yet. Once the window is
full the pair computes the clip model's function, and each new frame costs one encoder call
plus one head call instead of T encoder calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.models.video import FoldedAttentionPool, TemporalAttentionPool, VideoClassifier


@dataclass(frozen=True)
class StreamIO:
    """Tensor names of a streaming pair; the manifest's ``streaming`` block repeats them."""

    frame_input: str = "frame"
    embedding_output: str = "embedding"
    buffer_input: str = "embeddings"
    valid_input: str = "valid"
    logits_output: str = "logits"
    next_buffer_output: str = "next_embeddings"  # the fused step's state out, fed back as ``buffer_input``
    next_valid_output: str = "next_valid"


STREAM_IO = StreamIO()
# The pool's additive mask of empty slots: an int8 temporal head keeps it float (video.SlotMask).
MASK = "pool.mask"


class FrameEncoder(nn.Module):
    """``(1, *frame_shape)`` one time step -> ``(1, D)`` its embedding (the clip model's encoder)."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.encoder = model.encoder  # same attribute name: the clip model's module paths stay valid
        self.frame_shape = model.frame_shape
        self.train(model.training)  # a new module starts in training mode; exporters check the flag
        self.float_modules = tuple(n for n in getattr(model, "float_modules", ()) if n.split(".")[0] == "encoder")

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.encoder(frame)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        return (torch.randn(batch, *self.frame_shape),)


class TemporalHead(nn.Module):
    """``(1, T, D)`` embeddings oldest first + ``(1, T)`` valid mask -> ``(1, num_classes)`` logits."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.pool, self.head = model.pool, model.head
        self.frames, self.embed_dim = model.frames, model.embed_dim
        self.train(model.training)
        self.float_modules = (*(n for n in getattr(model, "float_modules", ()) if n.split(".")[0] in ("pool", "head")),
                              MASK)

    def forward(self, embeddings: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(embeddings, valid))

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(batch, self.frames, self.embed_dim), torch.ones(batch, self.frames)


class WindowShift(nn.Module):
    """The step's state update: drop the oldest slot, append the new embedding and mark its slot valid.

    Its own module so int8 programs keep it float: the mask decides which frames the pool attends
    to through a large additive bias, so a mask quantized to slightly below 1 silences real frames
    (docs/streaming.md), and an int8 window would add a rounding to every embedding that the clip
    model never has.
    """

    def forward(self, embeddings: torch.Tensor, valid: torch.Tensor,
                new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A reshape and arithmetic, not ``new[:, None]`` and ``ones_like``: those lower to an unsqueeze
        # copy and a fill that XNNPACK has no kernel for, and each cut the step's delegate in two.
        window = torch.cat([embeddings[:, 1:], new.reshape(new.shape[0], 1, new.shape[-1])], dim=1)
        return window, torch.cat([valid[:, 1:], valid[:, :1] * 0.0 + 1.0], dim=1)


class StreamStep(nn.Module):
    """One program per new frame: ``frame`` + the state (window, valid) in; logits and the next state out.

    The state is the window itself, oldest first: the step drops the oldest slot and appends the new
    embedding (a slice and a concatenation), so there is no write position to carry and no
    dynamic-index scatter, which delegates run as slow portable ops or refuse. An app feeds
    ``next_embeddings``/``next_valid`` back as the next call's ``embeddings``/``valid``, starting
    from zeros; from the T-th frame on the logits are the clip model's on the last T frames.
    """

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.encoder, self.pool, self.head = model.encoder, model.pool, model.head  # the clip model's module paths
        self.shift = WindowShift()
        self.frame_shape, self.frames, self.embed_dim = model.frame_shape, model.frames, model.embed_dim
        self.train(model.training)
        # The pool and head float too: the step's int8 is then exactly the clip program's encoder (same scales,
        # tests/test_streaming.py), where a pool calibrated on streaming windows (partial ones, ones across two
        # clips) took other scales than the clip program's and flipped clips the clip artifact kept (docs/streaming.md).
        whole = ("shift", "pool", "head")
        self.float_modules = (*(n for n in getattr(model, "float_modules", ()) if n.split(".")[0] not in whole), *whole)

    def forward(self, frame: torch.Tensor, embeddings: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        window, mask = self.shift(embeddings, valid, self.encoder(frame))
        return self.head(self.pool(window, mask)), window, mask

    def empty_state(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(batch, self.frames, self.embed_dim), torch.zeros(batch, self.frames)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.randn(batch, *self.frame_shape), torch.randn(batch, self.frames, self.embed_dim),
                torch.ones(batch, self.frames))


def split_streaming(model: nn.Module, what: str = "this model") -> tuple[FrameEncoder, TemporalHead]:
    """The model's per-frame encoder and temporal head, or one line saying which part cannot be split.

    Example: ``encoder, head = split_streaming(load_model("runs/quick/student.pt")[0])``
    """
    if not isinstance(model, VideoClassifier):
        parts = ", ".join(n for n, _ in model.named_children()) or "none"
        raise EgoedgeError(f"cannot stream {what}: {type(model).__name__} is not a per-frame encoder followed by a "
                           f"temporal pool (its modules: {parts}); only clip models (encoder, pool, head) stream")
    if not isinstance(model.pool, TemporalAttentionPool | FoldedAttentionPool):  # the trained form or the export one
        raise EgoedgeError(f"cannot stream {what}: its module 'pool' is a {type(model.pool).__name__}, not a "
                           "TemporalAttentionPool, so the temporal part cannot be fed a window of embeddings")
    return FrameEncoder(model), TemporalHead(model)


def stream_step(model: nn.Module, what: str = "this model") -> StreamStep:
    """The model as one fused per-frame step, or the same one line as :func:`split_streaming` when it cannot stream."""
    split_streaming(model, what)
    return StreamStep(model)


def window_logits(encoder: FrameEncoder, head: TemporalHead, frames: torch.Tensor) -> torch.Tensor:
    """PyTorch streaming reference: ``(S, *frame_shape)`` frames fed one by one -> ``(S, num_classes)`` logits.

    Step ``s`` sees frames ``max(0, s-T+1)..s``; from step ``T-1`` on the window is full and the
    logits are the clip model's on that window.
    """
    t = head.frames
    with torch.no_grad():
        emb = encoder(frames)
        out = []
        for s in range(len(frames)):
            window = emb[max(0, s - t + 1):s + 1]
            n = len(window)
            buf = torch.cat([torch.zeros(t - n, emb.shape[1]), window])[None]
            valid = torch.cat([torch.zeros(t - n), torch.ones(n)])[None]
            out.append(head(buf, valid))
    return torch.cat(out)
