"""The one reader of ``.npy`` / ``.npz`` files: every bad file is one line that names the option or file it came from.

Every place that reads arrays a user or an earlier stage wrote goes through here
(``--example-inputs``, ``--calib-file``, ``--labels``, saved samples, teacher outputs, cached
embeddings, the synthetic data cache, bench inputs), so a missing, truncated or pickled file
reads the same everywhere.

Example::

    x = read_array("calib.npy", "--calib-file", kind="f", ndim=5)
    inputs = pick(read_arrays("samples.npz", "--example-inputs"), ("clip",), "--example-inputs", "samples.npz")
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from egoedge.trainer.common.io import EgoedgeError, first_line

# np.savez names positional arrays arr_0, arr_1, ...; a .npy's one array is read back under the first name.
NPY_KEY = "arr_0"
_KINDS = {"f": "floats", "iu": "integers", "i": "signed integers", "u": "unsigned integers", "b": "booleans"}


def _bad(what: str, path: Path, why: str) -> EgoedgeError:
    return EgoedgeError(f"{what} {path}: {why}")


def _why(error: BaseException, path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        return "is not a .npy or .npz array file (numpy.save / numpy.savez write them)"
    text = str(error).lower()
    if isinstance(error, zipfile.BadZipFile | EOFError) or any(
            w in text for w in ("truncated", "fully writ", "failed to read all data", "cannot reshape")):
        return "is truncated or damaged (an incomplete .npz or .npy); write it again"
    if "pickle" in text or "object arrays" in text:
        return "holds pickled Python objects; egoedge reads plain arrays only (save with numpy.save / numpy.savez)"
    return f"is not a readable .npy or .npz array file ({first_line(error)[:120]})"


def require_file(path: str | Path, what: str) -> Path:
    """``path`` if it is a file: checked before any work starts, in the same words :func:`read_arrays` uses."""
    path = Path(path)
    if not path.exists():
        raise _bad(what, path, "does not exist")
    if path.is_dir():
        raise _bad(what, path, "is a folder; give a .npy or .npz file")
    return path


def read_arrays(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every array of a ``.npy`` (under :data:`NPY_KEY`) or ``.npz`` file, by name; a bad file is one line."""
    path = require_file(path, what)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {NPY_KEY: loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _bad(what, path, _why(e, path)) from None


def pick(arrays: dict[str, np.ndarray], names: Sequence[str], what: str, path: str | Path) -> tuple[np.ndarray, ...]:
    """``arrays[name]`` for each of ``names`` in order; a missing one is one line listing what the file holds."""
    missing = [n for n in names if n not in arrays]
    if missing:
        raise _bad(what, Path(path), f"has no array named {', '.join(map(repr, missing))} "
                                     f"(it holds {', '.join(map(repr, arrays)) or 'none'})")
    return tuple(arrays[n] for n in names)


def check_array(x: np.ndarray, what: str, path: str | Path, kind: str | None = None,
                ndim: int | None = None) -> np.ndarray:
    """``x`` if its dtype is of ``kind`` (kind letters: ``"f"``, ``"iu"``) and its rank ``ndim``, else one line."""
    if kind is not None and x.dtype.kind not in kind:
        wanted = _KINDS.get(kind) or " or ".join(_KINDS.get(k, k) for k in kind)
        raise _bad(what, Path(path), f"holds {x.dtype} values; {wanted} expected")
    if ndim is not None and x.ndim != ndim:
        raise _bad(what, Path(path), f"has {x.ndim} dimensions {tuple(x.shape)}; {ndim} expected")
    return x


def read_array(path: str | Path, what: str, kind: str | None = None, ndim: int | None = None) -> np.ndarray:
    """The one array of a ``.npy`` (or of an ``.npz`` holding exactly one), checked as :func:`check_array` does."""
    arrays = read_arrays(path, what)
    if len(arrays) != 1:
        raise _bad(what, Path(path), f"holds {len(arrays)} arrays ({', '.join(map(repr, arrays))}); one expected")
    return check_array(next(iter(arrays.values())), what, path, kind, ndim)
