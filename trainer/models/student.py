"""MobileViT student (timm) with temporal attention pooling."""

from __future__ import annotations

from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import VideoClassifier


def _custom_cfgs() -> dict:
    """Narrower MobileViTs than timm ships: ``tiny`` for extreme compression, ``micro`` for tests."""
    from timm.models.byobnet import ByoModelCfg
    from timm.models.mobilevit import _inverted_residual_block as ir
    from timm.models.mobilevit import _mobilevit_block as mv

    common = dict(stem_type="3x3", stem_pool="", downsample="", act_layer="silu")
    return {
        "tiny": ByoModelCfg(
            blocks=(
                ir(d=1, c=16, s=1, br=2.0),
                ir(d=2, c=24, s=2, br=2.0),
                mv(d=1, c=32, s=2, transformer_dim=48, transformer_depth=1, patch_size=2, br=2.0),
                mv(d=1, c=48, s=2, transformer_dim=64, transformer_depth=2, patch_size=2, br=2.0),
                mv(d=1, c=64, s=2, transformer_dim=80, transformer_depth=2, patch_size=2, br=2.0),
            ),
            stem_chs=16, num_features=256, **common,
        ),
        "micro": ByoModelCfg(
            blocks=(
                ir(d=1, c=8, s=1, br=2.0),
                mv(d=1, c=16, s=2, transformer_dim=16, transformer_depth=1, patch_size=2, br=2.0),
            ),
            stem_chs=8, num_features=32, **common,
        ),
    }


MOBILEVIT_VARIANTS = ("micro", "tiny", "xxs", "xs", "s")


def build_mobilevit_encoder(variant: str):
    """Headless MobileViT image encoder returning pooled ``(N, num_features)`` features."""
    import timm
    from timm.models.byobnet import ByobNet

    if variant not in MOBILEVIT_VARIANTS:
        raise ValueError(f"unknown mobilevit variant '{variant}'; valid: {', '.join(MOBILEVIT_VARIANTS)}")
    custom = _custom_cfgs()
    if variant in custom:
        return ByobNet(cfg=custom[variant], num_classes=0)
    return timm.create_model(f"mobilevit_{variant}", pretrained=False, num_classes=0)


@MODELS.register("mobilevit")
def mobilevit(num_classes: int, frames: int, size: int, variant: str = "xxs") -> VideoClassifier:
    """MobileViT student; ``variant`` is one of micro/tiny/xxs/xs/s."""
    if size % 32:
        raise ValueError(f"MobileViT needs an image size divisible by 32, got {size}")
    encoder = build_mobilevit_encoder(variant)
    return VideoClassifier(encoder, encoder.num_features, num_classes, frames, size)


mobilevit.variants = MOBILEVIT_VARIANTS
