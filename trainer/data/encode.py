"""uint8 frames -> video files with PyAV (H.264 mp4, VP9 webm): how the generated clips become a folder of videos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import atomic_write

# codec and options by container; crf 10 keeps the round trip close to the generated pixels.
_CODECS = {".mp4": ("libx264", {"crf": "10", "preset": "veryfast"}),
           ".mkv": ("libx264", {"crf": "10", "preset": "veryfast"}),
           ".webm": ("libvpx-vp9", {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"})}


CHROMA = {"420": "yuv420p", "444": "yuv444p"}


def write_video(path: str | Path, frames: np.ndarray, fps: float = 4.0, chroma: str = "420") -> Path:
    """Write uint8 ``(T, H, W, 3)`` RGB frames as a video (codec by suffix: .mp4/.mkv H.264, .webm VP9), atomically.

    ``chroma``: ``420`` (what cameras record; colour at half resolution) or ``444`` (full colour).

    Example::

        write_video("clips/open_drawer/0001.mp4", clip, fps=4)
    """
    import av

    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if path.suffix.lower() not in _CODECS:
        raise ValueError(f"cannot write {path.suffix} videos; use one of {', '.join(_CODECS)}")
    codec, options = _CODECS[path.suffix.lower()]
    if chroma not in CHROMA:
        raise ValueError(f"chroma '{chroma}': use one of {', '.join(CHROMA)}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"frames of {h}x{w}: yuv420 needs even sizes")

    def write(tmp: Path) -> None:
        with av.open(str(tmp), "w", format=path.suffix[1:].lower().replace("mkv", "matroska")) as out:
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000), options=options)
            stream.width, stream.height, stream.pix_fmt = w, h, CHROMA[chroma]
            for img in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)

    return atomic_write(path, write)
