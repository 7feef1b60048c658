"""Video classifier = per-frame image encoder + temporal attention pooling + linear head."""

from __future__ import annotations

import math

import torch
from torch import nn

# Added to the attention logits of a missing frame: exp(-1e4) is 0 in float32, and the bias stays
# finite so an int8 observer or a float16 runtime never meets an infinity.
MASK_BIAS = 1e4


class SlotMask(nn.Module):
    """Attention logits ``(B, ..., T + 1)`` (the query's slot first) with the slots of missing frames pushed out.

    Missing frames are masked by an additive bias rather than ``masked_fill``: a boolean select splits
    mobile delegates, an add lowers everywhere. With every frame valid the bias is zero. Its own module
    so that int8 streaming programs keep it float (their ``float_modules``): quantized, the add's output
    range spans the bias, and the real logits get a step or two of it.
    """

    def forward(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # The query's slot is always there; a pad and a reshape are ops XNNPACK delegates.
        bias = (nn.functional.pad(valid, (1, 0), value=1.0) - 1.0) * MASK_BIAS
        return logits + bias.reshape(valid.shape[0], *[1] * (logits.dim() - 2), valid.shape[1] + 1)


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
        self.mask = SlotMask()
        nn.init.trunc_normal_(self.query, std=0.02)
        # Large enough to shape attention from the first step: frame order is what separates
        # open from close and pick from put.
        nn.init.trunc_normal_(self.pos, std=0.5)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` (``(B, T)``, 1 or 0): frames that exist; a streaming head starts with an empty window."""
        b, t, d = x.shape
        x = torch.cat([self.query.expand(b, -1, -1), x + self.pos[:, :t]], dim=1)
        q, k, v = self.qkv(self.norm(x)).reshape(b, t + 1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q[:, :, :1] @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        if valid is not None:
            attn = self.mask(attn, valid)
        pooled = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, d)
        return self.out_norm(x[:, 0] + self.proj(pooled))


class FoldedAttentionPool(nn.Module):
    """A trained :class:`TemporalAttentionPool` with the work that depends only on its learned query done once.

    The query token is a parameter, so its query vector, its own key and value, and what the key
    projection and the value plus output projections do to a normalized frame are constants: the
    attention logits become one projection of each normalized frame to ``heads`` numbers, and the
    pooled output one linear map of the attention-weighted normalized frames. Same function to float
    rounding, with a fraction of the multiply-adds (a quarter at 4 frames) and far fewer ops; the export form
    (:func:`~egoedge.trainer.models.exportable.export_ready`), because a streaming step runs the pool
    on every frame.
    """

    def __init__(self, pool: TemporalAttentionPool) -> None:
        super().__init__()
        d, h = pool.query.shape[-1], pool.heads
        dh, eps = d // h, pool.norm.eps
        with torch.no_grad():
            gamma, beta = pool.norm.weight, pool.norm.bias
            w_q, w_k, w_v = pool.qkv.weight.split(d)
            b_q, b_k, b_v = pool.qkv.bias.split(d)
            query = pool.query.reshape(d)
            query_z = nn.functional.layer_norm(query, (d,), eps=eps)  # normalized, before the affine
            q = (w_q @ (gamma * query_z + beta) + b_q).reshape(h, dh) / math.sqrt(dh)
            # logit of head j for a normalized frame z: q_j . (W_k,j (gamma * z + beta) + b_k,j)
            logits_w = torch.einsum("hj,hjd->hd", q, w_k.reshape(h, dh, d)) * gamma
            logits_b = (q * (w_k @ beta + b_k).reshape(h, dh)).sum(1)
            # The attention weights sum to 1, so value bias and beta pass through: proj(pooled) is one map of
            # each head's weighted mean of normalized frames, plus a constant (the query's residual included).
            values_w = torch.einsum("ohj,hjd->ohd", pool.proj.weight.reshape(d, h, dh),
                                    (w_v * gamma).reshape(h, dh, d)).reshape(d, h * d)
            values_b = query + pool.proj.weight @ (w_v @ beta + b_v) + pool.proj.bias
        self.heads, self.eps = h, eps
        self.register_buffer("pos", pool.pos.detach().clone())
        self.register_buffer("query_z", query_z.reshape(1, 1, d).clone())
        self.logits = nn.Linear(d, h)
        self.values = nn.Linear(h * d, d)
        self.out_norm = nn.LayerNorm(d, eps=pool.out_norm.eps)
        self.mask = SlotMask()
        for module, (w, b) in ((self.logits, (logits_w, logits_b)), (self.values, (values_w, values_b)),
                               (self.out_norm, (pool.out_norm.weight, pool.out_norm.bias))):
            module.weight.data.copy_(w)
            module.bias.data.copy_(b)
        self.train(pool.training)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        z = torch.cat([self.query_z.expand(b, -1, -1),
                       nn.functional.layer_norm(x + self.pos[:, :t], (d,), eps=self.eps)], dim=1)
        logits = self.logits(z).transpose(1, 2)  # (B, heads, T + 1): XNNPACK's softmax takes the last axis only
        if valid is not None:
            logits = self.mask(logits, valid)
        weighted = logits.softmax(dim=-1) @ z  # (B, heads, D)
        return self.out_norm(self.values(weighted.reshape(b, self.heads * d)))


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
