"""kill -9 at seeded moments of `run`, `export`, `quantize` and `bench`, then the same command again: it finishes,
and at no moment does a partial file sit under a final name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from egoedge.edge.schema import validate
from egoedge.trainer.common.io import sha256_path

EGOEDGE = [sys.executable, "-c", "from egoedge.cli import main; main()"]
SEED = 2026


def _egoedge(args: list[str], cwd: Path) -> None:
    """Run egoedge to the end; it must succeed."""
    proc = subprocess.run(EGOEDGE + args, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "2"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _kill_when(args: list[str], cwd: Path, under_way: Callable[[], bool], delay: float = 0.0) -> bool:
    """Run egoedge and SIGKILL it ``delay`` seconds after ``under_way()`` first holds (a file its stage writes).

    Returns whether the kill landed: False when the command finished first (a kill after the work proves nothing).
    """
    proc = subprocess.Popen(EGOEDGE + args, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "2"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not under_way():
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()[-2000:]
            return False
        assert time.monotonic() < deadline, "no sign of the work after 600 s"
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode == -signal.SIGKILL


def _check_nothing_partial(folder: Path) -> None:
    """Every file under a final name is whole: JSON parses, checkpoints and arrays load, manifests match bytes."""
    for f in folder.rglob("*"):
        if not f.is_file() or f.name.startswith(".") or any(p.startswith(".") for p in f.relative_to(folder).parts):
            continue  # temp files and locks are dot-files: never under a final name
        if f.suffix == ".json":
            data = json.loads(f.read_text())
            if f.name == "manifest.json":
                validate(data, "manifest", str(f))
                for a in data["artifacts"]:
                    path = f.parent / a["file"]
                    if a.get("status") == "ok":
                        assert path.exists() and sha256_path(path) == a["sha256"], a["file"]
        elif f.suffix == ".pt":
            torch.load(f, map_location="cpu", weights_only=True)
        elif f.suffix == ".npy":
            np.load(f)
        elif f.suffix == ".jsonl":
            for line in f.read_text().splitlines()[:-1]:  # an append-only log may end in the line being written
                json.loads(line)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from conftest import make_ckpt

    from egoedge.trainer.data import DataConfig

    folder = tmp_path_factory.mktemp("kill")
    return make_ckpt(folder / "student.pt", DataConfig(frames=2, size=32, train=32, val=16, test=16))


COMMANDS = {
    # A lenient int8 gate: an untrained student's near-tie logits would send the gate's search through a dozen
    # calibrations, which the kill does not need (it halves the export).
    "export": lambda ck, out: ["export", str(ck), "--to", "onnx", "--int8", "--calib", "8",
                               "--parity-samples", "8", "--int8-agreement", "0", "--int8-drop", "100",
                               "--out", str(out / "export"), "--allow-failed"],
    "quantize": lambda ck, out: ["quantize", str(ck), "--calib", "8", "--val-samples", "8", "--max-fallback", "1",
                                 "--out", str(out / "q")],
    "run": lambda ck, out: ["run", "--preset", "mini", "--out", str(out / "run")],
}
# Evidence that each command is under way (a file it writes mid-work), and the file it writes last.
UNDER_WAY = {
    "export": lambda out: any((out / "export").glob("student_onnx_fp32.onnx")),
    "quantize": lambda out: (out / "q" / ".egoedge.lock").exists(),
    "run": lambda out: (out / "run" / "teacher.pt").exists(),
}
LAST = {"export": "export/manifest.json", "quantize": "q/student_int8.pt2", "run": "run/report.json"}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_kill_9_then_rerun_finishes_and_leaves_nothing_partial(command, student, tmp_path):
    out = tmp_path / "killed"
    args = COMMANDS[command](student, out)
    # A seeded moment after the work is seen under way: never so late that the command is done.
    delay = float(np.random.default_rng([SEED, len(command)]).uniform(0.0, 0.5))
    assert _kill_when(args, tmp_path, lambda: UNDER_WAY[command](out), delay), "finished before the kill"
    assert not (out / LAST[command]).exists(), "the kill landed after the work"
    _check_nothing_partial(out)
    _egoedge(args, tmp_path)  # the same command again finishes
    _check_nothing_partial(out)
    assert (out / LAST[command]).exists()
    if command == "run":  # the stage that finished before the kill was taken over, not redone
        assert '"reused", "stage": "teacher"' in (out / "run" / "log.jsonl").read_text()


@pytest.mark.slow
def test_kill_9_during_bench_then_rerun(fp32_export, tmp_path):
    import shutil

    shutil.copytree(fp32_export.parent, tmp_path, dirs_exist_ok=True)  # the export and the checkpoint it names
    bench = ["bench", str(tmp_path / "export"), "--iterations", "5", "--warmup", "1", "--in-process",
             "--out", str(tmp_path / "bench")]
    assert _kill_when(bench, tmp_path, lambda: (tmp_path / "bench" / ".egoedge.lock").exists(), 0.5), \
        "finished before the kill"
    assert not (tmp_path / "bench" / "report.json").exists(), "the kill landed after the bench"
    _check_nothing_partial(tmp_path / "bench")
    _egoedge(bench, tmp_path)
    _check_nothing_partial(tmp_path / "bench")
    assert json.loads((tmp_path / "bench" / "report.json").read_text())["results"]


@pytest.mark.slow
def test_kill_9_during_embed_then_rerun(fp32_export, tmp_path):
    import shutil

    app_source = Path(__file__).resolve().parent.parent / "android_demo"
    app = tmp_path / "android_demo"
    for rel in ("settings.gradle.kts", "app/build.gradle.kts", "gradle/libs.versions.toml"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app_source / rel, app / rel)
    run = tmp_path / "run"
    shutil.copytree(fp32_export.parent, run)  # a run folder: student.pt and its export
    embed = ["embed", str(run), "--app", str(app)]
    assets = app / "app" / "src" / "main" / "assets"
    # Embedding a micro model takes milliseconds once it starts: kill as its staging folder appears,
    # and try again (from scratch) the few times the copy wins the race.
    staging = assets / ".egoedge-staging"
    for _ in range(5):
        if _kill_when(embed, tmp_path, staging.exists):
            break
        shutil.rmtree(assets)
    else:
        pytest.fail("embed finished before the kill 5 times")
    assert not (assets / "manifest.json").exists(), "the kill landed after the embed"
    _check_nothing_partial(app)
    _egoedge(embed, tmp_path)
    _check_nothing_partial(app)
    assert json.loads((assets / "manifest.json").read_text())["artifacts"]
