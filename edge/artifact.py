"""One artifact: export it, hash it, verify it, and the manifest entry that says how it went."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from egoedge.edge.exporters import CLIP_IO, EXPORTERS, ExportError, IONames
from egoedge.trainer.common.export_speedups import speed_up_torch_export
from egoedge.trainer.common.io import path_bytes, remove_path, sha256_path
from egoedge.trainer.common.progress import Progress, no_progress


def io_spec(names: list[str], arrays: list[np.ndarray]) -> list[dict]:
    return [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype), "scale": None, "zero_point": None}
            for n, a in zip(names, arrays, strict=True)]


def run_session(session, inputs: tuple[np.ndarray, ...], progress: Progress = no_progress,
                stage: str = "") -> tuple[np.ndarray, ...]:
    """Run a batch-1 session over every sample of ``inputs`` (one ``(N, ...)`` array per model input).

    Returns one ``(N, ...)`` array per model output.
    """
    outs: list[list[np.ndarray]] = []
    n = len(inputs[0])
    for i in range(n):
        got = session([x[i:i + 1] for x in inputs])
        outs.append([o.reshape(1, -1) if o.ndim < 2 else o for o in got])  # some runtimes drop the batch axis
        progress(stage, i + 1, n, {})
    return tuple(np.concatenate(parts) for parts in zip(*outs, strict=True))


# verify(exporter, path, precision, name) -> manifest fields: status, verified, parity, accuracy, reason
Verify = Callable[[object, Path, str, str], dict]


def export_artifact(fmt: str, precision: str, model: torch.nn.Module, example: tuple[torch.Tensor, ...],
                    out_dir: Path, stem: str, calibration: list, entry: dict, verify: Verify,
                    progress: Progress = no_progress, names: IONames = CLIP_IO,
                    program: torch.nn.Module | None = None) -> dict:
    """Export one ``(format, precision)`` artifact, hash it and verify it; returns its manifest entry.

    ``entry`` supplies the task's fields (IO specs, preprocess, labels); ``program`` the int8 PT2E
    program a backend lowers for its static int8 precision (:mod:`edge.int8`). An export error
    becomes a ``failed`` entry with the reason, never an exception.
    """
    speed_up_torch_export()
    exporter = EXPORTERS.get(fmt)
    name = f"{stem}_{fmt}_{precision}"
    entry = {"name": name, "file": f"{name}.{exporter.ext}", "sha256": None, "bytes": None,
             "format": fmt, "precision": precision, **entry,
             "accuracy": None, "parity": None, "status": "failed", "reason": None, "verified": None}
    path = out_dir / entry["file"]
    t0 = time.perf_counter()
    progress(f"export {name}", 0, 1, {})
    # A backend written before int8 programs existed quantizes on its own: only pass one where taken.
    takes = program is not None and "program" in inspect.signature(exporter.export).parameters
    refused: list[str] = []
    while True:
        try:
            # A backend that makes its int8 more than one way says how many (``int8_choices``, the fastest first):
            # one its gate refuses is made again the next way. Others never see ``choice``.
            backend = exporter.export(model, example, path, precision, calibration, names,
                                      **({"program": program} if takes else {}),
                                      **({"choice": len(refused)} if refused else {}))
        except ExportError as e:
            entry["reason"] = str(e)
            remove_path(path)
            entry["file"] = None
            return entry
        entry["export_seconds"] = round(time.perf_counter() - t0, 2)
        entry["inputs"] = backend.pop("inputs", entry["inputs"])
        entry["outputs"] = backend.pop("outputs", entry["outputs"])
        entry["backend"] = backend
        entry["sha256"], entry["bytes"] = sha256_path(path), path_bytes(path)
        entry.update({"accuracy": None, "parity": None, "reason": None}, **verify(exporter, path, precision, name))
        if entry["status"] == "ok" or entry["parity"] is None or len(refused) + 1 >= backend.get("int8_choices", 1):
            break
        refused.append(entry["reason"])
        progress(f"export {name}: the next int8 weights", 0, 1, {})
    if refused:
        backend["refused_choices"] = refused
    return entry


def runtime_failure(exporter, error: BaseException) -> dict:
    """Manifest fields of an artifact whose runtime loads but cannot execute it."""
    return {"status": "failed", "verified": "runtime",
            "reason": f"{exporter.format}: running the artifact failed: {type(error).__name__}: "
                      f"{(str(error).splitlines() or [''])[0][:300]}"}
