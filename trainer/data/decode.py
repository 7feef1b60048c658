"""Video segments -> uint8 clips with PyAV: TSN frame sampling, shorter-side resize, centre crop.

PyAV's wheels carry FFmpeg, so decoding needs nothing beyond ``pip install``. Every failure
(unreadable file, no video stream, a segment outside the video, nothing decodable in it) is a
:class:`VideoError` with one line saying why, which the dataset preparation records per clip.
"""

from __future__ import annotations

import math

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
# A segment may end this far past the last frame (annotation rounding) before it counts as outside the video.
_END_SLACK_S = 0.5


class VideoError(Exception):
    """A clip that cannot be decoded; ``str(e)`` is the reason."""


def tsn_times(start: float, end: float, frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """One time per equal sub-segment of ``[start, end)``: its centre, or a random point of it when ``rng`` is given.

    Example::

        tsn_times(0.0, 4.0, 4)  # -> [0.5, 1.5, 2.5, 3.5]
    """
    step = (end - start) / frames
    offset = rng.random(frames) if rng is not None else np.full(frames, 0.5)
    return start + (np.arange(frames) + offset) * step


def _resize_crop(frame, size: int) -> np.ndarray:
    """An ``av.VideoFrame`` -> uint8 ``(size, size, 3)``: shorter side to ``size`` (swscale), centre crop."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    # One thread: the workers decoding clips are forked, and swscale's slice threads (its default) hung a forked
    # worker in CI (waiting in avpriv_slicethread_free); the process pool is the parallelism.
    rgb = frame.reformat(width=nw, height=nh, format="rgb24", threads=1).to_ndarray()
    y, x = (nh - size) // 2, (nw - size) // 2
    return rgb[y:y + size, x:x + size]


def decode_segment(path: str, start_s: float | None, end_s: float | None, frames: int, size: int,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """``frames`` TSN-sampled frames of ``path`` between ``start_s`` and ``end_s`` (None: the whole video).

    Returns uint8 ``(frames, size, size, 3)`` RGB. Example::

        clip = decode_segment("P01_01.MP4", 12.5, 14.0, frames=8, size=224)  # centre sampling
    """
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"cannot open the video ({_reason(e)})") from None
    with container:
        if not container.streams.video:
            raise VideoError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration(container, stream)
        start = 0.0 if start_s is None else float(start_s)
        end = duration if end_s is None else float(end_s)
        if end is None:
            raise VideoError("the video does not state its duration; give the segment's end_s")
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise VideoError(f"segment {start:.2f}-{end:.2f} s is empty or negative")
        if duration is not None and (start >= duration or end > duration + _END_SLACK_S):
            raise VideoError(f"segment {start:.2f}-{end:.2f} s is outside the video ({duration:.2f} s long)")
        targets = tsn_times(start, end, frames, rng)
        return _frames_at(container, stream, targets, size, start, end)


def _frames_at(container, stream, targets: np.ndarray, size: int, start: float, end: float) -> np.ndarray:
    """The frame shown at each target time (the last frame whose timestamp is at or before it)."""
    import av

    out: list[np.ndarray | None] = [None] * len(targets)
    tb = float(stream.time_base) if stream.time_base else 1.0
    if start > 0:
        container.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
    k, prev = 0, None
    try:
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else (prev[0] if prev else 0.0)
            while k < len(targets) and t > targets[k]:
                # the target falls before this frame: the previous one is on screen (or this one, if first)
                out[k] = _resize_crop(prev[1] if prev else frame, size)
                k += 1
            if k == len(targets):
                break
            prev = (t, frame)
            if t > end + 1.0:
                break
    except av.error.FFmpegError as e:
        if prev is None:
            raise VideoError(f"cannot decode the video ({_reason(e)})") from None
        # a damaged tail: frames already decoded stand for the rest only if the segment was reached
    if prev is None:
        raise VideoError(f"no frame decoded in segment {start:.2f}-{end:.2f} s")
    if prev[0] < start - 1.0:
        raise VideoError(f"the video stops at {prev[0]:.2f} s, before segment {start:.2f}-{end:.2f} s")
    last = _resize_crop(prev[1], size)
    return np.stack([x if x is not None else last for x in out])


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.splitlines()[0][:160] if text else type(e).__name__


def probe_duration(path: str) -> float:
    """Seconds of the first video stream of ``path``; :class:`VideoError` when it cannot be read."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoError("the file has no video stream")
            d = _duration(container, container.streams.video[0])
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot open the video ({_reason(e)})") from None
    if d is None:
        raise VideoError("the video does not state its duration")
    return d
