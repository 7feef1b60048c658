"""Datasets: generated clips or your own videos (by ``--data`` source), other modalities, shared preprocessing."""

from egoedge.trainer.data import anticipation  # noqa: F401  (registers its labeling)
from egoedge.trainer.data.clips import ClipSplit, DataConfig, derived, preprocess_spec, to_model_input
from egoedge.trainer.data.labeling import LABELINGS, labeling
from egoedge.trainer.data.modalities import MODALITIES, modality_of, model_input
from egoedge.trainer.data.sources import DATA_SOURCES, label_names, load_split, normalize_spec, prepare_data
from egoedge.trainer.data.synthetic import ClipSpec, generate_split, render_clip
from egoedge.trainer.data.vocab import BOX_CLASSES, LABELS, NOUNS, VERBS

__all__ = [
    "BOX_CLASSES", "DATA_SOURCES", "LABELINGS", "LABELS", "MODALITIES", "NOUNS", "VERBS", "ClipSpec", "ClipSplit",
    "DataConfig", "derived", "generate_split", "label_names", "labeling", "load_split", "model_input", "modality_of",
    "normalize_spec", "prepare_data", "preprocess_spec", "render_clip", "to_model_input",
]
