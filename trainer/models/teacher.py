"""CLIP-style ViT teacher: pre-norm ViT image encoder with a CLIP projection, per frame."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from egoedge.trainer.models.registry import MODELS
from egoedge.trainer.models.video import VideoClassifier


@dataclass(frozen=True)
class ViTSize:
    width: int
    depth: int
    heads: int
    patch: int
    embed: int  # CLIP projection width
    conv_stem: bool = False
    pool: str = "token"  # CLIP reads the class token; "avg" pools the patch tokens


# CLIP ViT-B/32 is (768, 12, 12, 32, 512). The others use a convolutional stem and average the
# patch tokens: trained from scratch on a few thousand clips within the quick budget, a patchify
# ViT stays near chance and only the conv-stem ViT with mean-pooled tokens learns (docs/training.md;
# Xiao et al. 2021, "Early convolutions help transformers see better"; Hassani et al. 2021, CCT).
VIT_SIZES: dict[str, ViTSize] = {
    "test": ViTSize(32, 1, 2, 8, 32, conv_stem=True, pool="avg"),
    "small": ViTSize(256, 4, 4, 16, 256, conv_stem=True, pool="avg"),
    "base": ViTSize(384, 8, 6, 16, 384, conv_stem=True, pool="avg"),
    "b32": ViTSize(768, 12, 12, 32, 512),
}


class ConvPatchEmbed(nn.Module):
    """Stages of (stride-2 3x3, 3x3) conv+BN+ReLU down to the patch grid, then a 1x1 conv to the width.

    Same token grid as a ``patch x patch`` patchify embedding; speaks timm's patch-embed interface.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 **_: object) -> None:
        super().__init__()
        stages = patch_size.bit_length() - 1
        if 2**stages != patch_size:
            raise ValueError(f"conv stem needs a power-of-two patch size, got {patch_size}")
        layers: list[nn.Module] = []
        c = in_chans
        for i in range(stages):
            co = max(16, embed_dim >> (stages - i))
            layers += [nn.Conv2d(c, co, 3, 2, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                       nn.Conv2d(co, co, 3, 1, 1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True)]
            c = co
        layers.append(nn.Conv2d(c, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_pad = False

    def feat_ratio(self, as_scalar: bool = True) -> int:
        return self.patch_size[0]

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return img_size[0] // self.patch_size[0], img_size[1] // self.patch_size[1]

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ClipImageEncoder(nn.Module):
    """timm ViT with CLIP's layout (pre-norm after patch embedding, class token) + projection."""

    def __init__(self, size: ViTSize, image_size: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if image_size % size.patch:
            raise ValueError(f"image size {image_size} is not divisible by ViT patch {size.patch}")
        extra = {"embed_layer": ConvPatchEmbed} if size.conv_stem else {}
        self.vit = VisionTransformer(
            img_size=image_size, patch_size=size.patch, embed_dim=size.width, depth=size.depth,
            num_heads=size.heads, num_classes=0, pre_norm=True, class_token=True, global_pool=size.pool, **extra,
        )
        self.proj = nn.Linear(size.width, size.embed, bias=False)

    def forward(self, x):
        return self.proj(self.vit(x))


@MODELS.register("clip_vit")
def clip_vit(num_classes: int, frames: int, size: int, variant: str = "small") -> VideoClassifier:
    """CLIP-style ViT teacher (random init, trained here) with temporal attention pooling."""
    if variant not in VIT_SIZES:
        raise ValueError(f"unknown clip_vit variant '{variant}'; valid: {', '.join(VIT_SIZES)}")
    spec = VIT_SIZES[variant]
    heads = 4 if spec.embed % 4 == 0 else 1
    return VideoClassifier(ClipImageEncoder(spec, size), spec.embed, num_classes, frames, size, pool_heads=heads)


clip_vit.variants = tuple(VIT_SIZES)
