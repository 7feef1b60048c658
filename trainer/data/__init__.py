"""Datasets: the generated egocentric clip default, its other modalities, and the shared preprocessing."""

from trainer.data.clips import (
    CLIP_TASKS,
    ClipSplit,
    DataConfig,
    derived,
    label_names,
    load_split,
    preprocess_spec,
    to_model_input,
)
from trainer.data.modalities import MODALITIES, modality_of, model_input
from trainer.data.synthetic import ClipSpec, generate_split, render_clip
from trainer.data.vocab import BOX_CLASSES, LABELS, NOUNS, VERBS

__all__ = [
    "BOX_CLASSES", "LABELS", "MODALITIES", "NOUNS", "CLIP_TASKS", "VERBS", "ClipSpec", "ClipSplit", "DataConfig",
    "derived", "generate_split", "label_names", "load_split", "model_input", "modality_of", "preprocess_spec",
    "render_clip", "to_model_input",
]
