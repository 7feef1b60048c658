"""A local Hugging Face ``transformers`` vision or video model as the trunk (``hf:DIR``), for pretrained teachers.

An image model (CLIP's vision tower, ViT, DINOv2 ...) runs on every frame; a video model (one
whose config has ``num_frames``: VideoMAE, TimeSformer ...) runs once per clip. The checkpoint
records the model's config, so it rebuilds without the folder.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from egoedge.trainer.common.io import EgoedgeError, first_line
from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import VideoClassifier
from egoedge.trainer.models.weights import load_weights, read_weights


def hf_config(folder: str | Path):
    """The ``transformers`` config of a local model folder; a folder that is not one is one clear line."""
    from transformers import AutoConfig

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise EgoedgeError(f"hf:{folder}: no config.json there; give a folder written by save_pretrained "
                           "(config.json + model.safetensors)")
    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - an unknown model_type, bad JSON
        raise EgoedgeError(f"hf:{folder}: transformers cannot read its config.json: {first_line(e)[:200]}") from None


def _features(out) -> torch.Tensor:
    """One vector per input from whatever the model returns: projected embeds, the pooler, or mean tokens."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("image_embeds", "pooler_output"):
        value = getattr(out, key, None)
        if value is not None:
            return value.flatten(1)
    return out.last_hidden_state.mean(1)


class HFTrunk(nn.Module):
    """Frames ``(N, 3, H, W)`` (an image model) or clips ``(B, T, 3, H, W)`` (a video model) -> ``(N, D)``."""

    def __init__(self, config, size: int, folder: str | None = None) -> None:
        super().__init__()
        from transformers import AutoModel

        self.folder = folder
        self.model = AutoModel.from_config(config)
        self.video = getattr(config, "num_frames", None) is not None
        self.num_frames = getattr(config, "num_frames", None)
        vision = getattr(config, "vision_config", config)
        self.image_size = getattr(vision, "image_size", None)
        self.size = size
        forward = self.model.get_image_features if hasattr(self.model, "get_image_features") else self.model.forward
        # A ViT-style model of another image size: interpolate its position embeddings when it can,
        # else resize the frames to the size it was trained at.
        self.interpolate = (self.image_size not in (None, size) and not self.video
                            and "interpolate_pos_encoding" in inspect.signature(forward).parameters)
        with torch.no_grad():
            probe = torch.zeros(1, 2, 3, size, size) if self.video else torch.zeros(1, 3, size, size)
            self.num_features = int(self.eval()(probe).shape[-1])

    def _sized(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_size in (None, x.shape[-1]) or self.interpolate:
            return x
        flat = x.reshape(-1, *x.shape[-3:])
        flat = F.interpolate(flat, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return flat.reshape(*x.shape[:-2], self.image_size, self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._sized(x)
        if self.video:
            # The clip resampled to the frame count the model's position embeddings were made for.
            idx = torch.linspace(0, x.shape[1] - 1, self.num_frames).round().long().to(x.device)
            return _features(self.model(pixel_values=x.index_select(1, idx)))
        kw = {"interpolate_pos_encoding": True} if self.interpolate else {}
        if hasattr(self.model, "get_image_features"):  # a whole CLIP-style model: its image tower only
            return _features(self.model.get_image_features(pixel_values=x, **kw))
        return _features(self.model(pixel_values=x, **kw))

    def load_pretrained(self, weights: str | None) -> None:
        """Weights from ``weights`` (a file), else from the model folder itself."""
        if weights is not None:
            load_weights(self.model, read_weights(weights), f"weights file {Path(weights).name} for hf:{self.folder}")
            return
        if self.folder is None:
            raise EgoedgeError("an hf: model rebuilt from a checkpoint has no folder to read weights from")
        from transformers import AutoModel

        try:
            source = AutoModel.from_pretrained(self.folder, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - no weights file in the folder, a damaged one
            raise EgoedgeError(f"hf:{self.folder}: cannot load its weights: {first_line(e)[:200]}") from None
        load_weights(self.model, source.state_dict(), f"hf:{self.folder}")


class ClipLevelClassifier(VideoClassifier):
    """A video trunk that reads the whole clip at once: one embedding per clip, pooled as a one-step sequence."""

    def __init__(self, trunk: HFTrunk, num_classes: int, frames: int, size: int) -> None:
        heads = 4 if trunk.num_features % 4 == 0 else 1
        super().__init__(trunk, trunk.num_features, num_classes, frames, size, pool_heads=heads)
        from egoedge.trainer.models.video import TemporalAttentionPool

        self.pool = TemporalAttentionPool(trunk.num_features, 1, heads)

    def frame_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[:, None]


@MODELS.register("hf")
def hf_video(num_classes: int, frames: int, size: int, variant: str = "", hf_config_dict: dict | None = None
             ) -> VideoClassifier:
    """A local ``transformers`` model folder (``variant``); ``hf_config_dict`` rebuilds it without the folder."""
    if hf_config_dict is not None:
        from transformers import AutoConfig

        data = dict(hf_config_dict)
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    else:
        if not variant:
            raise ValueError("hf needs a model folder: --teacher hf:DIR")
        config = hf_config(variant)
    trunk = HFTrunk(config, size, folder=variant or None)
    if trunk.video:
        model = ClipLevelClassifier(trunk, num_classes, frames, size)
    else:
        heads = 4 if trunk.num_features % 4 == 0 else 1
        model = VideoClassifier(trunk, trunk.num_features, num_classes, frames, size, pool_heads=heads)
    # What the checkpoint must record to rebuild this model where the folder is not.
    model.rebuild_kwargs = {"hf_config_dict": json.loads(config.to_json_string(use_diff=False))}
    return model


hf_video.always_pretrained = True  # its weights are the folder's (or --teacher-weights), never trained from scratch
