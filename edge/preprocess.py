"""What an app does to a camera frame before a model sees it: the reference for every runtime.

The Android app (``android_demo/.../core/Preprocess.kt``, ``core/Quant.kt``) implements exactly
these steps, in this order and in float32, so that a clip preprocessed on a phone is the clip
the artifact was verified on here:

1. **crop**: the largest centred box of the model's aspect ratio (``center_crop_box``);
2. **resize**: bilinear with half-pixel centres and no antialiasing (PyTorch's
   ``interpolate(mode="bilinear", align_corners=False)``), on the 0..255 values;
3. **normalise**: ``(v / 255 - mean[c]) / std[c]``;
4. **layout**: frames stacked as the manifest's ``layout`` says (``NTCHW`` or ``NTHWC``);
5. **quantise** (only where the artifact's input is integer): ``q = clamp(round(x / scale) +
   zero_point)`` with ties rounded away from zero, as LiteRT's own quantize kernel does.

A frame already at the model's size passes steps 1-2 unchanged, so ``preprocess_clip`` of a
generated clip equals ``trainer.data.to_model_input`` bit for bit (a test holds both to that).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from egoedge.trainer.common.io import EgoedgeError

LAYOUTS = ("NTCHW", "NTHWC")


def center_crop_box(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the largest centred box with the aspect ratio ``dst_h:dst_w``.

    Integer arithmetic only, so the app computes the same box: ``center_crop_box(480, 640, 256, 256)``
    is ``(0, 80, 480, 480)``.
    """
    if min(src_h, src_w, dst_h, dst_w) < 1:
        raise EgoedgeError(f"cannot crop a {src_h}x{src_w} frame to {dst_h}x{dst_w}")
    if src_w * dst_h > src_h * dst_w:  # source is wider than the target: trim the sides
        w = src_h * dst_w // dst_h
        return 0, (src_w - w) // 2, src_h, w
    h = src_w * dst_h // dst_w
    return (src_h - h) // 2, 0, h, src_w


def _axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and the weight of i1 for each output index along one axis."""
    scale = np.float32(src) / np.float32(dst)
    pos = (np.arange(dst, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    pos = np.maximum(pos, np.float32(0.0))
    i0 = pos.astype(np.int64)  # pos >= 0, so truncation is floor
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (pos - i0.astype(np.float32)).astype(np.float32)


def resize_bilinear(frame: np.ndarray, box: tuple[int, int, int, int], dst_h: int, dst_w: int) -> np.ndarray:
    """The ``box`` of a uint8 ``(H, W, 3)`` frame resized to float32 ``(dst_h, dst_w, 3)`` in 0..255."""
    top, left, h, w = box
    region = frame[top:top + h, left:left + w].astype(np.float32)
    y0, y1, wy = _axis(h, dst_h)
    x0, x1, wx = _axis(w, dst_w)
    wx, wy = wx[None, :, None], wy[:, None, None]
    one = np.float32(1.0)
    # Same association as the app: interpolate along x on both rows, then along y.
    top_row = (one - wx) * region[y0][:, x0] + wx * region[y0][:, x1]
    bottom_row = (one - wx) * region[y1][:, x0] + wx * region[y1][:, x1]
    return ((one - wy) * top_row + wy * bottom_row).astype(np.float32)


def normalize(rgb: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """float32 0..255 ``(..., 3)`` -> ``(v / 255 - mean) / std`` per channel, in float32."""
    m, s = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return ((rgb.astype(np.float32) / np.float32(255.0) - m) / s).astype(np.float32)


def preprocess_clip(frames: np.ndarray | list[np.ndarray], preprocess: dict) -> np.ndarray:
    """uint8 frames ``(T, H, W, 3)`` of any size -> the model input ``(1, T, 3, h, w)`` (or NTHWC).

    Example::

        x = preprocess_clip(np.load("export/sample_clip.npy"), manifest["artifacts"][0]["preprocess"])
        np.array_equal(x, np.load("export/sample_input.npy"))  # True
    """
    frames = [np.asarray(f) for f in frames]
    t = preprocess["frames"]
    if len(frames) != t:
        raise EgoedgeError(f"the model takes {t} frames, got {len(frames)}")
    layout = preprocess.get("layout", "NTCHW")
    if layout not in LAYOUTS:
        raise EgoedgeError(f"unknown layout '{layout}'; known: {', '.join(LAYOUTS)}")
    dst_h, dst_w = preprocess["size"]
    out = []
    for f in frames:
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3:
            raise EgoedgeError(f"frames must be uint8 (H, W, 3) RGB, got {f.dtype} {tuple(f.shape)}")
        box = center_crop_box(f.shape[0], f.shape[1], dst_h, dst_w)
        out.append(normalize(resize_bilinear(f, box, dst_h, dst_w), preprocess["mean"], preprocess["std"]))
    clip = np.stack(out)[None]  # (1, T, h, w, 3)
    return np.ascontiguousarray(clip.transpose(0, 1, 4, 2, 3) if layout == "NTCHW" else clip)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Affine quantisation with ties away from zero (LiteRT's rounding), clamped to the integer ``dtype``."""
    return quantizer(scale, zero_point, dtype)(x)


