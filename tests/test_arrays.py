"""Every option and file that takes arrays answers each kind of bad file with one line (the message asserted)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_one_line_error

from egoedge.trainer.common.arrays import NPY_KEY, pick, read_array, read_arrays
from egoedge.trainer.common.io import EgoedgeError


def _bad_files(tmp_path, good: np.ndarray) -> dict[str, object]:
    """Each bad case as a path, with the words its one line must hold."""
    np.save(tmp_path / "good.npy", good)
    np.savez(tmp_path / "good.npz", x=good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "good.npz").read_bytes()[:200])
    cut_npy = tmp_path / "truncated.npy"
    cut_npy.write_bytes((tmp_path / "good.npy").read_bytes()[:140])
    (tmp_path / "text.npy").write_text("clip,label\n1,2\n")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "ints.npy", np.zeros(good.shape, np.int32))
    (tmp_path / "folder.npy").mkdir()
    return {
        "missing": (tmp_path / "nothing.npy", "does not exist"),
        "folder": (tmp_path / "folder.npy", "is a folder"),
        "truncated npz": (truncated, "truncated or damaged"),
        "truncated npy": (cut_npy, "truncated or damaged"),
        "not an array file": (tmp_path / "text.npy", "not a .npy or .npz array file"),
        "pickled objects": (tmp_path / "pickled.npy", "pickled Python objects"),
        "wrong dtype": (tmp_path / "ints.npy", "int32 values; floats expected"),
    }


CASES = ["missing", "folder", "truncated npz", "truncated npy", "not an array file", "pickled objects", "wrong dtype"]


@pytest.mark.parametrize("case", CASES)
def test_read_array_names_the_option_and_the_problem(case, tmp_path):
    path, words = _bad_files(tmp_path, np.zeros((4, 3), np.float32))[case]
    with pytest.raises(EgoedgeError) as e:
        read_array(path, "--calib-file", kind="f")
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"--calib-file {path}") and words in line


def test_good_files_read_back_and_a_wrong_key_or_rank_is_one_line(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    _bad_files(tmp_path, x)
    assert np.array_equal(read_array(tmp_path / "good.npy", "f", kind="f", ndim=2), x)
    assert np.array_equal(read_array(tmp_path / "good.npz", "f"), x)
    assert list(read_arrays(tmp_path / "good.npy", "f")) == [NPY_KEY]
    with pytest.raises(EgoedgeError, match="has no array named 'clip' \\(it holds 'x'\\)"):
        pick(read_arrays(tmp_path / "good.npz", "--example-inputs"), ("clip",), "--example-inputs",
             tmp_path / "good.npz")
    with pytest.raises(EgoedgeError, match="has 2 dimensions \\(4, 3\\); 5 expected"):
        read_array(tmp_path / "good.npy", "--calib-file", ndim=5)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(EgoedgeError, match="holds 2 arrays \\('a', 'b'\\); one expected"):
        read_array(tmp_path / "two.npz", "--labels")


@pytest.fixture(scope="module")
def tiny_factory(tmp_path_factory):
    """A factory model file (a small conv net on (1, 3, 16, 16) frames) for `egoedge export`."""
    folder = tmp_path_factory.mktemp("factory")
    (folder / "net.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),\n"
        "                               torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()\n")
    np.save(folder / "x.npy", np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    return folder


@pytest.mark.parametrize("option", ["--example-inputs", "--calib-file", "--labels"])
@pytest.mark.parametrize("case", CASES)
def test_every_array_option_of_export_answers_a_bad_file_in_one_line(option, case, tiny_factory, tmp_path):
    from typer.testing import CliRunner

    from egoedge.cli import app

    bad, words = _bad_files(tmp_path, np.zeros((8, 3, 16, 16), np.float32))[case]
    if case == "wrong dtype" and option == "--labels":
        np.save(bad, np.zeros(8, np.float32))  # labels must be integers: a float file is their wrong dtype
        words = "float32 values; integers expected"
    good = str(tiny_factory / "x.npy")
    files = {"--example-inputs": good, "--calib-file": good, "--labels": None} | {option: str(bad)}
    argv = ["export", f"{tiny_factory / 'net.py'}:make", "--to", "onnx", "--out", str(tmp_path / "out"),
            "--example-inputs", files["--example-inputs"]]
    if option == "--calib-file":
        argv += ["--int8", "--calib-file", files["--calib-file"]]
    if option == "--labels":
        argv += ["--labels", files["--labels"]]
    result = CliRunner().invoke(app, argv)
    line = assert_one_line_error(result)
    assert option in line and words in line, line
