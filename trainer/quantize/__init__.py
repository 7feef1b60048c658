"""Post-training int8 quantization (PT2E: prepare -> calibrate -> convert) with per-backend quantizers."""

from trainer.quantize.pt2e import QUANTIZERS, quantize_pt2e

__all__ = ["QUANTIZERS", "quantize_pt2e"]
