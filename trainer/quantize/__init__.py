"""Post-training int8 quantization (PT2E: prepare -> calibrate -> convert) with per-backend quantizers."""

from egoedge.trainer.quantize.pt2e import QUANTIZERS, fixed_softmax_outputs, quantize_pt2e, unfold_weights

__all__ = ["QUANTIZERS", "fixed_softmax_outputs", "quantize_pt2e", "unfold_weights"]
