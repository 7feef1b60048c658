"""The form of a model that is exported and quantized: a copy in eval mode, rewritten to the same maths in ops that
lower well (temporal pools folded, fused attention off, RGB stems as space to depth for int8)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
from torch import nn

from egoedge.trainer.common.modules import in_modules
from egoedge.trainer.models.video import FoldedAttentionPool, TemporalAttentionPool

LOGITS = "logits"  # a FoldedAttentionPool's attention-logits layer


def export_ready(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode: temporal pools folded, timm's fused attention off, MobileViT's patches channels-last.

    Fused scaled-dot-product attention lowers to a boolean-mask op chain that delegates
    cannot take; the explicit matmul/softmax path computes the same function and lowers whole.
    A folded pool (:class:`FoldedAttentionPool`) is the same function with its query's work done once; its
    logits layer is named in the copy's ``float_modules``, as the unfolded pool's logits were float in int8.
    PTQ quantizes this form too, so its int8 program is the graph every backend lowers.
    """
    model = copy.deepcopy(model).eval()
    _fold_pools(model)
    timm_block, channels_last = _mobilevit_blocks()
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
        if type(module) is timm_block:
            module.__class__ = channels_last
    return model


def _rewrite(model: nn.Module, rewrite: Callable[[str, nn.Module], nn.Module | None]) -> list[str]:
    """Put ``rewrite(path, module)`` in place of every submodule it gives a replacement for; the paths replaced."""
    done = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            path = ".".join(p for p in (name, child_name) if p)
            if (replacement := rewrite(path, child)) is not None:
                setattr(module, child_name, replacement)
                done.append(path)
    return done


def _fold_pools(model: nn.Module) -> None:
    """Every temporal attention pool as its :class:`FoldedAttentionPool`, in place, its logits layer kept float.

    A pool with a part the user keeps fp32 (``pool.qkv``) stays as it is: that part has no folded twin.
    """
    kept = getattr(model, "float_modules", ())
    folded = _rewrite(model, lambda path, m: FoldedAttentionPool(m) if type(m) is TemporalAttentionPool
                      and not any(k.startswith(path + ".") for k in kept) else None)
    # The unfolded pool's logits are a product of two activations, which int8 programs leave float; folded, they
    # are a linear layer's output, and int8 steps in the logits reach the softmax as a factor.
    logits = [f"{path}.{LOGITS}" for path in folded if not in_modules(path, kept)]
    if logits:
        model.float_modules = (*kept, *logits)


@functools.cache
def _mobilevit_blocks() -> tuple[type, type]:
    """timm's MobileViT block and the same block cutting its patches from a channels-last view."""
    from timm.models.mobilevit import MobileVitBlock

    class ChannelsLastPatches(MobileVitBlock):
        """timm's ``MobileVitBlock`` with the same unfold and fold done by transposes of whole channel vectors.

        timm swaps the patch axes of an NCHW tensor whose innermost axis is the patch width (2): ONNX
        Runtime's int8 model moves that transpose onto uint8 data, and its uint8 transpose of 2-byte
        blocks is its slowest path (docs/performance.md). Going through NHWC first, every transpose
        moves ``c``-long rows.
        """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ph, pw = self.patch_size
            if x.shape[-2] % ph or x.shape[-1] % pw:  # timm interpolates to a multiple first
                return super().forward(x)
            shortcut = x
            x = self.conv_1x1(self.conv_kxk(x))
            b, c, h, w = x.shape
            nh, nw = h // ph, w // pw
            # (b, h, w, c) -> (b nh, nw, ph, pw c) -> (b, N, P, c) -> (b P, N, c), timm's patch order
            x = x.permute(0, 2, 3, 1).reshape(b * nh, ph, nw, pw * c).transpose(1, 2)
            x = x.reshape(b, nh * nw, ph * pw, c).transpose(1, 2).reshape(b * ph * pw, nh * nw, c)
            x = self.norm(self.transformer(x))
            x = x.reshape(b, ph * pw, nh * nw, c).transpose(1, 2)
            x = x.reshape(b * nh, nw, ph, pw * c).transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
            x = self.conv_proj(x)
            if self.conv_fusion is not None:
                x = self.conv_fusion(torch.cat((shortcut, x), dim=1))
            return x

    return MobileVitBlock, ChannelsLastPatches


