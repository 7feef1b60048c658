"""Dense optical flow between consecutive frames: coarse-to-fine Horn–Schunck with warping.

The flow teacher reads motion the way two-stream networks do, from flow computed on the
frames themselves rather than from anything the generator knows. Horn–Schunck (1981) solves
brightness constancy plus a smoothness prior by Jacobi iterations; an image pyramid with
warping between levels (Brox et al. 2004) lets it follow motions of several pixels. It runs
in batches on the training device, so a whole split takes seconds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_AVG = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def _warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (N,1,H,W) at ``x + flow`` (flow in pixels, (N,2,H,W))."""
    n, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=img.device), torch.arange(w, device=img.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return F.grid_sample(img, torch.stack([gx, gy], dim=-1), align_corners=True, padding_mode="border")


def _filter(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """3x3 filter of ``(N, 1, H, W)`` with replicated borders.

    Written as a depthwise convolution over the batch: a single-channel ``conv2d`` runs an
    order of magnitude slower on the CPU.
    """
    n, _, h, w = img.shape
    weight = kernel.to(img).view(1, 1, 3, 3).expand(n, 1, 3, 3).contiguous()
    out = F.conv2d(F.pad(img.reshape(1, n, h, w), (1, 1, 1, 1), mode="replicate"), weight, groups=n)
    return out.reshape(n, 1, h, w)


_DX = torch.tensor([[0.0, 0.0, 0.0], [-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])


def horn_schunck(i0: torch.Tensor, i1: torch.Tensor, levels: int = 3, iterations: int = 30,
                 warps: int = 2, alpha: float = 0.05) -> torch.Tensor:
    """Flow ``(N, 2, H, W)`` in pixels (x, y) that carries ``i0`` onto ``i1`` (both ``(N, 1, H, W)``, 0..1).

    Example::

        flow = horn_schunck(frame_t, frame_t_plus_1)  # flow[:, 0] > 0: things move right
    """
    if i0.shape != i1.shape or i0.dim() != 4 or i0.shape[1] != 1:
        raise ValueError(f"need two (N, 1, H, W) images of one shape, got {tuple(i0.shape)} and {tuple(i1.shape)}")
    pyramid = [(i0, i1)]
    for _ in range(levels - 1):
        a, b = pyramid[-1]
        if min(a.shape[-2:]) < 16:
            break
        pyramid.append((F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)))
    flow = torch.zeros(i0.shape[0], 2, *pyramid[-1][0].shape[-2:], device=i0.device, dtype=i0.dtype)
    for a, b in reversed(pyramid):
        if flow.shape[-2:] != a.shape[-2:]:
            flow = 2.0 * F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False)
        for _ in range(warps):
            warped = _warp(b, flow)
            mean = 0.5 * (a + warped)
            ix, iy = _filter(mean, _DX), _filter(mean, _DX.T)
            it = warped - a
            u, v = flow[:, :1], flow[:, 1:]
            du, dv = torch.zeros_like(u), torch.zeros_like(v)
            denom = alpha**2 + ix**2 + iy**2
            for _ in range(iterations):
                # Jacobi step on the increment; smoothness acts on the whole flow (u + du).
                ua = _filter(u + du, _AVG) - u
                va = _filter(v + dv, _AVG) - v
                r = (ix * ua + iy * va + it) / denom
                du, dv = ua - ix * r, va - iy * r
            flow = torch.cat([u + du, v + dv], dim=1)
    return flow


@torch.no_grad()
def clip_flow(clips: np.ndarray, batch: int = 512) -> np.ndarray:
    """Flow between consecutive frames of uint8 clips ``(N, T, H, W, 3)`` -> float16 ``(N, T-1, 2, H, W)``."""
    if clips.ndim != 5 or clips.shape[-1] != 3 or clips.shape[1] < 2:
        raise ValueError(f"need uint8 clips (N, T>=2, H, W, 3), got shape {tuple(clips.shape)}")
    n, t, h, w, _ = clips.shape
    gray = clips.astype(np.float32).mean(-1) / 255.0  # (N, T, H, W)
    first = torch.from_numpy(gray[:, :-1].reshape(-1, 1, h, w))
    second = torch.from_numpy(gray[:, 1:].reshape(-1, 1, h, w))
    out = torch.empty(first.shape[0], 2, h, w, dtype=torch.float16)
    for s in range(0, first.shape[0], batch):
        out[s:s + batch] = horn_schunck(first[s:s + batch], second[s:s + batch]).half()
    return out.reshape(n, t - 1, 2, h, w).numpy()
