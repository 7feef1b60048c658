"""A call in a child process beside this one's work (how a run exports its two students at once)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egoedge.pipeline.beside import beside, torch_threads
from egoedge.trainer.common.arrays import read_array
from egoedge.trainer.common.io import EgoedgeError


def test_the_result_comes_back_and_errors_are_one_line(tmp_path):
    with beside("parsing", json.loads, ('{"a": [1, 2]}',)) as job:
        assert job.result() == {"a": [1, 2]}
    with beside("reading", read_array, (tmp_path / "missing.npy", "--calib-file")) as job, \
            pytest.raises(EgoedgeError) as e:
        job.result()
    assert str(e.value).startswith("reading: ") and "missing.npy" in str(e.value) and "\n" not in str(e.value)
    with beside("parsing", json.loads, ("{",)) as job, pytest.raises(EgoedgeError, match="^parsing: JSONDecodeError"):
        job.result()


def test_the_child_ends_when_this_side_fails():
    with pytest.raises(RuntimeError, match="this side failed"), beside("waiting", time.sleep, (60,)) as job:
        proc = job._proc
        raise RuntimeError("this side failed")
    assert not proc.is_alive() and proc.exitcode == -signal.SIGTERM


def test_torch_threads_are_restored():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_parent_leaves_no_child_behind(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from egoedge.pipeline.beside import beside\n"
        "if __name__ == '__main__':\n"
        "    with beside('waiting', time.sleep, (120,)) as job:\n"
        "        print(job._proc.pid, flush=True)\n"
        "        time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(100):
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its killed parent")