def _even_pad(before: int, after: int) -> int:
    """The even padding of an axis padded ``(before, after)``: the blocks end where the last output reads, at most
    one row more than ``before`` (the kernel's zero taps in front make that row up)."""
    return min(before + 1, max(before, (before + after + 1) // 2))


class SpaceToDepthConv(nn.Module):
    """A stride-2 convolution on few channels, computed as a stride-1 one on 2×2 blocks folded into channels.

    ``conv(x)`` with kernel k, stride 2 and zero padding equals a ``ceil(k/2)``-square stride-1 convolution
    over the padded ``x`` rearranged so that each 2×2 block becomes 4× the channels (space to depth),
    with the kernel rearranged the same way (zero where ``2m + i`` passes ``k``). The maths is the
    same; the work is not: int8 convolution kernels loop over kernel taps with a channel vector in
    each, and an RGB stem (3 channels, 49 taps) keeps them mostly idle, while 12 channels over 16
    taps fill them. A ResNet's 7×7 RGB stem is the costliest layer of a pruned int8 student.
    """

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        k = conv.kernel_size[0]
        # Zero padding (left, right, top, bottom), the convolution's own included; a "same" convolution's
        # is uneven. The rearranging convolution pads each axis evenly by q: the blocks then start q rows before
        # the data, where the convolution reads from ``left`` before it, so the kernel gets q - left zero taps in
        # front. q is chosen so that the blocks end where the last output reads, with no pad op of its own.
        self.pads = pads or (conv.padding[1],) * 2 + (conv.padding[0],) * 2
        left, right, top, bottom = self.pads
        self.even = (_even_pad(top, bottom), _even_pad(left, right))
        shift = (self.even[0] - top, self.even[1] - left)
        self.k = k
        self.taps = ((k + shift[0] + 1) // 2, (k + shift[1] + 1) // 2)
        out, c = conv.weight.shape[:2]
        w = torch.zeros(out, c, 2 * self.taps[0], 2 * self.taps[1], dtype=conv.weight.dtype)
        w[:, :, shift[0]:shift[0] + k, shift[1]:shift[1] + k] = conv.weight.detach()
        # w'[o, (c, i, j), m, n] = w[o, c, 2m + i, 2n + j]
        w = w.reshape(out, c, self.taps[0], 2, self.taps[1], 2).permute(0, 1, 3, 5, 2, 4).reshape(
            out, 4 * c, *self.taps)
        self.conv = nn.Conv2d(4 * c, out, self.taps, bias=conv.bias is not None)
        self.conv.weight.data.copy_(w)
        if conv.bias is not None:
            self.conv.bias.data.copy_(conv.bias.detach())
        # The rearrangement as a stride-2 convolution with 0/1 weights (output channel (c, i, j) copies input
        # channel c at offset (i, j)), padding included: a convolution every runtime runs fast, where a pad and a
        # 5-D transpose with 2-wide inner axes cost XNNPACK more than the stem convolution saves at batch 1.
        # int8 programs keep it float (``SPACE_TO_DEPTH`` in the model's ``float_modules``): exact, and the
        # int8 stem then reads the quantized 12 channels.
        self.unshuffle = nn.Conv2d(c, 4 * c, 2, stride=2, padding=self.even, bias=False)
        pick = torch.zeros(4 * c, c, 2, 2)
        for ch in range(c):
            for i in range(2):
                for j in range(2):
                    pick[4 * ch + 2 * i + j, ch, i, j] = 1.0
        self.unshuffle.weight.data.copy_(pick)
        self.unshuffle.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.pads
        size = []  # per axis: the original output length and the zero rows the blocks lack at the end
        for length, before, after, even, taps in zip(x.shape[2:], (top, left), (bottom, right), self.even, self.taps,
                                                      strict=True):
            n = (length + before + after - self.k) // 2 + 1
            size.append((n, max(0, 2 * (n + taps - 1) - (length + 2 * even))))
        (h, more_h), (w, more_w) = size
        if more_h or more_w:  # an uneven pad the rearrangement's own cannot cover: one more zero row or column
            x = torch.nn.functional.pad(x, (0, more_w, 0, more_h))
        y = self.conv(self.unshuffle(x))
        return y if y.shape[2:] == (h, w) else y[:, :, :h, :w]


SPACE_TO_DEPTH = "unshuffle"  # a SpaceToDepthConv's rearranging child


def _space_to_depth(conv: nn.Module) -> SpaceToDepthConv | None:
    """``conv`` as a :class:`SpaceToDepthConv`, if it is a zero-padded stride-2 convolution on at most 4 channels
    that one computes; None for any other module.

    A plain ``nn.Conv2d`` pads evenly; a "same" convolution in the ``static_padding`` style of the EfficientNet
    ports (a ``ZeroPad2d`` child applied first) pads unevenly. Either is only taken when a probe shows the
    rearranged form computes the same outputs.
    """
    if not (isinstance(conv, nn.Conv2d) and conv.stride == (2, 2) and conv.in_channels <= 4 and conv.groups == 1
            and conv.dilation == (1, 1) and conv.kernel_size[0] == conv.kernel_size[1] >= 3
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)):
        return None
    ph, pw = conv.padding
    if type(conv) is nn.Conv2d:
        pads = (pw, pw, ph, ph)
    elif isinstance(static := getattr(conv, "static_padding", None), nn.ZeroPad2d):
        left, right, top, bottom = static.padding
        pads = (left + pw, right + pw, top + ph, bottom + ph)
    else:
        return None
    if min(pads) < 0:
        return None
    with torch.no_grad():  # both parities of side, as the odd-side zero row and an even kernel meet there
        probe = torch.randn(1, conv.in_channels, 2 * conv.kernel_size[0] + 1, 2 * conv.kernel_size[0] + 2,
                            generator=torch.Generator().manual_seed(0))
        rearranged = SpaceToDepthConv(conv, pads)
        got, want = rearranged(probe), conv(probe)
    return rearranged if got.shape == want.shape and torch.allclose(got, want, atol=1e-4, rtol=1e-4) else None


def int8_ready(model: nn.Module) -> nn.Module:
    """:func:`export_ready`, with every few-channel stride-2 convolution as a :class:`SpaceToDepthConv`.

    The form every static int8 artifact starts from (PT2E programs, ONNX Runtime's own int8, streaming
    steps): same outputs, a faster int8 stem. fp32 artifacts keep the plain form, which is faster in float.
    """
    model = export_ready(model)
    folded = [f"{path}.{SPACE_TO_DEPTH}" for path in _rewrite(model, lambda _, m: _space_to_depth(m))]
    if folded:  # the rearrangements stay float: exact, and faster than int8 on 3 channels (docs/export.md)
        model.float_modules = tuple(dict.fromkeys((*getattr(model, "float_modules", ()), *folded)))
    return model
