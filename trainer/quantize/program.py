"""PTQ programs on disk: ``NAME_int8.pt2`` (a ``torch.export`` program) with ``NAME_int8.json`` beside it.

The program carries its own record (``egoedge_ptq.json`` inside the archive: the checkpoint it was
quantized from and that file's sha256, the quantizer, the modules kept fp32 and the calibration
set), so that a ``.pt2`` is known for a PTQ program without its sidecar. The sidecar ``.json`` holds
the full report (sensitivity, every fallback step, accuracies) and the program's own sha256;
``egoedge export`` reads both and refuses, in one line, a program whose sidecar is missing or
describes another file, or whose checkpoint is not the one it was quantized from.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch

from egoedge.trainer.common.io import EgoedgeError, first_line, sha256_file, write_bytes_atomic

RECORD = "egoedge_ptq.json"  # the record's name inside the .pt2 archive
FORMAT = "egoedge-ptq/1"


def save_program(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, record: dict) -> str:
    """Export ``module`` at ``example``'s shapes and write it with ``record`` inside; returns the file's sha256."""
    program = torch.export.export(module, example, strict=False)
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer, not our temp file
    torch.export.save(program, buffer, extra_files={RECORD: json.dumps({"format": FORMAT, **record})})
    write_bytes_atomic(path, buffer.getvalue())
    return sha256_file(path)


def program_record(path: str | Path) -> dict | None:
    """The PTQ record inside a ``.pt2`` (``None``: not a PTQ program of egoedge, or not a readable archive)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{RECORD}")), None)
            if name is None:
                return None
            record = json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def load_program(path: str | Path) -> torch.nn.Module:
    """A saved program (``*_int8.pt2``) as a runnable module, in any process."""
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401  (registers the quantized_decomposed ops it calls)

    try:
        return torch.export.load(path).module()
    except Exception as e:  # noqa: BLE001 - not a zip, a zip of something else, a truncated archive ...
        raise EgoedgeError(f"{path}: not a readable torch.export program ({type(e).__name__}); re-run "
                           "`egoedge quantize`") from None


def read_ptq(path: str | Path) -> tuple[dict, Path]:
    """The sidecar report of a PTQ program and the checkpoint it was quantized from, both checked.

    Every way the pair can be broken is one line naming the file and what to do.
    """
    path = Path(path)
    record = program_record(path)
    if record is None:
        raise EgoedgeError(f"{path} is not a PTQ program of egoedge (no {RECORD} inside); export your own "
                           "program under another name, or re-run `egoedge quantize`")
    sidecar = path.with_suffix(".json")
    source = path.parent / record["source"]
    redo = f"re-run `egoedge quantize {source}`"
    if not sidecar.is_file():
        raise EgoedgeError(f"{path} has no {sidecar.name} beside it (its fallback and calibration record); "
                           f"copy it with the program or {redo}")
    try:
        report = json.loads(sidecar.read_text())
        made_for = report["artifact_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EgoedgeError(f"{sidecar} is not a PTQ report ({first_line(e)[:80]}); {redo}") from None
    if made_for != sha256_file(path):
        raise EgoedgeError(f"{sidecar.name} describes another program than {path.name} (sha256 {made_for[:12]}…, "
                           f"the file is {sha256_file(path)[:12]}…); {redo}")
    if not source.is_file():
        raise EgoedgeError(f"{path.name} was quantized from {record['source']}, which is not beside it; copy the "
                           "checkpoint there or quantize it again")
    if sha256_file(source) != record["source_sha256"]:
        raise EgoedgeError(f"{path.name} was quantized from another {record['source']} (sha256 "
                           f"{record['source_sha256'][:12]}…, the file is now {sha256_file(source)[:12]}…: trained "
                           f"again since?); {redo}")
    return {**report, "record": record}, source
