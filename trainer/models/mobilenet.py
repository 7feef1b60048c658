"""Export-friendly CNN students: timm MobileNetV4/V2 and EfficientNet-Lite trunks with temporal pooling.

Convolutions, BatchNorm and ReLU/ReLU6 are what every mobile delegate runs whole in int8
(XNNPACK, LiteRT, ONNX Runtime's QLinear kernels): a conv trunk lowers to a handful of
delegate calls instead of MobileViT's dozens, and its int8 graph is several times cheaper.
"""

from __future__ import annotations

from torch import nn

from trainer.models.registry import MODELS
from trainer.models.video import VideoClassifier

# variant -> timm model. ``v4_small_035`` is the test-sized one.
MOBILENET_VARIANTS = {
    "v4_small_035": "mobilenetv4_conv_small_035",
    "v4_small_050": "mobilenetv4_conv_small_050",
    "v4_small": "mobilenetv4_conv_small",
    "v2_050": "mobilenetv2_050",
    "lite0": "efficientnet_lite0",
}


class ConvEncoder(nn.Module):
    """A timm MobileNet/EfficientNet trunk as ``stem`` + numbered ``stages``, then global average + projection.

    The projection replaces timm's 1280-wide head: MobileNetV3/V4 apply their head conv after
    pooling, so it *is* a linear layer, and a narrow one keeps the temporal pool small (at 1280
    wide the pool's attention would hold most of the student's weights). ``stages`` are what
    CBKD prunes block by block.
    """

    def __init__(self, timm_name: str, embed_dim: int) -> None:
        super().__init__()
        import timm

        trunk = timm.create_model(timm_name, pretrained=False, num_classes=0)
        self.stem = nn.Sequential(trunk.conv_stem, trunk.bn1)
        self.stages = trunk.blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(trunk.feature_info[-1]["num_chs"], embed_dim)
        self.num_features = embed_dim

    def forward(self, x):
        return self.proj(self.pool(self.stages(self.stem(x))).flatten(1))


@MODELS.register("mobilenet")
def mobilenet(num_classes: int, frames: int, size: int, variant: str = "v4_small",
              embed_dim: int = 256) -> VideoClassifier:
    """CNN student; ``variant`` is one of v4_small_035/v4_small_050/v4_small/v2_050/lite0."""
    if variant not in MOBILENET_VARIANTS:
        raise ValueError(f"unknown mobilenet variant '{variant}'; valid: {', '.join(MOBILENET_VARIANTS)}")
    if size % 32:
        raise ValueError(f"MobileNet needs an image size divisible by 32, got {size}")
    encoder = ConvEncoder(MOBILENET_VARIANTS[variant], embed_dim)
    return VideoClassifier(encoder, embed_dim, num_classes, frames, size)


mobilenet.variants = tuple(MOBILENET_VARIANTS)
