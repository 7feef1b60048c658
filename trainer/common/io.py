"""Atomic file writes and hashing: a killed process never leaves a half-written output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The process's umask, read once at import (reading it means setting it, which is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would (``mkstemp`` makes it owner-only),
    so a run folder on a shared machine reads like any other.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def write_csv_atomic(path: str | Path, rows: list[list]) -> Path:
    """Write ``rows`` (the header first) as a CSV file atomically."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return atomic_write(path, lambda p: p.write_text(buf.getvalue()))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """Hex sha256 of a file, or of a folder (every file's relative path and bytes, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def path_bytes(path: str | Path) -> int:
    """Size of a file, or the total size of the files in a folder (a ``.mlpackage`` is a folder)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def remove_path(path: str | Path) -> None:
    """Delete a file or a folder if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def atomic_write_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir_path)`` (which creates it) then swap the result onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real extension last: writers such as MLModel.save check it, and create the folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent))
    tmp.rmdir()
    try:
        write(tmp)
        remove_path(path)
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    return path


class EgoedgeError(RuntimeError):
    """An error the CLI shows as one line (what, where, what to do) without a traceback."""


def first_line(error: BaseException) -> str:
    """An exception's first non-empty line, or its type's name when it has no message (for one-line errors)."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
