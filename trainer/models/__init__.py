"""Registry of teachers and students; importing this package registers every model."""

from egoedge.trainer.models import (  # noqa: F401  (registration side effects)
    cnn,
    hf_trunk,
    modality,
    student,
    teacher,
    text,
    timm_trunk,
    vslnet,
)
from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import TemporalAttentionPool, VideoClassifier


def build_model(arch: str, **kwargs) -> VideoClassifier:
    """Build a registered model by name, e.g. ``build_model("mobilevit", num_classes=16, frames=4, size=64)``."""
    return MODELS.get(arch)(**kwargs)


def model_modality(arch: str) -> str:
    """Which modality a registered architecture reads (``rgb``, ``flow``, ``audio``, ``objects``, ``text``)."""
    return getattr(MODELS.get(arch), "modality", "rgb")


def model_tokenizer(arch: str) -> str | None:
    """The tokenizer a text architecture was built for (``None`` for the others)."""
    return getattr(MODELS.get(arch), "tokenizer", None)


__all__ = ["MODELS", "TemporalAttentionPool", "VideoClassifier", "build_model", "model_modality", "model_tokenizer"]
