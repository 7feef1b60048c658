"""``ego4d:PATH``: Ego4D natural-language queries in the official layout (``--task nlq``).

``PATH/annotations/nlq_{train,val[,test]}.json`` plus per-clip features ``PATH/features/<clip_uid>.pt``;
the NLQ loaders read it (:mod:`trainer.nlq.dataset`).
"""

from __future__ import annotations

from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data.sources.base import DataSource
from egoedge.trainer.data.sources.registry import DATA_SOURCES
from egoedge.trainer.nlq.dataset import annotation_files


class Ego4D(DataSource):
    name = "ego4d"
    tasks = ("nlq",)
    example = "ego4d:ego4d_nlq/"
    summary = "annotations/nlq_{train,val}.json + features/<clip_uid>.pt (Ego4D NLQ)"

    def nlq_folder(self, arg: str) -> Path:
        """The dataset folder, once its annotation files are found."""
        root = Path(arg)
        if not root.is_dir():
            raise EgoedgeError(f"--data ego4d:{arg}: no such folder")
        annotation_files(root)
        if not (root / "features").is_dir():
            raise EgoedgeError(f"--data ego4d:{arg}: no features/ folder (features/<clip_uid>.pt per clip)")
        return root


DATA_SOURCES.register("ego4d")(Ego4D())
