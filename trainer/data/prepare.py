"""Decode a video source once into WebDataset shards, in parallel, with a report of every clip skipped.

The shard folder is keyed by the source, its segments (and the files' sizes and times), the
classes and the sampling settings, so a changed annotation file or preset decodes again and an
unchanged one never does. Shards are written atomically one by one: a killed preparation
resumes at the first missing shard. ``index.json`` is written last and marks the folder complete.

Layout::

    <cache>/shards/<source>-<key>/
        train/shard-00000.tar  (+ shard-00000.json: labels and skipped clips of that shard)
        val/... test/...
        data_report.json  splits.csv  index.json
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError, write_csv_atomic, write_json_atomic
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.data.clips import ClipSplit, DataConfig
from egoedge.trainer.data.decode import VideoError, decode_segment
from egoedge.trainer.data.shards import ShardClips, write_shard
from egoedge.trainer.data.sources.base import SPLIT_NAMES, Catalog, DataSource, Segment, stable_seed

# Bump when decoding or the shard layout changes, so that prepared folders are rebuilt.
DECODE_VERSION = 1
MAX_SHARD_CLIPS = 128  # ~150 MB shards at 8 x 224 x 224: the size WebDataset suggests


def cache_root() -> Path:
    """``$EGOEDGE_CACHE`` or ``~/.cache/egoedge``: where decoded shards live, shared by every run."""
    return Path(os.environ.get("EGOEDGE_CACHE") or Path.home() / ".cache" / "egoedge")


def decode_workers() -> int:
    """Decoding processes: ``$EGOEDGE_DECODE_WORKERS`` or one per core (at most 8)."""
    env = os.environ.get("EGOEDGE_DECODE_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise EgoedgeError(f"EGOEDGE_DECODE_WORKERS={env} is not a number") from None
    return max(1, min(8, os.cpu_count() or 1))


def shard_size(n: int) -> int:
    """Clips per shard: up to :data:`MAX_SHARD_CLIPS`, and at least 8 shards for a small split (for ranks)."""
    return max(4, min(MAX_SHARD_CLIPS, math.ceil(n / 8)))


class VideoSource(DataSource):
    """A source of video files: it lists segments; :func:`prepare` decodes them once into shards."""

    def catalog(self, arg: str, cfg: DataConfig) -> Catalog:
        """Every segment of the dataset with its class and split."""
        raise NotImplementedError

    def label_names(self, arg: str, cfg: DataConfig) -> list[str]:
        return list(self.catalog(arg, cfg).classes)

    def load_split(self, arg: str, cfg: DataConfig, split: str) -> ClipSplit:
        return prepare(self, arg, cfg).split(split)


@dataclass
class Prepared:
    """A complete shard folder: per split its shards and labels, plus the class names."""

    folder: Path
    index: dict

    def split(self, name: str) -> ClipSplit:
        """One split, read from its shards on demand."""
        info = self.index["splits"][name]
        clips = ShardClips([self.folder / p for p in info["shards"]], self.index["frames"], self.index["size"])
        labels = np.asarray(info["labels"], np.int64)
        if len(clips) != len(labels):
            raise EgoedgeError(f"{self.folder}: {name} shards hold {len(clips)} clips but the index lists "
                               f"{len(labels)}; delete the folder to decode again")
        return ClipSplit(clips, labels)

    @property
    def report_path(self) -> Path:
        return self.folder / "data_report.json"

    @property
    def splits_csv(self) -> Path:
        return self.folder / "splits.csv"


def _file_stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def folder_key(source: VideoSource, arg: str, catalog: Catalog, cfg: DataConfig) -> str:
    """What the decoded clips depend on, hashed: segments, files, classes, sampling settings."""
    h = hashlib.sha1()
    h.update(repr((DECODE_VERSION, source.name, cfg.frames, cfg.size, cfg.seed, catalog.classes)).encode())
    stats = {p: _file_stat(p) for p in sorted({s.path for s in catalog.segments})}
    for s in catalog.segments:
        h.update(repr((s.key, s.path, s.start_s, s.end_s, s.label, s.split, stats[s.path])).encode())
    return h.hexdigest()[:16]


def decode_job(job: tuple) -> tuple[np.ndarray | None, str | None]:
    """Worker: ``(path, start, end, frames, size, seed or None)`` -> ``(clip, None)`` or ``(None, reason)``."""
    path, start, end, frames, size, seed = job
    rng = np.random.default_rng(seed) if seed is not None else None
    try:
        return decode_segment(path, start, end, frames, size, rng), None
    except VideoError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - a decoder bug on one file must not stop a 100-hour dataset
        return None, f"decoder failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"


_MEMO: dict[Path, Prepared] = {}


def prepare(source: VideoSource, arg: str, cfg: DataConfig, progress: Progress = no_progress,
            workers: int | None = None) -> Prepared:
    """The prepared shards of ``source`` for ``cfg``: decoded now if missing, else read back (no decoding).

    Example::

        data = prepare(DATA_SOURCES.get("folder"), "clips/", DataConfig(frames=8, size=224))
        train = data.split("train")  # ClipSplit over shards
    """
    catalog = source.catalog(arg, cfg)
    folder = cache_root() / "shards" / f"{source.name}-{folder_key(source, arg, catalog, cfg)}"
    if folder in _MEMO:
        return _MEMO[folder]
    if not (folder / "index.json").is_file():
        from egoedge.trainer.engine import world

        rank, size = world()
        if rank == 0:
            _build(folder, source, arg, catalog, cfg, progress, workers or decode_workers())
        if size > 1:
            import torch.distributed

            torch.distributed.barrier()  # the other ranks read what rank 0 decoded
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EgoedgeError(f"{folder}/index.json: unreadable ({e}); delete the folder to decode again") from None
    _MEMO[folder] = Prepared(folder, index)
    return _MEMO[folder]


def _build(folder: Path, source: VideoSource, arg: str, catalog: Catalog, cfg: DataConfig, progress: Progress,
           workers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second command on the same data waits, then finds it done
        if (folder / "index.json").is_file():
            return
        plan = _plan(catalog)
        total = sum(len(segs) for shards in plan.values() for _, segs in shards)
        done = sum(len(segs) for shards in plan.values() for name, segs in shards if _complete(folder / name))
        t0, decoded = time.perf_counter(), 0
        progress("decode", done, total, {})
        pool = ProcessPoolExecutor(workers, mp_context=get_context("fork")) if workers > 1 else None
        try:
            for split, shards in plan.items():
                for name, segs in shards:
                    if _complete(folder / name):
                        continue
                    jobs = [(s.path, s.start_s, s.end_s, cfg.frames, cfg.size,
                             stable_seed("tsn", cfg.seed, s.key) if split == "train" else None) for s in segs]
                    results = pool.map(decode_job, jobs, chunksize=2) if pool else map(decode_job, jobs)
                    samples, skipped = [], []
                    for seg, (clip, reason) in zip(segs, results, strict=True):
                        if clip is None:
                            skipped.append(_skip(seg, reason))
                        else:
                            samples.append((f"c{len(samples):06d}", clip, seg.label, _meta(seg)))
                        decoded += 1
                        elapsed = time.perf_counter() - t0
                        progress("decode", done + decoded, total, {"clips/s": round(decoded / max(elapsed, 1e-9),
                                                                                         1)})
                    # labels first, then the shard: a shard without its sidecar is decoded again
                    write_json_atomic((folder / name).with_suffix(".json"),
                                      {"labels": [s[2] for s in samples], "skipped": skipped})
                    write_shard(folder / name, samples)
        except BaseException:
            if pool is not None:
                _abandon(pool)
            raise
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        seconds = time.perf_counter() - t0
        _finish(folder, source, arg, catalog, cfg, plan, {"workers": workers, "seconds": round(seconds, 2),
                                                          "decoded": decoded,
                                                          "clips_per_s": round(decoded / seconds, 1)
                                                          if decoded and seconds > 0 else None})


def _abandon(pool: ProcessPoolExecutor) -> None:
    """Stops a pool on an error without waiting for it: a worker hung in a decoder would hang the error too."""
    workers = list((pool._processes or {}).values())  # Executor.terminate_workers() arrives in Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()
        worker.join(timeout=10)


def _plan(catalog: Catalog) -> dict[str, list[tuple[str, list[Segment]]]]:
    plan = {}
    for split in SPLIT_NAMES:
        segs = [s for s in catalog.segments if s.split == split]
        k = shard_size(len(segs))
        plan[split] = [(f"{split}/shard-{i // k:05d}.tar", segs[i:i + k]) for i in range(0, len(segs), k)]
    return plan


def _complete(shard: Path) -> bool:
    return shard.is_file() and shard.with_suffix(".json").is_file()


def _skip(seg: Segment, reason: str) -> dict:
    return {"key": seg.key, "path": seg.path, "split": seg.split, "reason": reason}


def _meta(seg: Segment) -> dict:
    return {"source_key": seg.key, "path": seg.path, "start_s": seg.start_s, "end_s": seg.end_s}


def _finish(folder: Path, source: VideoSource, arg: str, catalog: Catalog, cfg: DataConfig, plan: dict,
            decode: dict) -> None:
    """Collect the shards' sidecars into the report and the index; stop when too many clips were unusable."""
    splits, skipped = {}, list(catalog.rejected)
    for split, shards in plan.items():
        labels: list[int] = []
        for name, _ in shards:
            side = json.loads((folder / name).with_suffix(".json").read_text())
            labels += side["labels"]
            skipped += side["skipped"]
        splits[split] = {"shards": [name for name, _ in shards], "labels": labels}
    total = len(catalog.segments) + len(catalog.rejected)
    counts = {s: {"clips": len(v["labels"]), "skipped": sum(1 for x in skipped if x["split"] == s)}
              for s, v in splits.items()}
    report = {"source": source.name, "spec": f"{source.name}:{arg}", "task": cfg.task, "frames": cfg.frames,
              "size": cfg.size, "classes": len(catalog.classes), "split_rule": catalog.split_rule,
              "splits": counts, "total": total, "skipped_count": len(skipped),
              "skipped": skipped, "decode": decode, "shards": str(folder)}
    write_json_atomic(folder / "data_report.json", report)
    _write_splits_csv(folder / "splits.csv", catalog, skipped)
    if total and len(skipped) / total > cfg.max_bad:
        raise EgoedgeError(f"{len(skipped)} of {total} clips ({100 * len(skipped) / total:.1f}%) are unusable, "
                           f"over the {100 * cfg.max_bad:g}% allowed (--max-bad); reasons in "
                           f"{folder / 'data_report.json'}")
    for split, c in counts.items():
        if c["clips"] == 0:
            raise EgoedgeError(f"--data {source.name}:{arg}: no usable {split} clips; see "
                               f"{folder / 'data_report.json'}")
    write_json_atomic(folder / "index.json", {"classes": catalog.classes, "frames": cfg.frames, "size": cfg.size,
                                              "splits": splits})


def _write_splits_csv(path: Path, catalog: Catalog, skipped: list[dict]) -> None:
    """The split every clip went to, as a ``labels.csv`` that ``--data folder:splits.csv`` reads back."""
    bad = {x["key"] for x in skipped}
    write_csv_atomic(path, [["path", "label", "start_s", "end_s", "split"]] + [
        [s.path, catalog.classes[s.label], "" if s.start_s is None else s.start_s, "" if s.end_s is None else s.end_s,
         s.split] for s in catalog.segments if s.key not in bad])
