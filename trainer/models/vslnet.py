"""The VSLNet family for Ego4D NLQ: span prediction over video features conditioned on a text query.

One configurable network covers the registry's members (Zhang et al., ACL 2020, and the
FiLM/KD extensions of ARDA-VSLNet):

- ``vslbase``: shared feature encoder (positions, depthwise-separable convolutions, self-attention,
  feed-forward) over video and query -> context-query attention -> query-pooled concatenation
  -> conditioned start/end predictor.
- ``vslnet``: adds query-guided highlighting (a per-step foreground score that scales the features,
  trained against the answer window widened by ``extend``).
- ``deepvslnet``: the teacher, deeper and wider, reading queries with the pretrained MiniLM.
- ``lightvslnet``: the phone student, narrow and shallow, word embeddings only.

FiLM (Perez et al., 2018) scales and shifts the video stream by ``(1 + γ, β)`` computed from the
pooled query, at the point ``film`` names: ``before_encoder``, ``after_encoder``,
``inside_encoder:{after_pos,after_conv,after_attn,multi}`` or ``off``.

Export-minded choices: every softmax over padded positions is computed in full and then
re-normalised over the valid ones (no large negative constants, which would wreck int8 ranges),
attention is explicit matmuls, and logits leave the network unmasked; masking happens in
``mask_logits`` during training and decoding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from egoedge.trainer.models.registry import MODELS

FILM_POINTS = ("after_pos", "after_conv", "after_attn")
FILM_MODES = ("off", "before_encoder", "after_encoder", *(f"inside_encoder:{p}" for p in (*FILM_POINTS, "multi")))
TEXT_ENCODERS = ("words", "minilm")


@dataclass(frozen=True)
class VSLConfig:
    """Shape of one VSLNet-family network."""

    feature_dim: int
    vocab_size: int = 2
    text: str = "words"
    text_trainable: bool = False  # MiniLM only: fine-tune it (True) or keep it frozen
    word_dim: int = 128
    dim: int = 128
    heads: int = 4
    encoder_blocks: int = 1
    conv_layers: int = 4
    kernel: int = 7
    ffn_mult: int = 2
    predictor_layers: int = 1
    highlight: bool = True
    shared_encoder: bool = True  # one encoder for video and query, as VSLNet; False: one each
    film: str = "off"
    max_pos_len: int = 128
    max_query_len: int = 20
    dropout: float = 0.1

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting."""
        if self.film not in FILM_MODES:
            raise ValueError(f"unknown FiLM mode '{self.film}'; valid: {', '.join(FILM_MODES)}")
        if self.text not in TEXT_ENCODERS:
            raise ValueError(f"unknown text encoder '{self.text}'; valid: {', '.join(TEXT_ENCODERS)}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by {self.heads} heads")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over the positions where ``mask`` is 1 (mask broadcastable to ``scores``)."""
    p = torch.softmax(scores, dim) * mask
    return p / (p.sum(dim, keepdim=True) + 1e-9)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, L, C)`` over the valid positions of ``mask`` ``(B, L)``."""
    m = mask.unsqueeze(-1)
    return (x * m).sum(1) / (m.sum(1) + 1e-9)


def mask_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Push padded positions of ``(B, T)`` logits to -1e30 so that they never win."""
    return logits + (1.0 - mask) * -1e30


class FiLM(nn.Module):
    """``x * (1 + γ) + β`` with ``(γ, β)`` a linear map of the pooled query; starts as the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(cond).unsqueeze(1).chunk(2, dim=-1)
        return x * (1.0 + gamma) + beta


class ConvLayer(nn.Module):
    """Pre-norm depthwise-separable 1-D convolution with a residual connection."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        self.pointwise = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x).transpose(1, 2)
        return x + F.relu(self.pointwise(self.depthwise(y))).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention as explicit matmuls over valid positions."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        p = masked_softmax((q @ k.transpose(-1, -2)) * self.scale, mask[:, None, None, :], -1)
        y = (self.drop(p) @ v).transpose(1, 2).reshape(b, t, c)
        return self.out(y)


class EncoderBlock(nn.Module):
    """Convolutions, then self-attention, then a feed-forward layer, each pre-norm and residual."""

    def __init__(self, cfg: VSLConfig) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvLayer(cfg.dim, cfg.kernel) for _ in range(cfg.conv_layers))
        self.attn_norm = nn.LayerNorm(cfg.dim)
        self.attn = SelfAttention(cfg.dim, cfg.heads, cfg.dropout)
        self.ffn_norm = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_mult * cfg.dim), nn.ReLU(),
                                 nn.Linear(cfg.ffn_mult * cfg.dim, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, film: dict | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        film = film or {}
        for conv in self.convs:
            x = conv(x)
        if "after_conv" in film:
            x = film["after_conv"](x, cond)
        x = x + self.drop(self.attn(self.attn_norm(x), mask))
        if "after_attn" in film:
            x = film["after_attn"](x, cond)
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class FeatureEncoder(nn.Module):
    """Learned positions and ``encoder_blocks`` blocks, shared by the video and the query stream."""

    def __init__(self, cfg: VSLConfig) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, max(cfg.max_pos_len, cfg.max_query_len), cfg.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.encoder_blocks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, films: nn.ModuleList | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.pos[:, :x.shape[1]]
        for i, block in enumerate(self.blocks):
            film = dict(films[i]) if films is not None else {}
            if "after_pos" in film and i == 0:
                x = film["after_pos"](x, cond)
            x = block(x, mask, film, cond)
        return x


class CQAttention(nn.Module):
    """Context-query attention (trilinear similarity; context-to-query and query-to-context)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_c = nn.Linear(dim, 1, bias=False)
        self.w_q = nn.Linear(dim, 1, bias=False)
        self.w_cq = nn.Parameter(torch.empty(dim).uniform_(-dim ** -0.5, dim ** -0.5))
        self.proj = nn.Linear(4 * dim, dim)

    def forward(self, c: torch.Tensor, q: torch.Tensor, c_mask: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        s = self.w_c(c) + self.w_q(q).transpose(1, 2) + (c * self.w_cq) @ q.transpose(1, 2)  # (B, T, L)
        to_query = masked_softmax(s, q_mask[:, None, :], 2)
        to_context = masked_softmax(s, c_mask[:, :, None], 1)
        a = to_query @ q
        b = to_query @ (to_context.transpose(1, 2) @ c)
        return self.proj(torch.cat([c, a, c * a, c * b], 2))


class CQConcat(nn.Module):
    """Concatenate an attention-pooled query vector to every video step, then project back."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, c: torch.Tensor, q: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        alpha = masked_softmax(self.score(q).squeeze(-1), q_mask, 1)
        pooled = (alpha.unsqueeze(-1) * q).sum(1, keepdim=True)
        return self.proj(torch.cat([c, pooled.expand(-1, c.shape[1], -1)], 2))


class Predictor(nn.Module):
    """Start and end heads, the end head reading the start stream (VSLNet's conditioned predictor)."""

    def __init__(self, cfg: VSLConfig) -> None:
        super().__init__()
        self.start_enc = nn.ModuleList(ConvLayer(cfg.dim, cfg.kernel) for _ in range(cfg.predictor_layers))
        self.end_enc = nn.ModuleList(ConvLayer(cfg.dim, cfg.kernel) for _ in range(cfg.predictor_layers))
        self.start_head = nn.Sequential(nn.Linear(2 * cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, 1))
        self.end_head = nn.Sequential(nn.Linear(2 * cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = x
        for layer in self.start_enc:
            s = layer(s)
        e = s
        for layer in self.end_enc:
            e = layer(e)
        start = self.start_head(torch.cat([s, x], 2)).squeeze(-1)
        end = self.end_head(torch.cat([e, x], 2)).squeeze(-1)
        return start, end


class WordText(nn.Module):
    """Trainable word embeddings (optionally GloVe-initialised), projected to the model width."""

    def __init__(self, cfg: VSLConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.word_dim, padding_idx=0)
        self.proj = nn.Linear(cfg.word_dim, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(self.embed(ids)))


class MiniLMText(nn.Module):
    """The pretrained MiniLM's token states, projected to the model width; frozen unless ``text_trainable``."""

    def __init__(self, cfg: VSLConfig) -> None:
        super().__init__()
        from egoedge.trainer.models.text import MiniLMEncoder

        self.bert = MiniLMEncoder()
        self.trainable = cfg.text_trainable
        self.bert.requires_grad_(self.trainable)
        self.proj = nn.Linear(self.bert.width, cfg.dim)

    def train(self, mode: bool = True) -> MiniLMText:
        super().train(mode)
        if not self.trainable:
            self.bert.eval()  # frozen: no dropout, the pretrained states exactly
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            h = self.bert(ids, mask > 0)
        return self.proj(h)


class VSLNet(nn.Module):
    """``(video (B, T, D), video_mask (B, T), query_ids (B, L))`` -> start and end logits ``(B, T)``."""

    float_modules = ("text.embed",)  # int8 quantizers leave the word table float (see quantize_pt2e)

    def __init__(self, cfg: VSLConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.text = MiniLMText(cfg) if cfg.text == "minilm" else WordText(cfg)
        self.video_proj = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, cfg.dim))
        self.encoder = FeatureEncoder(cfg)
        # XNNPACK's channels-last pass cannot lower one convolution weight used by two conv nodes,
        # so the phone student gives the query its own encoder.
        self.query_encoder = None if cfg.shared_encoder else FeatureEncoder(cfg)
        self.film_outer = FiLM(cfg.dim) if cfg.film in ("before_encoder", "after_encoder") else None
        self.film_inner = self._inner_films(cfg)
        self.cq_attention = CQAttention(cfg.dim)
        self.cq_concat = CQConcat(cfg.dim)
        self.highlighter = nn.Linear(cfg.dim, 1) if cfg.highlight else None
        self.predictor = Predictor(cfg)

    @staticmethod
    def _inner_films(cfg: VSLConfig) -> nn.ModuleList | None:
        if not cfg.film.startswith("inside_encoder:"):
            return None
        point = cfg.film.split(":", 1)[1]
        points = FILM_POINTS if point == "multi" else (point,)
        # after_pos exists once (positions are added once); the other points once per block.
        return nn.ModuleList(
            nn.ModuleDict({p: FiLM(cfg.dim) for p in points if p != "after_pos" or i == 0})
            for i in range(cfg.encoder_blocks))

    def forward_all(self, video: torch.Tensor, video_mask: torch.Tensor, query_ids: torch.Tensor) -> dict:
        """Start/end logits plus the highlight logits and the fused features (for KD)."""
        q_mask = (query_ids != 0).to(video.dtype)
        q_encoder = self.encoder if self.query_encoder is None else self.query_encoder
        q = q_encoder(self.text(query_ids, q_mask), q_mask)
        cond = masked_mean(q, q_mask)
        v = self.video_proj(video)
        if self.cfg.film == "before_encoder":
            v = self.film_outer(v, cond)
        v = self.encoder(v, video_mask, self.film_inner, cond)
        if self.cfg.film == "after_encoder":
            v = self.film_outer(v, cond)
        x = self.cq_concat(self.cq_attention(v, q, video_mask, q_mask), q, q_mask)
        highlight = None
        if self.highlighter is not None:
            highlight = self.highlighter(x).squeeze(-1)
            x = x * torch.sigmoid(highlight).unsqueeze(-1)
        start, end = self.predictor(x)
        return {"start": start, "end": end, "highlight": highlight, "features": x}

    def forward(self, video: torch.Tensor, video_mask: torch.Tensor,
                query_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_all(video, video_mask, query_ids)
        return out["start"], out["end"]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A full-length clip and query: what the exported artifacts take (ids as int32)."""
        cfg = self.cfg
        dev = next(self.parameters()).device
        ids = torch.randint(1, max(2, cfg.vocab_size), (batch, cfg.max_query_len), dtype=torch.int32, device=dev)
        return (torch.randn(batch, cfg.max_pos_len, cfg.feature_dim, device=dev),
                torch.ones(batch, cfg.max_pos_len, device=dev), ids)

    @property
    def tokenizer(self) -> str:
        return self.cfg.text

    def param_groups(self) -> list[dict]:
        """Optimiser groups of the trainable parameters; a fine-tuned MiniLM moves at its ``lr_scale``."""
        bert = list(self.text.bert.parameters()) if isinstance(self.text, MiniLMText) else []
        ids = {id(p) for p in bert}
        groups = [{"params": [p for p in self.parameters() if p.requires_grad and id(p) not in ids]}]
        if any(p.requires_grad for p in bert):
            groups.append({"params": [p for p in bert if p.requires_grad], "lr_scale": self.text.bert.lr_scale})
        return groups

    def ptq_units(self) -> list[str]:
        """The units PTQ may keep in fp32, in forward order: each encoder block and each top-level part.

        The word table is not one: it always stays float (``float_modules``).
        """
        units = []
        for name, child in self.named_children():
            if isinstance(child, FeatureEncoder):
                units += [f"{name}.blocks.{i}" for i in range(len(child.blocks))]
            elif name == "text":
                units += [f"text.{n}" for n, m in child.named_children()
                          if n != "embed" and next(m.parameters(), None) is not None]
            elif next(child.parameters(), None) is not None:
                units.append(name)
        return units


def _builder(name: str, doc: str, **defaults):
    def build(**kwargs) -> VSLNet:
        return VSLNet(VSLConfig(**{**defaults, **kwargs}))

    build.__doc__, build.defaults, build.task = doc, defaults, "nlq"
    MODELS.register(name)(build)
    return build


_builder("vslbase", "VSLBase: VSLNet without query-guided highlighting.", highlight=False)
_builder("vslnet", "VSLNet: span predictor with query-guided highlighting.", highlight=True)
_builder("deepvslnet", "DeepVSLNet teacher: 2 encoder blocks, 2-layer predictor, wide feed-forward.",
         highlight=True, dim=128, heads=4, encoder_blocks=2, conv_layers=4, predictor_layers=2,
         ffn_mult=4)
_builder("lightvslnet", "LightVSLNet student: width 64, 2 conv layers of kernel 5, word embeddings, "
         "separate query encoder (lowers whole to XNNPACK).",
         highlight=True, shared_encoder=False, dim=64, heads=2, word_dim=64, conv_layers=2, kernel=5, ffn_mult=2)


def config_dict(model: VSLNet) -> dict:
    """The keyword arguments that rebuild ``model`` (saved in its checkpoint)."""
    return asdict(model.cfg)
