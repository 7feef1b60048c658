"""The form of a model that is exported and quantized: a copy in eval mode with fused attention off."""

from __future__ import annotations

import copy

import torch
from torch import nn


def export_ready(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode with timm's fused attention switched off.

    Fused scaled-dot-product attention lowers to a boolean-mask op chain that delegates
    cannot take; the explicit matmul/softmax path computes the same function and lowers whole.
    PTQ quantizes this form too, so its int8 program is the graph every backend lowers.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model


class SpaceToDepthConv(nn.Module):
    """A stride-2 convolution on few channels, computed as a stride-1 one on 2×2 blocks folded into channels.

    ``conv(x)`` with kernel k, stride 2 and padding p equals a ``ceil(k/2)``-square stride-1 convolution
    over ``pad(x)`` rearranged so that each 2×2 block becomes 4× the channels (space to depth),
    with the kernel rearranged the same way (zero where ``2m + i`` passes ``k``). The maths is the
    same; the work is not: int8 convolution kernels loop over kernel taps with a channel vector in
    each, and an RGB stem (3 channels, 49 taps) keeps them mostly idle, while 12 channels over 16
    taps fill them. A ResNet's 7×7 RGB stem is the costliest layer of a pruned int8 student.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        k, p = conv.kernel_size[0], conv.padding[0]
        self.pad, self.taps = p, (k + 1) // 2
        out, c = conv.weight.shape[:2]
        w = torch.zeros(out, c, 2 * self.taps, 2 * self.taps, dtype=conv.weight.dtype)
        w[:, :, :k, :k] = conv.weight.detach()
        # w'[o, (c, i, j), m, n] = w[o, c, 2m + i, 2n + j]
        w = w.reshape(out, c, self.taps, 2, self.taps, 2).permute(0, 1, 3, 5, 2, 4).reshape(out, 4 * c, self.taps,
                                                                                           self.taps)
        self.conv = nn.Conv2d(4 * c, out, self.taps, bias=conv.bias is not None)
        self.conv.weight.data.copy_(w)
        if conv.bias is not None:
            self.conv.bias.data.copy_(conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.pad
        x = torch.nn.functional.pad(x, (p, p + (w + 2 * p) % 2, p, p + (h + 2 * p) % 2))
        h2, w2 = x.shape[2] // 2, x.shape[3] // 2
        # At most 5-D: Core ML takes no higher rank.
        x = x.reshape(n * c, h2, 2, w2, 2).permute(0, 2, 4, 1, 3).reshape(n, 4 * c, h2, w2)
        return self.conv(x)


def _folds(conv: nn.Module) -> bool:
    """Whether ``conv`` is a stride-2 convolution on at most 4 channels that :class:`SpaceToDepthConv` computes."""
    return (type(conv) is nn.Conv2d and conv.stride == (2, 2) and conv.in_channels <= 4 and conv.groups == 1
            and conv.dilation == (1, 1) and conv.kernel_size[0] == conv.kernel_size[1] >= 3
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1])


def int8_ready(model: nn.Module) -> nn.Module:
    """:func:`export_ready`, with every few-channel stride-2 convolution as a :class:`SpaceToDepthConv`.

    The form int8 programs are quantized in: same outputs, a faster int8 stem under XNNPACK
    (ExecuTorch, LiteRT). fp32 artifacts keep the plain form, which is faster in float.
    """
    model = export_ready(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if _folds(child):
                setattr(module, child_name, SpaceToDepthConv(child))
    return model
