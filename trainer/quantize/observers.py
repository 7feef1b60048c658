"""Activation observers selectable for static PTQ: min-max, histogram (MSE-optimal range), percentile."""

from __future__ import annotations

import torch

from egoedge.trainer.common.registry import Registry

OBSERVERS: Registry = Registry("observer")


class PercentileObserver:
    """Clips each activation to the mean over calibration batches of its ``percentile`` tails.

    Built lazily on torchao's ``MinMaxObserver`` (imported on first use) so that importing this
    module costs nothing; a subsample of at most ``max_samples`` values per batch keeps
    ``torch.quantile`` within its input limit and fast.
    """

    def __new__(cls, percentile: float = 99.99, max_samples: int = 1 << 20, **kwargs):
        from torchao.quantization.pt2e import MinMaxObserver

        class _Percentile(MinMaxObserver):
            def __init__(self, **kw) -> None:
                super().__init__(**kw)
                self.percentile, self.max_samples = percentile, max_samples
                self.register_buffer("_lo_sum", torch.zeros(()))
                self.register_buffer("_hi_sum", torch.zeros(()))
                self.register_buffer("_batches", torch.zeros(()))

            def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
                if x_orig.numel() == 0:
                    return x_orig
                x = x_orig.detach().float().flatten()
                if x.numel() > self.max_samples:
                    gen = torch.Generator().manual_seed(int(self._batches.item()))
                    x = x[torch.randint(x.numel(), (self.max_samples,), generator=gen)]
                q = torch.tensor([1 - self.percentile / 100, self.percentile / 100])
                lo, hi = torch.quantile(x, q)
                self._lo_sum += lo
                self._hi_sum += hi
                self._batches += 1
                self.min_val = self._lo_sum / self._batches
                self.max_val = self._hi_sum / self._batches
                return x_orig

        return _Percentile(**kwargs)


@OBSERVERS.register("histogram")
def histogram():
    """torchao's ``HistogramObserver``: the range minimising quantization error (XNNPACK's default)."""
    from torchao.quantization.pt2e import HistogramObserver

    return HistogramObserver


@OBSERVERS.register("minmax")
def minmax():
    """The full observed range: no clipping, coarsest steps."""
    from torchao.quantization.pt2e import MinMaxObserver

    return MinMaxObserver


@OBSERVERS.register("percentile")
def percentile():
    """99.99th-percentile clipping of outliers (mean over calibration batches)."""
    return PercentileObserver