def quantizer(scale: float, zero_point: int, dtype: str = "int8") -> Callable[[np.ndarray], np.ndarray]:
    """:func:`quantize` with its checks and constants settled once, for a tensor fed on every call (a stream
    step's window): the same integers, without redoing the checks each time.

    Example: ``q = quantizer(0.03, 11); q(window)`` equals ``quantize(window, 0.03, 11)``.
    """
    if not _is_int(dtype):
        raise EgoedgeError(f"cannot quantise to {dtype}: not an integer type")
    if not scale > 0:
        raise EgoedgeError(f"quantisation scale must be > 0, got {scale}")
    out_type, step, half = np.dtype(dtype), np.float32(scale), np.float32(0.5)
    info = np.iinfo(out_type)
    low, high, zero = np.float32(info.min), np.float32(info.max), np.float32(zero_point)

    def run(x: np.ndarray) -> np.ndarray:
        v = np.divide(x, step, dtype=np.float32)
        rounded = np.copysign(np.floor(np.abs(v) + half), v) + zero
        return np.minimum(np.maximum(rounded, low), high).astype(out_type)

    return run


def _is_int(dtype: str) -> bool:
    try:
        return np.dtype(dtype).kind in "iu"
    except TypeError:
        return False


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32."""
    return ((np.asarray(q).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _quantized(spec: dict) -> bool:
    """Whether tensor ``spec`` holds quantized reals: an integer tensor with a scale (integer ids have none)."""
    return _is_int(spec["dtype"]) and spec.get("scale") is not None


def to_tensor(spec: dict) -> Callable[[np.ndarray], np.ndarray]:
    """How a float array becomes the tensor ``spec`` describes (a manifest ``inputs`` entry): quantized with its
    scale and zero point, or cast (a float tensor, or integer ids).

    Settled once per tensor, for a session that feeds it on every call (a stream step's three inputs a frame).
    """
    if _quantized(spec):
        return quantizer(spec["scale"], spec["zero_point"], spec["dtype"])
    dtype = np.dtype(spec["dtype"])
    return lambda x: np.asarray(x).astype(dtype, copy=False)


def from_tensor(spec: dict) -> Callable[[np.ndarray], np.ndarray]:
    """How the tensor ``spec`` describes (a manifest ``outputs`` entry) becomes a float32 array of its own:
    dequantized, or cast and copied (a runtime may reuse its output buffer on the next call)."""
    if _quantized(spec):
        scale, zero = spec["scale"], spec["zero_point"]
        return lambda y: dequantize(y, scale, zero)
    return lambda y: np.asarray(y).astype(np.float32, copy=True)


def runtime_input(clip: np.ndarray, spec: dict) -> np.ndarray:
    """A preprocessed clip as the artifact's input tensor ``spec`` (a manifest ``inputs`` entry) takes it."""
    if list(clip.shape) != list(spec["shape"]):
        raise EgoedgeError(f"input '{spec['name']}' is {spec['shape']}, the clip is {list(clip.shape)}")
    return to_tensor(spec)(clip)
