"""Two commands on one output folder: the second refuses in one line; a killed holder leaves nothing locked."""

import subprocess
import sys
import time

import pytest

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.common.lock import folder_lock, locks_folder

HOLD = ("import sys, time\n"
        "from trainer.common.lock import folder_lock\n"
        "with folder_lock(sys.argv[1], 'egoedge export'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n")


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_command_refuses_and_a_killed_one_releases(tmp_path):
    proc = _holder(tmp_path / "export")
    try:
        with pytest.raises(EgoedgeError, match=r"export is in use by `egoedge export` \(pid \d+\); wait for it"):
            with folder_lock(tmp_path / "export", "egoedge bench"):
                pass
    finally:
        proc.kill()  # kill -9: no cleanup runs in the holder
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the lock with the process
        try:
            with folder_lock(tmp_path / "export", "egoedge bench"):
                break
        except EgoedgeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    calls = []

    @locks_folder("out", "egoedge run")
    def stage(out, depth):
        calls.append(depth)
        if depth < 2:
            stage(out, depth + 1)  # a run quantizing into its own folder

    stage(tmp_path / "run", 0)
    assert calls == [0, 1, 2]
    proc = _holder(tmp_path / "run")  # released: another process can take it
    proc.kill()
    proc.wait(timeout=30)


def test_an_unusable_folder_is_one_line(tmp_path):
    with pytest.raises(EgoedgeError, match="cannot create run folder /proc/egoedge-x"):
        with folder_lock("/proc/egoedge-x", "egoedge run"):
            pass


@pytest.mark.parametrize("command", ["export", "quantize", "bench", "run"])
def test_every_writing_command_takes_the_lock(command, tmp_path, mini_data_cfg, micro_ckpt):
    from typer.testing import CliRunner

    from egoedge.cli import app

    ckpt = micro_ckpt(tmp_path / "student.pt", mini_data_cfg)
    out = tmp_path / "busy"
    args = {"export": ["export", str(ckpt), "--to", "onnx", "--out", str(out)],
            "quantize": ["quantize", str(ckpt), "--out", str(out)],
            "bench": ["bench", str(tmp_path), "--out", str(out)],
            "run": ["run", "--preset", "mini", "--out", str(out)]}[command]
    (tmp_path / "manifest.json").write_text('{"source": {"checkpoint": "student.pt"}, "artifacts": []}')
    proc = _holder(out)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert result.exit_code == 1
    assert "is in use by `egoedge export` (pid" in " ".join(result.output.split())
