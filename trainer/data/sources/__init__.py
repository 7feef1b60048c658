"""Data sources by ``--data`` spec: ``synthetic``, ``folder:PATH``, ``epic100:PATH``, ``ego4d:PATH``.

A new source is one module of this package that registers itself in :data:`DATA_SOURCES`.

Example::

    split = load_split(DataConfig(name="folder:clips/", frames=8, size=224), "train")
"""

from __future__ import annotations

import os

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.common.registry import import_submodules
from egoedge.trainer.data.clips import ClipSplit, DataConfig
from egoedge.trainer.data.labeling import labeling
from egoedge.trainer.data.prepare import Prepared, VideoSource, prepare
from egoedge.trainer.data.sources.base import DataSource
from egoedge.trainer.data.sources.registry import DATA_SOURCES

import_submodules(__name__, __path__)


def parse_spec(spec: str) -> tuple[DataSource, str]:
    """``NAME[:ARG]`` -> the registered source and its argument; one clear line otherwise."""
    name, _, arg = spec.partition(":")
    if name not in DATA_SOURCES:
        forms = ", ".join(DATA_SOURCES.get(n).example for n in DATA_SOURCES)
        raise EgoedgeError(f"unknown data source '{spec}'; use one of: {forms}")
    source = DATA_SOURCES.get(name)
    if (arg == "") != (name == "synthetic"):
        raise EgoedgeError(f"--data {spec}: write it as {source.example}")
    return source, arg


def normalize_spec(spec: str) -> str:
    """The spec with its path made absolute, so checkpoints that record it work from any folder."""
    source, arg = parse_spec(spec)
    return f"{source.name}:{os.path.abspath(os.path.expanduser(arg))}" if arg else source.name


def source_for(cfg: DataConfig) -> tuple[DataSource, str]:
    """The source ``cfg`` names, refused when it cannot feed ``cfg.task``."""
    source, arg = parse_spec(cfg.name)
    labeling(cfg.task)  # these are clip datasets; NLQ reads its own (trainer.nlq)
    if not source.clip_tasks:
        raise EgoedgeError(f"--data {source.name} does not feed --task {cfg.task} (it feeds "
                           f"{', '.join(source.feeds())})")
    return source, arg


def load_split(cfg: DataConfig, split: str) -> ClipSplit:
    """One split (``train``, ``val``, ``test``) of the dataset ``cfg`` names."""
    source, arg = source_for(cfg)
    return source.load_split(arg, cfg, split)


def label_names(cfg: DataConfig) -> list[str]:
    """Class names of the dataset ``cfg`` names."""
    source, arg = source_for(cfg)
    return source.label_names(arg, cfg)


def prepare_data(cfg: DataConfig, progress: Progress = no_progress, workers: int | None = None) -> Prepared | None:
    """Decode ``cfg``'s video source into shards if needed (None for a source that is not video files)."""
    source, arg = source_for(cfg)
    if not isinstance(source, VideoSource):
        return None
    return prepare(source, arg, cfg, progress, workers)


def choices_help() -> str:
    """One line per source for ``--data`` help texts."""
    return "; ".join(f"{DATA_SOURCES.get(n).example} ({DATA_SOURCES.get(n).summary})" for n in DATA_SOURCES)


__all__ = ["DATA_SOURCES", "DataSource", "choices_help", "label_names", "load_split", "normalize_spec",
           "parse_spec", "prepare_data", "source_for"]
