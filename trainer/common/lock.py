"""One command at a time per output folder: an advisory lock the kernel releases when its process dies.

Two commands writing one folder would interleave their files; the second refuses with one line
instead. The lock is ``fcntl.flock`` on ``<folder>/.egoedge.lock``: a ``kill -9`` releases it with
the process, so a crashed command never leaves the folder locked. Re-entrant within a process
(``egoedge run`` quantizes into its own run folder).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError

LOCK_NAME = ".egoedge.lock"
_held: dict[Path, int] = {}  # folder -> depth, for this process


def what_folder(command: str) -> str:
    return "run folder" if command.startswith("egoedge run") else "output folder"


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock for ``command``; another process holding it is one clear error.

    Example: ``with folder_lock("runs/quick/export", "egoedge export"): ...``
    """
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise EgoedgeError(f"cannot create {what_folder(command)} {folder}: {e.strerror}; "
                           "choose another --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another egoedge command"
            raise EgoedgeError(f"{folder} is in use by {holder}; wait for it to finish or choose another "
                               "output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"`{command}` (pid {os.getpid()})".encode())
        _held[folder] = 1
        try:
            yield
        finally:
            del _held[folder]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def locks_folder(argument: str, command: str):
    """Decorator: hold the lock of the folder passed as ``argument`` for the whole call.

    Example::

        @locks_folder("out_dir", "egoedge export")
        def export_checkpoint(checkpoint, out_dir, cfg): ...
    """
    import functools
    import inspect

    def wrap(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments[argument]
            with folder_lock(folder, command):
                return function(*args, **kwargs)

        return locked

    return wrap
