"""Zero pads in LiteRT's channels-last layout, so that an int8 "same"-padded convolution needs no transposes.

litert-torch moves a graph to NHWC op by op, and only ops it has a rule for; a constant pad has none,
so it stays NCHW with a transpose of the whole activation on each side. In fp32 the converter folds
that chain away; in int8 the quantize pairs around the pad stop it, so every EfficientNet-style
stride-2 "same" pad became an int8 PAD between two transposes (docs/int8.md). With this rule the pad
runs in NHWC and the converter folds it into the convolution's SAME padding (no PAD op left).
"""

from __future__ import annotations

import torch

_PAD = torch.ops.aten.constant_pad_nd.default


def _constant_pad_nhwc(x: torch.Tensor, pad: list[int], value: float = 0.0) -> torch.Tensor:
    """``constant_pad_nd`` of an NCHW pad (width first, then height) applied to the same tensor held as NHWC."""
    pad = [*pad, 0, 0, 0, 0][:4]
    return _PAD(x, [0, 0, *pad], value)


def channels_last_pads() -> None:
    """Teach litert-torch's layout pass (the pinned version's registries) to run spatial constant pads in NHWC."""
    from litert_torch._convert.fx_passes.optimize_layout_transposes_pass import layout_check, layout_rewrite

    def spatial(node: torch.fx.Node):  # a pad that reaches the channels stays where it is
        can = layout_check.is_4d(node) and layout_check.is_4d(node.args[0]) and len(node.args[1]) <= 4
        return layout_check.NHWCable(can, must_be=False)

    def rewrite(node: torch.fx.Node) -> None:
        node.target = _constant_pad_nhwc

    layout_check.layout_sensitive_inputs_getters.register(_PAD)(lambda node: [node.args[0]])
    layout_check.nhwcable_node_checkers.register(_PAD)(spatial)
    layout_rewrite.rewriters.register(_PAD)(rewrite)
