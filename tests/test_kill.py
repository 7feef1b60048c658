"""kill -9 at seeded moments of `run`, `export`, `quantize` and `bench`, then the same command again: it finishes,
and at no moment does a partial file sit under a final name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.schema import validate
from trainer.common.io import sha256_path

EGOEDGE = [sys.executable, "-c", "from bench.cli import main; main()"]
SEED = 2026


def _egoedge(args: list[str], cwd: Path, kill_after: float | None = None) -> int | None:
    """Run egoedge; with ``kill_after`` send SIGKILL that many seconds in (None: it finished first)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(EGOEDGE + args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        _, err = proc.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return None
    assert kill_after is not None or proc.returncode == 0, err[-2000:]
    return proc.returncode


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

    from trainer.data import DataConfig

    folder = tmp_path_factory.mktemp("kill")
    return make_ckpt(folder / "student.pt", DataConfig(frames=2, size=32, train=32, val=16, test=16))


COMMANDS = {
    "export": lambda ck, out: ["export", str(ck), "--to", "onnx", "--int8", "--calib", "8",
                               "--parity-samples", "8", "--out", str(out / "export"), "--allow-failed"],
    "quantize": lambda ck, out: ["quantize", str(ck), "--calib", "8", "--val-samples", "8", "--max-fallback", "1",
                                 "--out", str(out / "q")],
    "run": lambda ck, out: ["run", "--preset", "mini", "--out", str(out / "run")],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_kill_9_then_rerun_finishes_and_leaves_nothing_partial(command, student, tmp_path):
    args = COMMANDS[command](student, tmp_path / "clean")
    t0 = time.monotonic()
    _egoedge(args, tmp_path)  # how long it takes uninterrupted
    full = time.monotonic() - t0
    rng = np.random.default_rng([SEED, len(command)])
    for k, frac in enumerate(rng.uniform(0.3, 0.95, 1)):  # one seeded moment per command keeps CI short
        out = tmp_path / f"killed{k}"
        args = COMMANDS[command](student, out)
        _egoedge(args, tmp_path, kill_after=frac * full)
        _check_nothing_partial(out)
        _egoedge(args, tmp_path)  # the same command again finishes
        _check_nothing_partial(out)


@pytest.mark.slow
def test_kill_9_during_bench_then_rerun(student, tmp_path):
    _egoedge(COMMANDS["export"](student, tmp_path), tmp_path)
    bench = ["bench", str(tmp_path / "export"), "--iterations", "5", "--warmup", "1", "--in-process",
             "--out", str(tmp_path / "bench")]
    t0 = time.monotonic()
    _egoedge(bench, tmp_path)
    full = time.monotonic() - t0
    (tmp_path / "bench" / "report.json").unlink()
    _egoedge(bench, tmp_path, kill_after=0.6 * full)
    _check_nothing_partial(tmp_path / "bench")
    _egoedge(bench, tmp_path)
    _check_nothing_partial(tmp_path / "bench")
    assert json.loads((tmp_path / "bench" / "report.json").read_text())["results"]


@pytest.mark.slow
def test_kill_9_during_embed_then_rerun(student, tmp_path):
    import shutil

    app_source = Path(__file__).resolve().parent.parent / "android_demo"
    app = tmp_path / "android_demo"
    for rel in ("settings.gradle.kts", "app/build.gradle.kts", "gradle/libs.versions.toml"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app_source / rel, app / rel)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(student, run / "student.pt")
    _egoedge(["export", str(run / "student.pt"), "--to", "executorch,tflite", "--parity-samples", "8", "--out",
              str(run / "export")], tmp_path)
    embed = ["embed", str(run), "--app", str(app)]
    t0 = time.monotonic()
    _egoedge(embed, tmp_path)
    full = time.monotonic() - t0
    assets = app / "app" / "src" / "main" / "assets"
    shutil.rmtree(assets)
    _egoedge(embed, tmp_path, kill_after=float(np.random.default_rng(SEED).uniform(0.5, 0.95)) * full)
    _check_nothing_partial(app)
    _egoedge(embed, tmp_path)
    _check_nothing_partial(app)
    assert json.loads((assets / "manifest.json").read_text())["artifacts"]
