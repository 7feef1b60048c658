"""``NAME.gap.json``: each int8 artifact's per-layer numeric gap to float, and the table ``egoedge inspect`` prints.

Which numbers a file holds depends on what can be read for the backend: ONNX Runtime's int8 is its
own QDQ model, so its layers are read from the runtime itself (each op's output exposed, against
the fp32 ONNX model); ExecuTorch, LiteRT and Core ML W8A8 lower the int8 PT2E program whole, and a
delegate does not expose its layers, so theirs are the program's layers in PyTorch against the
float program, and the artifact's own outputs against PyTorch's are in ``output``.
"""

from __future__ import annotations

import json
from pathlib import Path

from egoedge.trainer.common.io import EgoedgeError, write_json_atomic
from egoedge.trainer.quantize.gap import worst

SUFFIX = ".gap.json"
FORMAT = "egoedge-gap/1"
MEASURED = {
    "runtime": "the runtime's own layer outputs, int8 model against fp32 model",
    "program": "the int8 PT2E program this artifact lowers, in PyTorch, against the float program",
}


def gap_path(artifact: Path) -> Path:
    """``export/student_onnx_int8.onnx`` -> ``export/student_onnx_int8.gap.json`` (a folder artifact too)."""
    return artifact.with_name(artifact.name.split(".")[0] + SUFFIX)


def write_gap(out_dir: Path, entry: dict, layers: list[dict], measured: str, samples: int,
              keep_float: tuple[str, ...] = ()) -> str:
    """Write ``entry``'s gap file beside it; returns its name (for the manifest's ``gap``)."""
    path = gap_path(out_dir / entry["file"])
    parity = entry.get("parity") or {}
    write_json_atomic(path, {
        "format": FORMAT, "artifact": entry["file"], "backend": entry["format"], "precision": entry["precision"],
        "measured": measured, "how": MEASURED[measured], "samples": samples, "keep_float": list(keep_float),
        "output": {k: parity[k] for k in ("top1_agreement", "max_abs_diff") if k in parity},
        "layers": layers})
    return path.name


def attach_gap(out_dir: Path, entry: dict, program_layers: list[dict] | None, lowers: bool, samples: int,
               keep_float: tuple[str, ...] = ()) -> None:
    """Write an exported entry's gap file and name it in ``entry["gap"]``: the runtime's own layers where its
    exporter read them (``backend.layer_gap``), else ``program_layers`` if the artifact ``lowers`` that program."""
    layers, measured = (entry.get("backend") or {}).pop("layer_gap", None), "runtime"
    if layers is None and program_layers and lowers:
        layers, measured = program_layers, "program"
    if layers is not None and entry["file"]:
        entry["gap"] = write_gap(out_dir, entry, layers, measured, samples, keep_float)


def read_gap(path: str | Path) -> dict:
    """A gap file, given it or the artifact it belongs to; a missing or broken one is one line."""
    path = Path(path)
    gap = path if path.name.endswith(SUFFIX) else gap_path(path)
    if not gap.is_file():
        raise EgoedgeError(f"{path}: no {gap.name} beside it; int8 artifacts get one from `egoedge export --int8` "
                           "(fp32 artifacts have none)")
    try:
        data = json.loads(gap.read_text())
        if data.get("format") != FORMAT or not isinstance(data.get("layers"), list):
            raise ValueError("not an egoedge gap file")
    except (OSError, ValueError) as e:
        raise EgoedgeError(f"{gap}: not a readable gap file ({e}); export the artifact again") from None
    return data


def _db(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f}"


HEADERS = ("layer", "op", "SQNR dB", "lost here dB", "max |Δ|")


def worst_cells(gap: dict, count: int = 10) -> list[tuple[str, ...]]:
    """The ``count`` layers losing the most SQNR themselves, worst first, as cells under :data:`HEADERS`."""
    return [(r["layer"] or "(model)", r["op"], _db(r["sqnr_db"]), f"{r['lost_db']:+.1f}", f"{r['max_abs']:.3g}")
            for r in worst(gap["layers"], count)]


def worst_table(gap: dict, count: int = 10) -> list[str]:
    """:func:`worst_cells` as markdown table lines (for report.md)."""
    cells = worst_cells(gap, count)
    if not cells:
        return ["(no int8 layer: every layer runs in float)"]
    return ["| " + " | ".join(HEADERS) + " |", "|---|---|---:|---:|---:|",
            *("| " + " | ".join(row) + " |" for row in cells)]


def summary(gap: dict) -> str:
    """One line: how many layers, how many kept float, the output's agreement."""
    layers = gap["layers"]
    floats = sum(not r["int8"] for r in layers)
    out = gap.get("output") or {}
    agree = f", output agrees on {out['top1_agreement']:.2f}%" if "top1_agreement" in out else ""
    return (f"{gap['artifact']}: {len(layers)} layers, {floats} in float{agree}; measured on {gap['samples']} "
            f"samples: {gap['how']}")
