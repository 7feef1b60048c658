"""Activation observers selectable for static PTQ: min-max, histogram (MSE-optimal range), percentile."""

from __future__ import annotations

import functools

import numpy as np
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


@functools.cache
def _bounds(stepsize: float) -> tuple[np.ndarray, np.ndarray]:
    """Every value the search's lower and upper quantile bounds take, accumulated as it does (sequentially)."""
    steps = int(1 / stepsize) + 2
    return (np.cumsum(np.concatenate([[0.0], np.full(steps, stepsize)])),
            np.cumsum(np.concatenate([[1.0], np.full(steps, -stepsize)])))


def _histogram_range(obs) -> tuple[torch.Tensor, torch.Tensor]:
    """torchao's ``HistogramObserver._non_linear_param_search``, same steps and same float32 comparisons, in numpy.

    Its loop moves the lower or upper quantile bound by 1e-5 at a time and compares tensor elements one by one
    (tens of ms per observer, most of a small model's whole PTQ). Here the cumulative histogram is searched with
    ``searchsorted``, and the runs of steps that change neither bound are skipped in one jump: in such a run only
    the upper bound moves (the original's ``else`` branch), until the end bin's cumulative count exceeds it.
    """
    stepsize, bins = 1e-5, obs.bins
    bin_width = (obs.max_val - obs.min_val) / bins
    cum = torch.cumsum(obs.histogram, dim=0)
    total = torch.sum(obs.histogram).item()
    csum = cum.cpu().numpy()
    alpha, beta = _bounds(stepsize)
    # the thresholds as torch compares them with a float32 tensor element: the Python float rounded to float32
    lo = (alpha * total).astype(np.float32)
    hi = (beta * total).astype(np.float32)
    neg_hi = -hi  # nondecreasing, for searchsorted
    a = b = start = 0
    end = bins - 1
    norm_min = float("inf")
    while alpha[a] < beta[b]:
        left = min(end, max(start, int(np.searchsorted(csum, lo[a + 1], side="left"))))
        right = max(start, min(end, int(np.searchsorted(csum, hi[b + 1], side="right")) - 1))
        if left - start > end - right:
            next_start, next_end = left, end
            a += 1
        else:
            next_start, next_end = start, right
            b += 1
        if next_start == start and next_end == end:
            # Only beta moves until the end bin's cumulative count exceeds its threshold: the first such step.
            b = max(b, int(np.searchsorted(neg_hi, -csum[end], side="right")) - 1)
            continue
        norm = obs._compute_quantization_error(next_start, next_end)
        if norm > norm_min:
            break
        norm_min, start, end = norm, next_start, next_end
    return obs.min_val + bin_width * start, obs.min_val + bin_width * (end + 1)


@functools.cache
def _fast_histogram() -> tuple[type, type]:
    """torchao's ``HistogramObserver`` and its subclass that searches with :func:`_histogram_range` (made once)."""
    from torchao.quantization.pt2e import HistogramObserver

    class FastHistogramObserver(HistogramObserver):
        _non_linear_param_search = _histogram_range

    return HistogramObserver, FastHistogramObserver


def fast_histograms(graph: torch.nn.Module) -> int:
    """Give every torchao ``HistogramObserver`` in ``graph`` :func:`_histogram_range`; returns how many. Same ranges."""
    slow, fast = _fast_histogram()
    n = 0
    for module in graph.modules():
        if type(module) is slow:
            module.__class__ = fast
            n += 1
    return n
