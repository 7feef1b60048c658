"""Decoded clips on disk as WebDataset tar shards, read back by random access without loading a split.

A shard is a plain (uncompressed) POSIX tar in WebDataset's layout: per sample ``KEY.clip.npy``
(uint8 ``(T, H, W, 3)``), ``KEY.cls`` (the class index as text) and ``KEY.json`` (where it came
from), so ``webdataset.WebDataset(url).decode()`` reads our shards unchanged. Because members are
stored, a sample's bytes sit at a fixed offset: :class:`ShardClips` finds the offsets once
(headers only) and reads a batch with ``os.pread``, so memory stays at one batch whatever the
split's size, and the engine keeps its seeded, resumable index order.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError, atomic_write

CLIP_SUFFIX = ".clip.npy"


def write_shard(path: Path, samples: list[tuple[str, np.ndarray, int, dict]]) -> Path:
    """Write ``(key, clip, label, meta)`` samples as one tar shard, atomically."""

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: equal inputs give equal bytes
        tar.addfile(info, io.BytesIO(data))

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, clip, label, meta in samples:
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(clip, dtype=np.uint8))
                add(tar, key + CLIP_SUFFIX, buf.getvalue())
                add(tar, key + ".cls", str(int(label)).encode())
                add(tar, key + ".json", json.dumps(meta).encode())

    return atomic_write(path, write)


def shard_members(path: Path) -> list[tuple[str, int, int]]:
    """``(key, data offset, size)`` of each clip in a shard, in order (reads tar headers only)."""
    out = []
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if m.name.endswith(CLIP_SUFFIX):
                    out.append((m.name[:-len(CLIP_SUFFIX)], m.offset_data, m.size))
    except (tarfile.TarError, OSError) as e:
        raise EgoedgeError(f"{path}: not a readable shard ({e}); delete its folder to decode the videos again") \
            from None
    return out


class ShardClips:
    """Array-like uint8 ``(N, T, H, W, 3)`` view of clips in tar shards: ``clips[idx]`` reads just those clips.

    Example::

        clips = ShardClips([Path("train/shard-00000.tar")], frames=4, size=64)
        batch = clips[np.array([3, 0, 7])]  # (3, 4, 64, 64, 3) uint8
    """

    dtype = np.dtype(np.uint8)
    ndim = 5

    def __init__(self, paths: list[Path], frames: int, size: int) -> None:
        self.paths = list(paths)
        self._where: list[tuple[int, int, int]] = []  # (shard, offset, size) per clip
        self.shard_counts: list[int] = []
        for i, p in enumerate(self.paths):
            members = shard_members(p)
            self._where += [(i, off, n) for _, off, n in members]
            self.shard_counts.append(len(members))
        self.shape = (len(self._where), frames, size, size, 3)
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, i: int) -> np.ndarray:
        shard, offset, size = self._where[i]
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise EgoedgeError(f"{self.paths[shard]}: truncated shard; delete its folder to decode the videos again")
        clip = np.load(io.BytesIO(data), allow_pickle=False)
        if clip.shape != self.shape[1:]:
            raise EgoedgeError(f"{self.paths[shard]}: clip of shape {clip.shape}, expected {self.shape[1:]}")
        return clip

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self._read(int(idx) % len(self))
        rows = np.arange(len(self))[idx]
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        for j, i in enumerate(rows):
            out[j] = self._read(int(i))
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": {}}  # file descriptors do not cross processes

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass
