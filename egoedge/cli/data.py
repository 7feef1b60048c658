"""``egoedge data sources|prepare|synth``: see the data sources, decode one into shards (and benchmark), write clips."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from egoedge.cli.console import DATA_HELP, Preset, RichProgress, console, fail
from egoedge.trainer.common.io import EgoedgeError

data_app = typer.Typer(no_args_is_help=True, help="Datasets: list the sources, decode videos into shards, "
                       "write the generated clips as videos.")


@data_app.command("sources")
def sources() -> None:
    """The registered data sources, the tasks each feeds, and the --data form to use."""
    from egoedge.trainer.data import DATA_SOURCES

    table = Table(title="data sources (--data)")
    for col in ("--data", "tasks", "layout"):
        table.add_column(col, overflow="fold")
    for name in DATA_SOURCES:
        s = DATA_SOURCES.get(name)
        table.add_row(s.example, ", ".join(s.feeds()), s.summary)
    console.print(table)


def _config(preset: Preset, config: Path | None, data: str, task: str | None, videos: Path | None,
            max_bad: float | None):
    from egoedge.pipeline.clips import resolve_config

    return resolve_config(preset.value, config, data=data, task=task, videos=videos, max_bad=max_bad).data


@data_app.command("prepare")
def prepare(
    data: Annotated[str, typer.Option(help=DATA_HELP)],
    preset: Annotated[Preset, typer.Option(
        help="Frames and size of the clips (the preset's data settings).")] = "quick",
    config: Annotated[Path, typer.Option(
        help="YAML/JSON overrides (e.g. data: {frames: 8, size: 224, label: noun}).")] = None,
    task: Annotated[str, typer.Option(help="recognition (default) or anticipation.")] = None,
    videos: Annotated[Path, typer.Option(
        help="epic100: the videos folder when not beside the annotation CSVs.")] = None,
    max_bad: Annotated[float, typer.Option(help="Largest fraction of unusable clips to skip (default 0.05).")] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes (default: one per core, at most 8).")] = None,
    bench: Annotated[bool, typer.Option(
        "--bench",
        help="Also measure decode clips/s at 1 and 2 workers and a training epoch's peak memory at 1x and 10x the "
             "clips; writes data_bench.json.")] = False,
    out: Annotated[Path, typer.Option(
        help="Where to copy data_report.json (and data_bench.json); default: the shard folder only.")] = None,
) -> None:
    """Decode a video source once into WebDataset shards (resumable); print the dataset summary.

    Example: egoedge data prepare --data folder:my_clips/ --bench --out runs/mine
    """
    import json
    import shutil

    from egoedge.trainer.data import prepare_data

    if workers is not None and workers < 1:
        raise EgoedgeError(f"--workers must be >= 1, got {workers}")
    cfg = _config(preset, config, data, task, videos, max_bad)
    with RichProgress() as progress:
        prepared = prepare_data(cfg, progress, workers)
        if prepared is None:
            raise EgoedgeError(f"--data {data} is generated in memory; there is nothing to decode")
        result = None
        if bench:
            from egoedge.bench.data_bench import data_benchmark, write_benchmark

            result = data_benchmark(cfg, progress=progress)
            write_benchmark(result, prepared.folder / "data_bench.json")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for f in (prepared.report_path, prepared.splits_csv, prepared.folder / "data_bench.json"):
            if f.is_file() and (f.name != "data_bench.json" or bench):
                shutil.copyfile(f, out / f.name)
    rep = json.loads(prepared.report_path.read_text())
    table = Table(title=f"{rep['spec']} ({rep['classes']} classes, {rep['frames']} x {rep['size']}px)")
    for col in ("split", "clips", "skipped"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, c in rep["splits"].items():
        table.add_row(split, str(c["clips"]), str(c["skipped"]))
    console.print(table)
    d = rep["decode"]
    if d.get("decoded"):
        console.print(f"decoded {d['decoded']} clips in {d['seconds']} s ({d['clips_per_s']} clips/s, "
                      f"{d['workers']} workers)", highlight=False)
    for x in rep["skipped"][:10]:
        console.print(f"  skipped {x['key']} ({x['split']}): {x['reason']}", highlight=False, soft_wrap=True)
    if rep["skipped_count"] > 10:
        console.print(f"  ... {rep['skipped_count'] - 10} more in data_report.json", highlight=False)
    console.print(f"split rule: {rep['split_rule']}\nshards: {prepared.folder}", highlight=False, soft_wrap=True)
    if result is not None:
        bt = Table(title="data pipeline benchmark")
        for col in ("measure", "value"):
            bt.add_column(col)
        for d in result["decode"]:
            bt.add_row(f"decode, {d['workers']} worker(s)", f"{d['clips_per_s']} clips/s ({d['clips']} clips)")
        for e in result["epochs"]:
            bt.add_row(f"epoch peak RSS, {e['repeat']}x clips ({e['clips']})",
                       f"{e['peak_rss_mib']:.0f} MiB ({e['clips_per_s']} clips/s, {e['video_decodes']} decodes)")
        verdict = "flat" if result["flat"] else "NOT flat"
        bt.add_row("RSS growth 10x vs 1x", f"{100 * result['rss_growth']:+.1f}% ({verdict})")
        console.print(bt)


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the videos into.")],
    layout: Annotated[str, typer.Option(
        help="csv: <label>/<split>_N.mp4 + labels.csv with the generated splits; classes: <label>/*.mp4 only (split "
             "80/10/10 on load); epic100: EPIC-KITCHENS-100 CSVs + <participant>/videos/<video>.MP4.")] = "csv",
    preset: Annotated[Preset, typer.Option(help="How many clips, how many frames, what size.")] = "quick",
    config: Annotated[Path, typer.Option(help="YAML/JSON overrides (e.g. data: {train: 200}).")] = None,
    video_format: Annotated[str, typer.Option(
        "--format",
        help="mp4 (H.264) or webm (VP9); epic100 always .MP4.")] = "mp4",
    chroma: Annotated[str, typer.Option(
        help="420: colour at half resolution, as cameras record; 444: full colour (H.264 High 4:4:4), to measure the "
             "pipeline without chroma loss.")] = "420",
) -> None:
    """Write the generated clips as video files in a layout a data source reads (a demo of your own videos).

    Example: egoedge data synth clips/ --preset quick && egoedge run --data folder:clips/
    """
    from egoedge.trainer.data.write_videos import write_clip_folder

    try:
        if video_format not in ("mp4", "webm", "mkv"):
            raise EgoedgeError(f"--format {video_format}: use mp4, webm or mkv")
        cfg = _config(preset, config, "synthetic", None, None, None)
        with RichProgress() as progress:
            folder = write_clip_folder(replace(cfg, name="synthetic"), out, layout, "." + video_format, progress,
                                       chroma)
    except (EgoedgeError, ValueError) as e:
        fail(str(e))
    spec = f"epic100:{folder}" if layout == "epic100" else f"folder:{folder}"
    console.print(f"wrote {folder}; use it with --data {spec}", highlight=False)
