"""Export-friendly CNN students: timm MobileNet/EfficientNet-Lite and ResNet trunks with temporal pooling.

Convolutions, BatchNorm and ReLU/ReLU6 are what every mobile delegate runs whole in int8
(XNNPACK, LiteRT, ONNX Runtime's QLinear kernels): a conv trunk lowers to a handful of
delegate calls instead of MobileViT's dozens.

Two families, because int8 pays differently on them. MobileNets spend their MACs in 1×1 and
depthwise convolutions; XNNPACK's int8 depthwise kernel is slower than its fp32 one on x86, so
their int8 speed-up stops near 1.5×. ResNets (basic blocks) are dense 3×3 convolutions, the
GEMM-shaped work int8 dot-product instructions (VNNI, ARM SDOT) speed up most.
"""

from __future__ import annotations

from torch import nn

from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import VideoClassifier

# variant -> timm model. ``v4_small_035`` is the test-sized one.
MOBILENET_VARIANTS = {
    "v4_small_035": "mobilenetv4_conv_small_035",
    "v4_small_050": "mobilenetv4_conv_small_050",
    "v4_small": "mobilenetv4_conv_small",
    "v2_050": "mobilenetv2_050",
    "lite0": "efficientnet_lite0",
}

# variant -> (basic blocks per stage, width of the first stage; each later stage doubles it),
# optionally an embedding width that overrides ``embed_dim``. ``r10_16`` is the test-sized one;
# ``r10_64`` is ResNet-10 at full width. ``r10_16_e128`` is the smallest: at 256 wide the temporal
# pool alone would hold 330 K weights, more than the trunk; at 128 the model has 0.41 M, 1/55 of
# the 22.7 M MiniLM teacher.
RESNET_VARIANTS = {
    "r10_16": ((1, 1, 1, 1), 16),
    "r10_16_e128": ((1, 1, 1, 1), 16, 128),
    "r10_32": ((1, 1, 1, 1), 32),
    "r10_48": ((1, 1, 1, 1), 48),
    "r10_64": ((1, 1, 1, 1), 64),
    "r18_32": ((2, 2, 2, 2), 32),
}


class ConvEncoder(nn.Module):
    """A CNN trunk as ``stem`` + numbered ``stages``, then global average + a linear projection.

    The projection replaces timm's classifier head: MobileNetV3/V4 apply their 1280-wide head
    conv after pooling, so it *is* a linear layer, and a narrow one keeps the temporal pool
    small (at 1280 wide the pool's attention would hold most of the student's weights).
    ``stages`` are what CBKD prunes block by block.
    """

    def __init__(self, stem: nn.Module, stages: nn.Sequential, width: int, embed_dim: int) -> None:
        super().__init__()
        self.stem, self.stages = stem, stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(width, embed_dim)
        self.num_features = embed_dim

    def forward(self, x):
        return self.proj(self.pool(self.stages(self.stem(x))).flatten(1))


def _check(family: str, variant: str, variants: dict, size: int) -> None:
    if variant not in variants:
        raise ValueError(f"unknown {family} variant '{variant}'; valid: {', '.join(variants)}")
    if size % 32:
        raise ValueError(f"{family} needs an image size divisible by 32, got {size}")


@MODELS.register("mobilenet")
def mobilenet(num_classes: int, frames: int, size: int, variant: str = "v4_small",
              embed_dim: int = 256) -> VideoClassifier:
    """MobileNet/EfficientNet-Lite student; ``variant`` is one of v4_small_035/v4_small_050/v4_small/v2_050/lite0."""
    import timm

    _check("mobilenet", variant, MOBILENET_VARIANTS, size)
    trunk = timm.create_model(MOBILENET_VARIANTS[variant], pretrained=False, num_classes=0)
    encoder = ConvEncoder(nn.Sequential(trunk.conv_stem, trunk.bn1), trunk.blocks,
                          trunk.feature_info[-1]["num_chs"], embed_dim)
    return VideoClassifier(encoder, embed_dim, num_classes, frames, size)


@MODELS.register("resnet")
def resnet(num_classes: int, frames: int, size: int, variant: str = "r10_48",
           embed_dim: int = 256) -> VideoClassifier:
    """ResNet student of basic blocks (dense 3×3 convs); ``variant`` is a key of ``RESNET_VARIANTS`` (r10_48...).

    Example: ``MODELS.get("resnet")(num_classes=16, frames=4, size=64, variant="r10_48")``
    """
    from timm.models.resnet import BasicBlock, ResNet

    _check("resnet", variant, RESNET_VARIANTS, size)
    layers, width, *embed = RESNET_VARIANTS[variant]
    embed_dim = embed[0] if embed else embed_dim
    widths = tuple(width * 2 ** i for i in range(4))
    trunk = ResNet(BasicBlock, list(layers), num_classes=0, stem_width=width, channels=widths)
    stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.act1, trunk.maxpool)
    stages = nn.Sequential(trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)
    return VideoClassifier(ConvEncoder(stem, stages, widths[-1], embed_dim), embed_dim, num_classes, frames, size)


mobilenet.variants = tuple(MOBILENET_VARIANTS)
resnet.variants = tuple(RESNET_VARIANTS)
