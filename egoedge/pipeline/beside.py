"""One call in a spawned child process beside this process's own work: how a run exports two students at once.

Exporting is mostly single-threaded Python (tracing, decompositions, lowering passes), so on a
machine with two cores two exports side by side take little longer than one.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from egoedge.plugins import load_plugins
from egoedge.trainer.common.io import EgoedgeError


class Beside:
    """A call running in a child process; :meth:`result` waits for its value or raises its error as one line."""

    def __init__(self, what: str, fn: Callable[..., Any], args: tuple, threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork after OpenMP has run can deadlock the child
        self.what = what
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(send, fn, args, threads, os.getpid()), name=f"egoedge {what}")
        self._proc.start()
        send.close()

    def result(self) -> Any:
        """The call's return value; an error in the child is an :class:`EgoedgeError` naming ``what``."""
        try:
            kind, value = self._recv.recv()
        except EOFError:  # the child died without answering (killed, out of memory)
            self._proc.join()
            raise EgoedgeError(f"{self.what} ended without a result (its process exit code {self._proc.exitcode})") \
                from None
        self._proc.join()
        if kind == "error":
            raise EgoedgeError(f"{self.what}: {value}")
        return value

    def stop(self) -> None:
        """End the child now (this side failed: its result would be of no use)."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()


@contextmanager
def beside(what: str, fn: Callable[..., Any], args: tuple, threads: int = 1) -> Iterator[Beside]:
    """``fn(*args)`` in a child process for the duration of the block; the child is ended if the block fails.

    Example::

        with beside("export of student", export_checkpoint, (path, folder, cfg)) as other:
            mine = export_checkpoint(path2, folder2, cfg)
            theirs = other.result()
    """
    job = Beside(what, fn, args, threads)
    try:
        yield job
    except BaseException:
        job.stop()
        raise
    job.stop()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """This process's torch intra-op threads set to ``n`` for the block, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel ends this process when its parent dies, so a killed run leaves no export behind."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died while this process was starting, before the signal was armed
        os._exit(1)


def _child(send, fn: Callable[..., Any], args: tuple, threads: int, parent: int) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(threads)
    try:
        load_plugins()  # the parent's registered tasks and backends exist here too
        send.send(("ok", fn(*args)))
    except EgoedgeError as e:
        send.send(("error", str(e)))
    except BaseException as e:  # noqa: BLE001 - the parent reports it; the traceback goes to this stderr
        traceback.print_exc()
        send.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        send.close()
