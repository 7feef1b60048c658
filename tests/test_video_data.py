"""Your own videos: folder and EPIC-KITCHENS-100 sources, PyAV decoding, WebDataset shards, data report, DDP shards.

Every video here is a real file the tests write with PyAV (H.264 mp4 and VP9 webm), plus the
damaged ones a real dataset has: a truncated file, random bytes, a segment past the video's end.
"""

from __future__ import annotations

import csv
import datetime
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.cli import app
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data import DATA_SOURCES, DataConfig, label_names, load_split, prepare_data
from egoedge.trainer.data.decode import VideoError, decode_segment, tsn_times
from egoedge.trainer.data.encode import write_video
from egoedge.trainer.data.shards import ShardClips
from egoedge.trainer.data.sources import parse_spec
from egoedge.trainer.data.sources.base import stratified_split
from egoedge.trainer.data.sources.epic100 import timestamp
from egoedge.trainer.data.write_videos import write_clip_folder
from egoedge.trainer.engine import epoch_batches

runner = CliRunner()
GEN = DataConfig(frames=4, size=32, train=48, val=16, test=16)
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("EGOEDGE_DECODE_WORKERS", "2")


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _write_rows(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """The generated clips as mp4 (8 of them webm) + labels.csv, and three damaged rows in train."""
    root = tmp_path_factory.mktemp("videos")
    write_clip_folder(GEN, root, "csv")
    rows = _rows(root / "labels.csv")
    train = load_split(GEN, "train")
    for i in range(1, 9):  # re-encode some as VP9 webm
        rel = Path(rows[i][0]).with_suffix(".webm")
        write_video(root / rel, train.clips[i - 1], fps=GEN.frames)
        (root / rows[i][0]).unlink()
        rows[i][0] = str(rel)
    good = (root / rows[20][0]).read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "truncated.mp4").write_bytes(good[:len(good) // 3])
    (root / "broken" / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    header = rows[0] + ["start_s", "end_s"]
    body = [r + ["", ""] for r in rows[1:]]
    body += [["broken/truncated.mp4", rows[20][1], "train", "", ""],
             ["broken/noise.mp4", rows[21][1], "train", "", ""],
             [rows[22][0], rows[22][1], "train", "3.0", "4.0"]]  # the clip lasts 1 s
    _write_rows(root / "labels.csv", [header, *body])
    return root


@pytest.fixture(scope="module")
def epic_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("epic")
    write_clip_folder(GEN, root, "epic100")
    return root


def _cfg(spec: str, **kw) -> DataConfig:
    return DataConfig(name=spec, frames=4, size=32, **kw)


# --- decoding -------------------------------------------------------------------------------------------------


def test_tsn_times_centre_and_random_offsets():
    assert tsn_times(0.0, 4.0, 4).tolist() == [0.5, 1.5, 2.5, 3.5]
    rnd = tsn_times(0.0, 4.0, 4, np.random.default_rng(0))
    assert all(k <= t < k + 1 for k, t in enumerate(rnd))  # one per equal sub-segment
    assert rnd.tolist() == tsn_times(0.0, 4.0, 4, np.random.default_rng(0)).tolist()


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_decode_round_trip_resizes_and_crops(tmp_path, suffix):
    frames = np.zeros((8, 48, 64, 3), np.uint8)
    for t in range(8):
        frames[t, :, : 8 * (t + 1)] = 255  # a white bar that grows over time
    frames[:, :, :, 1] = np.arange(64, dtype=np.uint8)[None, None, :] * 2
    path = write_video(tmp_path / f"v{suffix}", frames, fps=8)
    clip = decode_segment(str(path), None, None, frames=4, size=24)
    assert clip.shape == (4, 24, 24, 3) and clip.dtype == np.uint8
    # shorter side 48 -> 24 (scale 0.5), width 64 -> 32, centre crop drops 4 columns each side
    centre = tsn_times(0.0, 1.0, 4) * 8  # frames 0.5, 2.5, ... -> frames 0, 2, 4, 6
    for k, f in enumerate(centre.astype(int)):
        white = (frames[f, :, :, 0].reshape(48, 32, 2).mean(-1)[::2][:, 4:28] > 127).mean()
        assert abs((clip[k, :, :, 0] > 127).mean() - white) < 0.08
    part = decode_segment(str(path), 0.5, 1.0, frames=2, size=24)  # a segment: frames 5 and 7
    assert (part[1, :, :, 0] > 127).mean() > (part[0, :, :, 0] > 127).mean() > (clip[1, :, :, 0] > 127).mean()


def test_decode_failures_are_one_line_reasons(tmp_path, clip_folder):
    cases = {"broken/truncated.mp4": (None, None, "cannot open the video"),
             "broken/noise.mp4": (None, None, "cannot open the video"),
             "missing.mp4": (None, None, "cannot open the video"),
             _rows(clip_folder / "labels.csv")[30][0]: (3.0, 4.0, r"is outside the video \(1.00 s long\)")}
    for rel, (start, end, reason) in cases.items():
        with pytest.raises(VideoError, match=reason) as e:
            decode_segment(str(clip_folder / rel), start, end, 4, 32)
        assert "\n" not in str(e.value)
    (tmp_path / "audio.mp4").write_bytes(b"")
    with pytest.raises(VideoError):
        decode_segment(str(tmp_path / "audio.mp4"), None, None, 4, 32)


# --- the folder source ----------------------------------------------------------------------------------------


def test_folder_csv_decodes_once_into_shards_and_reports_every_skipped_clip(clip_folder):
    cfg = _cfg(f"folder:{clip_folder}")
    prepared = prepare_data(cfg)
    report = json.loads(prepared.report_path.read_text())
    assert report["splits"] == {"train": {"clips": 48, "skipped": 3}, "val": {"clips": 16, "skipped": 0},
                                "test": {"clips": 16, "skipped": 0}}
    reasons = {Path(x["path"]).name if "broken" in x["path"] else "past end": x["reason"] for x in report["skipped"]}
    assert "cannot open the video" in reasons["truncated.mp4"] and "cannot open" in reasons["noise.mp4"]
    assert "outside the video" in reasons["past end"]
    assert report["split_rule"] == "labels.csv split column"
    # what was decoded equals the generated clips (up to H.264/VP9), labels by name
    names = label_names(cfg)
    for split in ("train", "test"):
        ours, ref = load_split(cfg, split), load_split(GEN, split)
        assert isinstance(ours.clips, ShardClips) and ours.clips.shape == ref.clips.shape
        assert [names[y] for y in ours.labels] == [label_names(GEN)[y] for y in ref.labels]
        assert np.abs(ours.clips[:].astype(int) - ref.clips).mean() < 12
    # WebDataset layout: KEY.clip.npy, KEY.cls, KEY.json per sample
    with tarfile.open(prepared.folder / "train" / "shard-00000.tar") as tar:
        members = tar.getnames()
    assert members[:3] == ["c000000.clip.npy", "c000000.cls", "c000000.json"]
    assert not list(prepared.folder.rglob("*.tmp"))


def test_prepared_data_is_reused_without_decoding(clip_folder, monkeypatch):
    cfg = _cfg(f"folder:{clip_folder}")
    first = prepare_data(cfg)
    import egoedge.trainer.data.prepare as prep

    monkeypatch.setattr(prep, "_MEMO", {})
    monkeypatch.setattr(prep, "decode_job", lambda job: pytest.fail("decoded again"))
    assert prepare_data(cfg).folder == first.folder


def test_a_killed_preparation_resumes_at_the_missing_shard(clip_folder, monkeypatch, tmp_path):
    import egoedge.trainer.data.prepare as prep

    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EGOEDGE_DECODE_WORKERS", "1")
    cfg = _cfg(f"folder:{clip_folder}", max_bad=0.1)
    calls = {"n": 0}
    real = prep.decode_job

    def dies_after_20(job):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt  # what a kill looks like to the writer: it stops mid-shard
        return real(job)

    monkeypatch.setattr(prep, "decode_job", dies_after_20)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(cfg)
    folder = next((tmp_path / "cache" / "shards").iterdir())
    done = sorted(p.name for p in (folder / "train").glob("*.tar"))
    assert done and not (folder / "index.json").exists() and not list(folder.rglob("*.tmp"))
    monkeypatch.setattr(prep, "_MEMO", {})
    counted = {"n": 0}

    def count(job):
        counted["n"] += 1
        return real(job)

    monkeypatch.setattr(prep, "decode_job", count)
    prepared = prepare_data(cfg)
    assert counted["n"] == 83 - sum(len(json.loads((folder / "train" / n).with_suffix(".json").read_text())
                                        ["labels"]) + len(json.loads((folder / "train" / n).with_suffix(".json")
                                                                     .read_text())["skipped"]) for n in done)
    assert len(prepared.split("train")) == 48


_DECODED = {"n": 0}


def _decodes_two_then_hangs(job):
    """A decode worker that answers its first chunk, then hangs as a worker stuck inside FFmpeg would."""
    _DECODED["n"] += 1
    if _DECODED["n"] > 2:
        time.sleep(120)
    return None, "not decoded by this test"


def test_an_interrupted_preparation_does_not_wait_for_a_hung_decode_worker(clip_folder, monkeypatch, tmp_path):
    import egoedge.trainer.data.prepare as prep

    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(prep, "decode_job", _decodes_two_then_hangs)

    def interrupted(stage, done, total, stats):
        if stats:  # the first decoded clip: Ctrl-C, or pytest-timeout's signal, arrives now
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(DATA_SOURCES.get("folder"), str(clip_folder), _cfg(f"folder:{clip_folder}"), interrupted,
                     workers=2)
    assert time.monotonic() - t0 < 60  # a hung worker sleeps 120 s: waiting for it would take longer


def test_too_many_bad_clips_stop_with_one_line(clip_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(EgoedgeError, match=r"3 of 83 clips \(3.6%\) are unusable, over the 1% allowed .*"
                                           r"data_report.json"):
        prepare_data(_cfg(f"folder:{clip_folder}", max_bad=0.01))


def test_class_folders_split_80_10_10_and_splits_csv_reads_back(clip_folder, tmp_path):
    root = tmp_path / "classes"
    write_clip_folder(GEN, root, "classes", ".webm")
    cfg = _cfg(f"folder:{root}")
    prepared = prepare_data(cfg)
    sizes = {s: len(load_split(cfg, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 48, "val": 16, "test": 16}  # 5 clips per class: 3 / 1 / 1
    assert label_names(cfg) == sorted(label_names(GEN))
    again = _cfg(f"folder:{prepared.splits_csv}")
    assert [len(load_split(again, s)) for s in ("train", "val", "test")] == [48, 16, 16]
    assert (load_split(again, "val").labels == load_split(cfg, "val").labels).all()


def test_stratified_split_is_seeded_and_per_class():
    labels = [y for y in range(3) for _ in range(20)]
    a, b = stratified_split(labels, 0), stratified_split(labels, 1)
    assert a == stratified_split(labels, 0) and a != b
    for y in range(3):
        got = [s for s, lab in zip(a, labels, strict=True) if lab == y]
        assert got.count("val") == 2 and got.count("test") == 2


@pytest.mark.parametrize("content, message", [
    ("file,label\nx.mp4,a\n", "missing column(s) path"),
    ("path,label,split\nx.mp4,a,training\n", "row 2 has split 'training'; use one of train, val, test"),
    ("path,label\n", "no rows under the header"),
    ("path,label,start_s\nx.mp4,a,soon\n", "'soon' is not a number of seconds"),
])
def test_bad_labels_csv_is_one_line(tmp_path, content, message):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(EgoedgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        label_names(_cfg(f"folder:{tmp_path}"))


def test_label_without_training_clips_is_skipped_with_its_reason(clip_folder, tmp_path):
    rows = _rows(clip_folder / "labels.csv")
    rows = [[str((clip_folder / r[0]).resolve()) if i else r[0], *r[1:]] for i, r in enumerate(rows)]
    rows.append([rows[-1][0], "juggle_knife", "test", "", ""])
    _write_rows(tmp_path / "labels.csv", rows)
    cfg = _cfg(f"folder:{tmp_path}", max_bad=0.1)
    prepared = prepare_data(cfg)
    skipped = json.loads(prepared.report_path.read_text())["skipped"]
    assert any("label 'juggle_knife' has no training clip" in x["reason"] for x in skipped)
    assert "juggle_knife" not in label_names(cfg)


def test_unknown_and_malformed_specs():
    with pytest.raises(EgoedgeError, match="unknown data source 'youtube:x'; use one of: .*epic100:"):
        parse_spec("youtube:x")
    with pytest.raises(EgoedgeError, match="write it as folder:clips/"):
        parse_spec("folder")
    with pytest.raises(EgoedgeError, match="no such folder"):
        label_names(_cfg("folder:/nowhere/at/all"))
    with pytest.raises(EgoedgeError, match="does not feed --task anticipation"):
        label_names(DataConfig(name="ego4d:/x", task="anticipation"))


# --- EPIC-KITCHENS-100 ----------------------------------------------------------------------------------------


def test_epic_timestamps():
    assert timestamp("00:01:02.50", "x") == pytest.approx(62.5)
    assert timestamp("01:00:00.00", "x") == 3600.0
    with pytest.raises(EgoedgeError, match="x: timestamp '1:2' is not HH:MM:SS.ff"):
        timestamp("1:2", "x")


def test_epic_official_columns_fixture_parses(tmp_path):
    """A hand-written excerpt in the official column order: classes are EPIC's indices, val is participant-disjoint."""
    for f in (FIXTURES / "epic100").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    for p in ("P01", "P02", "P03"):
        (tmp_path / p / "videos").mkdir(parents=True)
    src = DATA_SOURCES.get("epic100")
    cat = src.catalog(str(tmp_path), _cfg(f"epic100:{tmp_path}"))
    assert cat.classes[:3] == ["take", "put", "wash"] and len(cat.classes) == 12  # verb_class 0..11
    by_key = {s.key: s for s in cat.segments}
    seg = by_key["P01_01_0"]
    assert (seg.start_s, seg.end_s, seg.label) == (pytest.approx(2.0), pytest.approx(3.0), 0)
    assert seg.path == str(tmp_path / "P01" / "videos" / "P01_01.MP4")
    assert {s.split for s in cat.segments if s.key.startswith("P03")} == {"test"}
    val = {s.key[:3] for s in cat.segments if s.split == "val"}
    train = {s.key[:3] for s in cat.segments if s.split == "train"}
    assert len(val) == 1 and len(train) == 1 and not val & train
    nouns = src.catalog(str(tmp_path), _cfg(f"epic100:{tmp_path}", label="noun"))
    assert nouns.classes[3] == "plate" and {s.key: s.label for s in nouns.segments}["P01_01_0"] == 3


def test_epic_recognition_anticipation_and_actions(epic_folder):
    cfg = _cfg(f"epic100:{epic_folder}")
    assert label_names(cfg) == ["open", "close", "pick", "put"]
    prepared = prepare_data(cfg)
    report = json.loads(prepared.report_path.read_text())
    assert report["splits"]["test"] == {"clips": 16, "skipped": 0}
    assert "participants" in report["split_rule"]
    verbs = load_split(cfg, "test").labels
    ref = [label_names(GEN)[y].split("_")[0] for y in load_split(GEN, "test").labels]
    assert [label_names(cfg)[y] for y in verbs] == ref
    action = _cfg(f"epic100:{epic_folder}", label="action")
    assert len(label_names(action)) == 16
    ant = DATA_SOURCES.get("epic100").catalog(str(epic_folder), _cfg(f"epic100:{epic_folder}", task="anticipation"))
    rec = DATA_SOURCES.get("epic100").catalog(str(epic_folder), cfg)
    for a, r in zip(ant.segments, rec.segments, strict=True):
        assert a.end_s == pytest.approx(r.start_s - 1.0) and a.start_s == pytest.approx(max(0.0, r.start_s - 3.0))


def test_epic_bad_input_is_one_line(epic_folder, tmp_path):
    with pytest.raises(EgoedgeError, match="EPIC_100_train.csv is missing"):
        label_names(_cfg(f"epic100:{tmp_path}"))
    (tmp_path / "EPIC_100_train.csv").write_text("narration_id,video_id\nP01_01_0,P01_01\n")
    (tmp_path / "EPIC_100_validation.csv").write_text("narration_id,video_id\nP01_01_0,P01_01\n")
    with pytest.raises(EgoedgeError, match="missing column.s. participant_id, start_timestamp"):
        label_names(_cfg(f"epic100:{tmp_path}"))
    for name in ("EPIC_100_train.csv", "EPIC_100_validation.csv"):
        (tmp_path / name).write_bytes((epic_folder / name).read_bytes())
    with pytest.raises(EgoedgeError, match="no EPIC videos under .*pass --videos DIR"):
        label_names(_cfg(f"epic100:{tmp_path}"))
    assert len(label_names(_cfg(f"epic100:{tmp_path}", videos=str(epic_folder)))) == 4
    with pytest.raises(EgoedgeError, match="data.label 'object' is not an EPIC-KITCHENS class"):
        label_names(_cfg(f"epic100:{epic_folder}", label="object"))


# --- shards across processes ----------------------------------------------------------------------------------


def test_ranks_read_disjoint_whole_shards(monkeypatch):
    import egoedge.trainer.engine as engine

    counts = [4] * 7 + [3]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    shard_of = {i: s for s, (a, n) in enumerate(zip(starts, counts, strict=True)) for i in range(a, a + n)}
    for epoch in range(3):
        seen = []
        for rank in range(2):
            monkeypatch.setattr(engine, "world", lambda r=rank: (r, 2))
            seen.append([int(i) for b in epoch_batches(counts, 4, epoch, 0) for i in b])
        assert len(seen[0]) == len(seen[1]) == engine.steps_per_epoch(counts, 1) == 15
        assert not {shard_of[i] for i in seen[0]} & {shard_of[i] for i in seen[1]}


def _ddp_shard_worker(rank: int, rdv: str, out: str, cache: str, spec: str) -> None:
    import os

    os.environ["EGOEDGE_CACHE"] = cache
    torch.distributed.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=2,
                                         timeout=datetime.timedelta(seconds=120))
    torch.set_num_threads(1)
    from egoedge.trainer.data import preprocess_spec
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.models import build_model
    from egoedge.trainer.train import train_teacher

    cfg = _cfg(spec)
    train = load_split(cfg, "train")
    plan = train.sample_plan()
    seen = [int(i) for b in epoch_batches(plan, 4, 0, 0) for i in b]
    torch.manual_seed(0)
    model = build_model("resnet", num_classes=16, frames=4, size=32, variant="r10_16")
    history = train_teacher(model, train, preprocess_spec(cfg), TrainConfig(epochs=1, batch_size=4))
    torch.save({"seen": seen, "plan": plan, "steps": len(history), "head": model.head[-1].weight.detach()},
               f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_ranks_read_disjoint_shards(clip_folder, tmp_path):
    import os
    import time

    spec = f"folder:{clip_folder}"
    prepare_data(_cfg(spec))  # decoded once, before the ranks start
    context = mp.spawn(_ddp_shard_worker, args=(str(tmp_path / "rdv"), str(tmp_path), os.environ["EGOEDGE_CACHE"],
                                                spec), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail("the 2 gloo processes did not finish within 300 s")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    plan = r0["plan"]
    assert len(plan) >= 2
    starts = np.concatenate([[0], np.cumsum(plan)[:-1]])
    shard = lambda i: int(np.searchsorted(starts, i, side="right") - 1)  # noqa: E731
    assert not {shard(i) for i in r0["seen"]} & {shard(i) for i in r1["seen"]}
    assert len(r0["seen"]) == len(r1["seen"])
    assert torch.allclose(r0["head"], r1["head"])  # one model: the all-reduce matched step for step


# --- the command line -----------------------------------------------------------------------------------------


def test_data_commands(clip_folder, tmp_path):
    result = runner.invoke(app, ["data", "sources"])
    assert result.exit_code == 0 and "epic100:" in result.output and "folder:" in result.output
    result = runner.invoke(app, ["data", "prepare", "--data", f"folder:{clip_folder}", "--preset", "mini",
                                 "--config", str(_mini_size(tmp_path)), "--max-bad", "0.05", "--out",
                                 str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "outside the video" in result.output
    assert json.loads((tmp_path / "rep" / "data_report.json").read_text())["skipped_count"] == 3
    assert_one_line_error(runner.invoke(app, ["data", "prepare", "--data", "folder:/nowhere"]), "no such folder")
    assert_one_line_error(runner.invoke(app, ["data", "prepare", "--data", "synthetic"]), "nothing to decode")


def _mini_size(tmp_path: Path) -> Path:
    path = tmp_path / "size.yaml"
    path.write_text("data: {frames: 4, size: 32}\n")
    return path


@pytest.mark.slow
def test_run_on_an_epic_layout_end_to_end(epic_folder, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--preset", "mini", "--data", f"epic100:{epic_folder}", "--config",
                                 str(_mini_size(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["dataset"] == f"epic100:{epic_folder}"
    assert report["run"]["data"]["splits"]["test"]["clips"] == 16
    assert (out / "data_report.json").is_file() and (out / "splits.csv").is_file()
    assert all(r["status"] == "ok" for r in report["results"])
    assert "data:" in result.output and "0 skipped" in result.output
    ckpt = torch.load(out / "student.pt", weights_only=False)
    assert ckpt["label_names"] == ["open", "close", "pick", "put"]


def test_export_calibrates_and_checks_on_given_data(clip_folder, tmp_path, micro_ckpt):
    spec = f"folder:{clip_folder}"
    ckpt = micro_ckpt(tmp_path / "student.pt", _cfg(spec, max_bad=0.05))
    result = runner.invoke(app, ["export", str(ckpt), "--to", "onnx", "--data", spec, "--parity-samples", "8",
                                 "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["artifacts"][0]["status"] == "ok"
    generated = micro_ckpt(tmp_path / "gen.pt", GEN)  # the generated classes, in another order
    assert_one_line_error(runner.invoke(app, ["export", str(generated), "--to", "onnx", "--data", spec]),
                          "calibrate and check on data with the checkpoint's classes")


def test_video_and_annotation_loaders_fuzzed(tmp_path, clip_folder):
    """Random bytes and truncations of real mp4/webm files: a clip or a one-line VideoError, nothing else."""
    rng = np.random.default_rng(1)
    rows = _rows(clip_folder / "labels.csv")
    valid = [clip_folder / rows[1][0], clip_folder / rows[30][0]]  # a webm, an mp4
    assert {p.suffix for p in valid} == {".webm", ".mp4"}
    blobs = {f"random{n}": rng.bytes(n) for n in (0, 1, 100, 3000, 100_000)}
    for p in valid:
        data = p.read_bytes()
        blobs |= {f"{p.suffix}_cut{k}": data[:int(len(data) * k / 10)] for k in range(1, 10)}
    for name, blob in blobs.items():
        for suffix in (".mp4", ".webm"):
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(blob)
            try:
                clip = decode_segment(str(path), None, None, 4, 32)
            except VideoError as e:
                assert str(e) and "\n" not in str(e), name
            else:
                assert clip.shape == (4, 32, 32, 3), name
    for name, blob in blobs.items():  # the annotation files: one line each
        folder = tmp_path / f"csv_{name}"
        folder.mkdir()
        (folder / "labels.csv").write_bytes(blob)
        for f in ("EPIC_100_train.csv", "EPIC_100_validation.csv"):
            (folder / f).write_bytes(blob)
        for spec in (f"folder:{folder}", f"epic100:{folder}"):
            try:
                label_names(_cfg(spec))
            except EgoedgeError as e:
                assert "\n" not in str(e), (spec, name)


def test_epic_bad_class_index_is_one_line(epic_folder, tmp_path):
    rows = _rows(epic_folder / "EPIC_100_train.csv")
    rows[3][10] = "seven"
    _write_rows(tmp_path / "EPIC_100_train.csv", rows)
    (tmp_path / "EPIC_100_validation.csv").write_bytes((epic_folder / "EPIC_100_validation.csv").read_bytes())
    with pytest.raises(EgoedgeError, match="EPIC_100_train.csv: row 4: verb_class 'seven' is not a class index"):
        label_names(_cfg(f"epic100:{tmp_path}", videos=str(epic_folder)))


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_full_chroma_keeps_colour_closer(tmp_path, suffix):
    clip = load_split(DataConfig(frames=4, size=64, train=16, val=16, test=16), "val").clips[0]
    err = {}
    for chroma in ("420", "444"):
        path = write_video(tmp_path / f"{chroma}{suffix}", clip, fps=4, chroma=chroma)
        err[chroma] = np.abs(decode_segment(str(path), None, None, 4, 64).astype(int) - clip).mean()
    assert err["444"] < 0.6 * err["420"], err
    with pytest.raises(ValueError, match="chroma '422'"):
        write_video(tmp_path / "x.mp4", clip, chroma="422")


def _small_folder(root: Path, val: int) -> Path:
    """A few dozen real clips with a split column, and one unreadable file landing in each split."""
    write_clip_folder(DataConfig(frames=2, size=32, train=24, val=val, test=6), root, "csv")
    rows = _rows(root / "labels.csv")
    (root / "bad").mkdir()
    for split in ("train", "val", "test"):
        (root / "bad" / f"{split}.mp4").write_bytes(np.random.default_rng(len(split)).bytes(2000))
        rows.append([f"bad/{split}.mp4", rows[1][1], split])
    _write_rows(root / "labels.csv", rows)
    return root


@pytest.mark.slow
def test_a_small_folder_with_bad_clips_runs_through(tmp_path):
    """6 val clips (one more unreadable) against the mini preset's parity batch of 8: the run adapts and says so."""
    folder = _small_folder(tmp_path / "clips", val=6)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--preset", "mini", "--data", f"folder:{folder}", "--max-bad", "0.1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["data"]["skipped"] == 3
    assert report["run"]["adapted"] == ["parity batch of 6 clips, the whole val split (the preset asks 8)"]
    assert "parity batch of 6 clips" in (out / "report.md").read_text()
    assert all(r["status"] == "ok" for r in report["results"])
    assert [s["name"] for s in report["stages"]][:2] == ["data", "teacher"]


def test_a_split_too_small_is_refused_before_training(tmp_path):
    """One readable val clip cannot make the two-clip streaming sample: refused in one line, nothing trained."""
    folder = _small_folder(tmp_path / "clips", val=1)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--preset", "mini", "--data", f"folder:{folder}", "--max-bad", "0.2",
                                 "--out", str(out)])
    line = assert_one_line_error(result, "the val split of")
    assert "has 1 clip(s)" in line and "needs at least 2" in line
    assert not (out / "teacher.pt").exists()


def test_fit_to_splits_cuts_what_can_shrink_and_refuses_what_cannot():
    """Every branch of the check on a run's splits, without training: cuts noted, refusals in one line."""
    from types import SimpleNamespace

    from egoedge.pipeline.clips import PRESETS, fit_to_splits

    quick = PRESETS["quick"]  # parity batch 32, calibration 256, int8 and streaming
    sized = lambda train, val, test: SimpleNamespace(train=[0] * train, val=[0] * val, test=[0] * test)  # noqa: E731
    cfg, notes = fit_to_splits(quick, sized(100, 20, 5), decoded=True)
    assert (cfg.export.parity_samples, cfg.export.calibration) == (20, 100)
    assert notes == ["parity batch of 20 clips, the whole val split (the preset asks 32)",
                     "int8 calibration on all 100 training clips (the preset asks 256)"]
    assert fit_to_splits(quick, sized(1600, 320, 320), decoded=False) == (quick, [])
    with pytest.raises(EgoedgeError, match=r"the train split of 'synthetic' has 7 clip\(s\); training and an int8 "
                                           r"calibration set needs at least 8: raise data.train in the config"):
        fit_to_splits(quick, sized(7, 20, 5), decoded=False)
    with pytest.raises(EgoedgeError, match=r"the test split of 'synthetic' has 0 clip\(s\); scoring needs at least 1: "
                                           r"add clips to it \(data_report.json and splits.csv"):
        fit_to_splits(quick, sized(100, 20, 0), decoded=True)
