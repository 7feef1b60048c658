"""Modalities of a clip and how each becomes a model input: RGB, optical flow, audio, object boxes, text.

A model's checkpoint ``preprocess`` block names its modality (RGB when it names none), so
every consumer feeds it with :func:`model_input` without knowing which it is. Each modality
is a registry entry with its ``preprocess`` block, the keyword arguments its models are
built with, and the function that turns a batch of a split into a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.registry import Registry
from egoedge.trainer.data.clips import ClipSplit, DataConfig, derived, preprocess_spec, to_model_input
from egoedge.trainer.data.labeling import labeling
from egoedge.trainer.data.synthetic import BOX_SLOTS
from egoedge.trainer.data.vocab import BOX_CLASSES


@dataclass(frozen=True)
class Modality:
    """How one modality is described, built for and fed."""

    name: str
    preprocess: Callable[[DataConfig, str | None], dict]  # (data, tokenizer) -> preprocess block
    model_kwargs: Callable[[DataConfig, dict], dict]  # shape arguments of its models' builders
    batch: Callable[[ClipSplit, np.ndarray, dict], torch.Tensor]


MODALITIES: Registry = Registry("modality")


def _register(m: Modality) -> Modality:
    return MODALITIES.register(m.name)(m)


def modality_of(preprocess: dict) -> str:
    """The modality a ``preprocess`` block describes (``rgb`` when it names none)."""
    return preprocess.get("modality", "rgb")


def modality_preprocess(name: str, data: DataConfig, tokenizer: str | None = None) -> dict:
    """The ``preprocess`` block of a model that reads modality ``name`` of ``data``."""
    return _get(name).preprocess(data, tokenizer)


def modality_model_kwargs(name: str, data: DataConfig, preprocess: dict) -> dict:
    """Shape arguments for building a model of modality ``name``."""
    return _get(name).model_kwargs(data, preprocess)


def model_input(split: ClipSplit, idx: np.ndarray, preprocess: dict) -> torch.Tensor:
    """The batch ``idx`` of ``split`` as the model described by ``preprocess`` takes it.

    Example::

        x = model_input(train, np.arange(16), ckpt["preprocess"])  # RGB, flow, audio, boxes or text
    """
    return _get(modality_of(preprocess)).batch(split, np.asarray(idx), preprocess)


def _get(name: str) -> Modality:
    try:
        return MODALITIES.get(name)
    except KeyError as e:
        raise EgoedgeError(e.args[0]) from None


def _clip_shape(data: DataConfig, pp: dict) -> dict:
    return {"frames": data.frames, "size": data.size}


_register(Modality(
    "rgb", lambda data, _: preprocess_spec(data), _clip_shape,
    lambda split, idx, pp: to_model_input(split.clips[idx], pp)))


def _flow_batch(split: ClipSplit, idx: np.ndarray, pp: dict) -> torch.Tensor:
    from egoedge.trainer.data.optical_flow import clip_flow

    flow = derived(split, "flow", lambda s: clip_flow(s.clips))
    # A few pixels per frame is typical; the clamp keeps the rare wild estimate in flat regions in range.
    return torch.from_numpy(flow[idx]).float().clamp_(-pp["clip"], pp["clip"]).mul_(pp["scale"])


_register(Modality(
    "flow",
    lambda data, _: {"modality": "flow", "frames": data.frames - 1, "size": [data.size, data.size],
                     "layout": "NTCHW", "scale": 0.25, "clip": 16.0, "method": "horn_schunck"},
    _clip_shape, _flow_batch))


def _need(split: ClipSplit, key: str, modality: str) -> np.ndarray:
    if key not in split.extras:
        raise EgoedgeError(f"this split has no '{key}' for the {modality} modality; regenerate it with this egoedge")
    return split.extras[key]


def _audio_batch(split: ClipSplit, idx: np.ndarray, pp: dict) -> torch.Tensor:
    spec = torch.from_numpy(_need(split, "audio", "audio")[idx]).float()
    return ((spec - pp["mean"]) / pp["std"])[:, None, None]  # one "frame" of one channel: (B, 1, 1, F, S)


def _audio_pp(data: DataConfig, _: str | None) -> dict:
    from egoedge.trainer.data.audio import AUDIO_BANDS, AUDIO_RATE, AUDIO_STEPS

    # mean/std of the log band power over generated clips, so the input is roughly unit scale.
    return {"modality": "audio", "bands": AUDIO_BANDS, "steps": AUDIO_STEPS, "rate": AUDIO_RATE,
            "mean": -1.1, "std": 2.8, "layout": "NTCHW"}


_register(Modality("audio", _audio_pp, lambda data, pp: {}, _audio_batch))

BOX_FEATURES = 5 + len(BOX_CLASSES)  # cx, cy, w, h, present, one-hot class


def box_features(boxes: np.ndarray, present: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Detections ``(B, T, K, 4)`` xyxy + ``(B, T, K)`` + ``(B, K)`` -> tokens ``(B, T, K, BOX_FEATURES)``."""
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    onehot = np.zeros((*classes.shape, len(BOX_CLASSES)), np.float32)
    valid = classes >= 0
    onehot[valid, classes[valid]] = 1.0
    onehot = np.broadcast_to(onehot[:, None], (*present.shape, len(BOX_CLASSES)))
    geo = np.stack([cx, cy, w, h, present.astype(np.float32)], axis=-1)
    return np.concatenate([geo, onehot], axis=-1).astype(np.float32) * present[..., None]


def _objects_batch(split: ClipSplit, idx: np.ndarray, pp: dict) -> torch.Tensor:
    feats = box_features(_need(split, "boxes", "objects")[idx], split.extras["present"][idx],
                         split.extras["box_classes"][idx])
    return torch.from_numpy(feats)


_register(Modality(
    "objects",
    lambda data, _: {"modality": "objects", "frames": data.frames, "slots": BOX_SLOTS, "classes": list(BOX_CLASSES),
                     "features": ["cx", "cy", "w", "h", "present", *[f"is_{c}" for c in BOX_CLASSES]],
                     "layout": "NTKF"},
    lambda data, pp: {"frames": data.frames}, _objects_batch))


def _text_batch(split: ClipSplit, idx: np.ndarray, pp: dict) -> torch.Tensor:
    from egoedge.trainer.data.anticipation import history_text
    from egoedge.trainer.data.text import tokenize

    if "history" not in split.extras:
        raise EgoedgeError("a text teacher reads the past actions of an anticipation split; use --task anticipation")
    ids = derived(split, f"tokens_{pp['tokenizer']}_{pp['max_len']}",
                  lambda s: tokenize([history_text(h) for h in s.extras["history"]], pp["tokenizer"], pp["max_len"]))
    return torch.from_numpy(ids[idx])


def _text_pp(data: DataConfig, tokenizer: str | None) -> dict:
    if "history" not in labeling(data.task).extras:
        raise EgoedgeError("a text teacher reads the past actions of an anticipation split; use --task anticipation")
    # "<cls>" + per action a verb, a noun and a comma (WordPiece may split a word; keep room).
    return {"modality": "text", "tokenizer": tokenizer or "words", "max_len": 4 * data.history + 4,
            "history": data.history}


_register(Modality("text", _text_pp, lambda data, pp: {"max_len": pp["max_len"]}, _text_batch))
