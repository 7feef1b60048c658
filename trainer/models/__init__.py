"""Registry of teachers and students; importing this package registers every model."""

from trainer.models import student, teacher  # noqa: F401  (registration side effects)
from trainer.models.registry import MODELS
from trainer.models.video import TemporalAttentionPool, VideoClassifier


def build_model(arch: str, **kwargs) -> VideoClassifier:
    """Build a registered model by name, e.g. ``build_model("mobilevit", num_classes=16, frames=4, size=64)``."""
    return MODELS.get(arch)(**kwargs)


__all__ = ["MODELS", "TemporalAttentionPool", "VideoClassifier", "build_model"]
