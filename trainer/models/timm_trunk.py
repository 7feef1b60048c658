"""Any timm backbone as the per-frame trunk (``timm:NAME``): students, and pretrained teachers from a file.

Example: ``build_model("timm", num_classes=16, frames=4, size=64, variant="mobilenetv3_small_100")``.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import torch
from torch import nn

from egoedge.trainer.common.io import EgoedgeError, first_line
from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import VideoClassifier
from egoedge.trainer.models.weights import load_weights, read_weights

# timm's numbered block containers, the units CBKD prunes one at a time.
_BLOCKS = re.compile(r"^model\.(stages|blocks|layers)\.\d+$|^model\.layer\d+$")


def check_timm_name(name: str) -> None:
    """An unknown timm architecture is one line listing the closest names timm knows."""
    import timm

    if timm.is_model(name.split(".")[0]):
        return
    known = timm.list_models() + timm.list_models(pretrained=True)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    raise EgoedgeError(f"unknown timm model '{name}'" + (f"; close matches: {', '.join(close)}" if close else
                                                          "; see timm.list_models()"))


def create_timm(name: str, size: int, **kwargs) -> nn.Module:
    """A headless timm model (``num_classes=0``) for ``size`` px frames; ViT-style models get ``img_size``."""
    import timm

    check_timm_name(name)
    try:
        return timm.create_model(name, num_classes=0, img_size=size, **kwargs)
    except TypeError:  # a model without a fixed input size (CNNs) takes no img_size
        return timm.create_model(name, num_classes=0, **kwargs)


class TimmTrunk(nn.Module):
    """``(N, 3, H, W)`` frames -> ``(N, num_features)`` pooled timm features."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__()
        self.name = name
        self.size = size
        self.model = create_timm(name, size, pretrained=False)
        with torch.no_grad():  # what forward returns: num_features is the pre-head width on some (MobileNetV3)
            self.num_features = int(self.eval()(torch.zeros(1, 3, size, size)).shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.flatten(1) if out.ndim > 2 else out

    def cbkd_blocks(self) -> list[str]:
        """The numbered block containers (``model.blocks.3``, ``model.layer2``) CBKD prunes one at a time."""
        return [n for n, _ in self.named_modules() if _BLOCKS.match(n)]

    def load_pretrained(self, weights: str | None) -> None:
        """Weights from a file (timm's own checkpoint filter applies: OpenAI CLIP layouts, position-embedding
        resampling), or timm's download when ``weights`` is ``None`` and the machine is online."""
        if weights is None:
            try:
                source = create_timm(self.name, self.size, pretrained=True)
            except Exception as e:  # noqa: BLE001 - offline, no such tag, hub errors: one line either way
                raise EgoedgeError(f"cannot download timm weights for '{self.name}' ({first_line(e)[:160]}); "
                                   "give the file with --teacher-weights FILE") from None
            self.model.load_state_dict(source.state_dict())
            return
        state = read_weights(weights)
        filter_fn = getattr(sys.modules[type(self.model).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                state = filter_fn(state, self.model)
            except Exception as e:  # noqa: BLE001 - a filter that chokes on a foreign layout
                raise EgoedgeError(f"{weights}: timm's checkpoint filter for {self.name} cannot read it: "
                                   f"{first_line(e)[:160]}") from None
        own = self.model.state_dict()
        classifier = self.model.pretrained_cfg.get("classifier") or ()
        for head in (classifier,) if isinstance(classifier, str) else classifier:
            for k in [k for k in state if k.startswith(f"{head}.") and k not in own]:
                del state[k]  # the file's classifier: this trunk is headless
        load_weights(self.model, state, f"weights file {Path(weights).name} for timm:{self.name}")


@MODELS.register("timm")
def timm_video(num_classes: int, frames: int, size: int, variant: str = "mobilenetv3_small_100") -> VideoClassifier:
    """Any timm backbone (``variant`` is its name, e.g. ``resnet18`` or ``vit_base_patch32_clip_224.openai``) per
    frame, with the temporal attention pool and a linear head."""
    trunk = TimmTrunk(variant, size)
    heads = 4 if trunk.num_features % 4 == 0 else 1
    return VideoClassifier(trunk, trunk.num_features, num_classes, frames, size, pool_heads=heads)



