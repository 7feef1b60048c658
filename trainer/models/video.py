"""Video classifier = per-frame image encoder + temporal attention pooling + linear head."""

from __future__ import annotations

import math

import torch
from torch import nn

# Added to the attention logits of a missing frame: exp(-1e4) is 0 in float32, and the bias stays
# finite so an int8 observer or a float16 runtime never meets an infinity.
MASK_BIAS = 1e4


class TemporalAttentionPool(nn.Module):
    """Pool ``(B, T, D)`` frame embeddings into ``(B, D)`` with a learned query token.

    One pre-norm multi-head self-attention layer over ``[query, frames + pos]``; the query's
    output is the clip embedding. The learned temporal position embedding is what lets the
    model tell an action from its time-reversal (open vs close). Attention is written out
    with matmul + softmax so that it exports as plain ops on every backend.
    """

    def __init__(self, dim: int, frames: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"pool dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, frames, dim))
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.query, std=0.02)
        # Large enough to shape attention from the first step: frame order is what separates
        # open from close and pick from put.
        nn.init.trunc_normal_(self.pos, std=0.5)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` (``(B, T)``, 1 or 0): frames that exist; a streaming head starts with an empty window.

        Missing frames are masked by an additive bias rather than ``masked_fill``: a boolean
        select splits mobile delegates, an add lowers everywhere. With every frame valid the bias
        is zero and the output is the clip model's exactly.
        """
        b, t, d = x.shape
        x = torch.cat([self.query.expand(b, -1, -1), x + self.pos[:, :t]], dim=1)
        q, k, v = self.qkv(self.norm(x)).reshape(b, t + 1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q[:, :, :1] @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        if valid is not None:  # the query's slot is always there; a pad and a reshape are ops XNNPACK delegates
            bias = (nn.functional.pad(valid, (1, 0), value=1.0) - 1.0) * MASK_BIAS
            attn = attn + bias.reshape(b, 1, 1, t + 1)
        pooled = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, d)
        return self.out_norm(x[:, 0] + self.proj(pooled))


class VideoClassifier(nn.Module):
    """``(B, T, 3, H, W)`` float clip -> ``(B, num_classes)`` logits.

    The encoder runs on every time step; a flow, audio or box encoder makes it a classifier
    of that modality (``frame_shape`` says what one step is).

    ``forward_features`` gives the pooled clip embedding used by feature distillation.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, num_classes: int, frames: int, size: int,
                 pool_heads: int = 4, dropout: float = 0.1, frame_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.frames, self.size, self.embed_dim = frames, size, embed_dim
        # What one time step looks like: an RGB frame unless the encoder reads another modality.
        self.frame_shape = tuple(frame_shape) if frame_shape is not None else (3, size, size)
        self.pool = TemporalAttentionPool(embed_dim, frames, pool_heads)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))

    def frame_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)``: the encoder on every time step, before the temporal pool."""
        b, t = x.shape[:2]
        return self.encoder(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.frame_embeddings(x))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        # ``return_features`` lets a DistributedDataParallel wrapper (which syncs gradients only
        # through ``forward``) give the distillation losses the embedding as well as the logits.
        f = self.forward_features(x)
        return (self.head(f), f) if return_features else self.head(f)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        """A correctly shaped input for export, bench and tests."""
        return (torch.randn(batch, self.frames, *self.frame_shape),)
