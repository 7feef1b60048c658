"""Datasets: generated clips or your own videos (by ``--data`` source), other modalities, shared preprocessing."""

from egoedge.trainer.data.clips import CLIP_TASKS, ClipSplit, DataConfig, derived, preprocess_spec, to_model_input
from egoedge.trainer.data.modalities import MODALITIES, modality_of, model_input
from egoedge.trainer.data.sources import DATA_SOURCES, label_names, load_split, normalize_spec, prepare_data
from egoedge.trainer.data.synthetic import ClipSpec, generate_split, render_clip
from egoedge.trainer.data.vocab import BOX_CLASSES, LABELS, NOUNS, VERBS

__all__ = [
    "BOX_CLASSES", "CLIP_TASKS", "DATA_SOURCES", "LABELS", "MODALITIES", "NOUNS", "VERBS", "ClipSpec", "ClipSplit",
    "DataConfig", "derived", "generate_split", "label_names", "load_split", "model_input", "modality_of",
    "normalize_spec", "prepare_data", "preprocess_spec", "render_clip", "to_model_input",
]
