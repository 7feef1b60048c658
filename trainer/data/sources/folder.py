"""``folder:PATH``: your own clips, as ``PATH/<class>/<clip>.mp4`` or listed in ``PATH/labels.csv``.

``labels.csv`` has the header ``path,label`` and optionally ``start_s,end_s,split`` (paths
relative to the CSV's folder; ``split`` one of train, val, test). ``folder:FILE.csv`` names the
CSV itself, e.g. the ``splits.csv`` a run wrote. Without a split column the clips are split
80/10/10 per class, seeded.
"""

from __future__ import annotations

from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data.clips import DataConfig
from egoedge.trainer.data.decode import VIDEO_SUFFIXES
from egoedge.trainer.data.prepare import VideoSource
from egoedge.trainer.data.sources.base import SPLIT_NAMES, Catalog, Segment, read_csv, stratified_split
from egoedge.trainer.data.sources.registry import DATA_SOURCES


def _seconds(value: str, where: str) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise EgoedgeError(f"{where}: '{value}' is not a number of seconds") from None


class Folder(VideoSource):
    name = "folder"
    clip_tasks = True
    example = "folder:clips/"
    summary = "PATH/<class>/<clip>.mp4, or PATH/labels.csv (path,label[,start_s,end_s,split])"

    def catalog(self, arg: str, cfg: DataConfig) -> Catalog:
        root = Path(arg)
        if root.suffix.lower() == ".csv" or (root / "labels.csv").is_file():
            return self._from_csv(root if root.suffix.lower() == ".csv" else root / "labels.csv", cfg)
        if not root.is_dir():
            raise EgoedgeError(f"--data folder:{arg}: no such folder (expected PATH/<class>/<clip>.mp4 or "
                               "PATH/labels.csv)")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and any(_videos(d)))
        if not classes:
            raise EgoedgeError(f"--data folder:{arg}: no class folders with videos "
                               f"({', '.join(VIDEO_SUFFIXES)}) and no labels.csv")
        files = [(f, y) for y, c in enumerate(classes) for f in sorted(_videos(root / c))]
        splits = stratified_split([y for _, y in files], cfg.seed)
        segments = [Segment(str(f.relative_to(root)), str(f.resolve()), None, None, y, s)
                    for (f, y), s in zip(files, splits, strict=True)]
        return Catalog(classes, segments, split_rule=f"stratified 80/10/10 per class, seed {cfg.seed}")

    def _from_csv(self, path: Path, cfg: DataConfig) -> Catalog:
        if not path.is_file():
            raise EgoedgeError(f"--data folder:{path}: no such file")
        header, rows = read_csv(path, ("path", "label"))
        if not rows:
            raise EgoedgeError(f"{path}: no rows under the header")
        has_split = "split" in header
        for i, r in enumerate(rows):
            if has_split and r["split"] not in SPLIT_NAMES:
                raise EgoedgeError(f"{path}: row {i + 2} has split '{r['split']}'; use one of "
                                   f"{', '.join(SPLIT_NAMES)}")
        classes = sorted({r["label"] for r in rows if (not has_split or r["split"] == "train")})
        index = {c: i for i, c in enumerate(classes)}
        splits = [r["split"] for r in rows] if has_split else stratified_split([index[r["label"]] for r in rows],
                                                                               cfg.seed)
        segments, rejected = [], []
        for i, (r, split) in enumerate(zip(rows, splits, strict=True)):
            where = f"{path}: row {i + 2}"
            start, end = _seconds(r.get("start_s"), where), _seconds(r.get("end_s"), where)
            key = f"{r['path']}#{start}-{end}" if start is not None or end is not None else r["path"]
            video = (path.parent / r["path"]).resolve()
            if r["label"] not in index:
                rejected.append({"key": key, "path": str(video), "split": split,
                                 "reason": f"label '{r['label']}' has no training clip, so no class"})
                continue
            segments.append(Segment(key, str(video), start, end, index[r["label"]], split))
        rule = f"{path.name} split column" if has_split else f"stratified 80/10/10 per class, seed {cfg.seed}"
        return Catalog(classes, segments, rejected, rule)


def _videos(folder: Path):
    return (f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)


DATA_SOURCES.register("folder")(Folder())
