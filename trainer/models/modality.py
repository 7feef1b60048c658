"""Teachers for the other modalities of a clip: optical flow, audio, object boxes.

Each is a :class:`VideoClassifier` whose per-step encoder reads its modality, so they train,
distil and evaluate through the same code as the RGB models. Their ``modality`` attribute
tells the trainer which input to feed them (:mod:`trainer.data.modalities`).
"""

from __future__ import annotations

import torch
from torch import nn

from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import VideoClassifier

CNN_WIDTHS: dict[str, tuple[int, ...]] = {"test": (8, 16), "small": (32, 64, 128, 192)}
BOX_SIZES: dict[str, tuple[int, int]] = {"test": (16, 1), "small": (128, 2)}  # width, depth


class ConvEncoder(nn.Module):
    """Stages of (stride-2 3x3, 3x3) conv + BN + ReLU, then global average pooling."""

    def __init__(self, in_chans: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.stages = nn.Sequential(*layers)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).mean(dim=(2, 3))


def _widths(variant: str) -> tuple[int, ...]:
    if variant not in CNN_WIDTHS:
        raise ValueError(f"unknown variant '{variant}'; valid: {', '.join(CNN_WIDTHS)}")
    return CNN_WIDTHS[variant]


@MODELS.register("flow_cnn")
def flow_cnn(num_classes: int, frames: int, size: int, variant: str = "small") -> VideoClassifier:
    """Motion stream: a CNN on each of the ``frames - 1`` flow fields (x, y), pooled over time."""
    if frames < 2:
        raise ValueError("optical flow needs clips of at least 2 frames")
    enc = ConvEncoder(2, _widths(variant))
    return VideoClassifier(enc, enc.num_features, num_classes, frames - 1, size, pool_heads=4,
                           frame_shape=(2, size, size))


@MODELS.register("audio_cnn")
def audio_cnn(num_classes: int, variant: str = "small") -> VideoClassifier:
    """Sound stream: a CNN over the clip's log band spectrogram (one step of one channel)."""
    from egoedge.trainer.data.audio import AUDIO_BANDS, AUDIO_STEPS

    enc = ConvEncoder(1, _widths(variant))
    return VideoClassifier(enc, enc.num_features, num_classes, 1, AUDIO_STEPS, pool_heads=4,
                           frame_shape=(1, AUDIO_BANDS, AUDIO_STEPS))


class BoxSetEncoder(nn.Module):
    """One frame's detections ``(K, F)`` -> an embedding: token MLP, self-attention over the set, masked mean."""

    def __init__(self, features: int, width: int, depth: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(features, width), nn.GELU(), nn.Linear(width, width))
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        present = x[..., 4:5]  # the "present" feature: empty slots and missed detections are all zeros
        h = self.norm(self.blocks(self.embed(x)))
        return (h * present).sum(1) / present.sum(1).clamp_min(1.0)


@MODELS.register("box_transformer")
def box_transformer(num_classes: int, frames: int, variant: str = "small") -> VideoClassifier:
    """Object stream: a set transformer over each frame's detected boxes, pooled over time."""
    from egoedge.trainer.data.modalities import BOX_FEATURES
    from egoedge.trainer.data.synthetic import BOX_SLOTS

    if variant not in BOX_SIZES:
        raise ValueError(f"unknown variant '{variant}'; valid: {', '.join(BOX_SIZES)}")
    width, depth = BOX_SIZES[variant]
    enc = BoxSetEncoder(BOX_FEATURES, width, depth)
    return VideoClassifier(enc, width, num_classes, frames, 0, pool_heads=4, frame_shape=(BOX_SLOTS, BOX_FEATURES))


flow_cnn.variants = audio_cnn.variants = tuple(CNN_WIDTHS)
box_transformer.variants = tuple(BOX_SIZES)
flow_cnn.modality = "flow"
audio_cnn.modality = "audio"
box_transformer.modality = "objects"
