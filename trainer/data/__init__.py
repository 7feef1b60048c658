"""Datasets: the generated egocentric clip default and the shared preprocessing."""

from trainer.data.clips import (
    ClipSplit,
    DataConfig,
    label_names,
    load_split,
    preprocess_spec,
    to_model_input,
)
from trainer.data.synthetic import LABELS, NOUNS, VERBS, ClipSpec, generate_split, render_clip

__all__ = [
    "LABELS", "NOUNS", "VERBS", "ClipSpec", "ClipSplit", "DataConfig", "generate_split", "label_names",
    "load_split", "preprocess_spec", "render_clip", "to_model_input",
]
