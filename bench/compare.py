"""Read a run's report.json back, and line two runs up artifact by artifact."""

from __future__ import annotations

import json
from pathlib import Path

from egoedge.bench.report import row_threads, validate_report
from egoedge.trainer.common.io import EgoedgeError


def load_report(path: str | Path) -> dict:
    """report.json of a run folder (or the file itself), validated against the contract."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise EgoedgeError(f"no report.json at {path}; run `egoedge run` or `egoedge bench` first")
    try:
        report = json.loads(file.read_text())
        validate_report(report)
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
        raise EgoedgeError(f"{file} is not an egoedge report: {e}") from None
    return report


def _key(report: dict, r: dict) -> tuple[str, str, int]:
    return r["name"], r.get("device", "host"), row_threads(report, r)


def compare_reports(base: dict, other: dict) -> list[dict]:
    """One row per result present in both (same name, device and thread count): latency, accuracy, size, change.

    ``speedup`` > 1 means ``other`` is faster; ``top1_delta`` is in points (other − base).
    """
    others = {_key(other, r): r for r in other["results"]}
    rows = []
    for a in base["results"]:
        b = others.get(_key(base, a))
        if b is None:
            continue
        lat_a, lat_b = (a["latency_ms"] or {}).get("median"), (b["latency_ms"] or {}).get("median")
        acc_a, acc_b = (a["accuracy"] or {}).get("top1"), (b["accuracy"] or {}).get("top1")
        rows.append({
            "name": a["name"], "device": a.get("device", "host"), "threads": row_threads(base, a),
            "median_ms": [lat_a, lat_b], "speedup": lat_a / lat_b if lat_a and lat_b else None,
            "top1": [acc_a, acc_b], "top1_delta": acc_b - acc_a if acc_a is not None and acc_b is not None else None,
            "size_bytes": [a["size_bytes"], b["size_bytes"]], "status": [a["status"], b["status"]]})
    return rows


def comparison(base: dict, other: dict, base_label: str, other_label: str, max_slowdown: float = 0.10) -> dict:
    """Everything a comparison says, for report.html: the rows, the guard's regressions and breakages, and
    what only one side has."""
    rows = compare_reports(base, other)
    return {"baseline": base_label, "other": other_label, "rows": rows, "max_slowdown": max_slowdown,
            "regressions": regressions(rows, max_slowdown), "breakages": breakages(base, other),
            "only": {base_label: only_in(base, other), other_label: only_in(other, base)}}


def only_in(base: dict, other: dict) -> list[str]:
    """Names of results in ``base`` with no counterpart in ``other``."""
    keys = {_key(other, r) for r in other["results"]}
    return [r["name"] for r in base["results"] if _key(base, r) not in keys]


def breakages(base: dict, other: dict) -> list[str]:
    """Results that were ``ok`` in ``base`` and are failed or missing in ``other``: a regression too.

    Example: ``["student_onnx_int8: failed now (modified or truncated after export ...)", "student_tflite_w8:
    missing"]``
    """
    others = {_key(other, r): r for r in other["results"]}
    broken = []
    for a in base["results"]:
        if a["status"] != "ok":
            continue
        b = others.get(_key(base, a))
        label = f"{a['name']} @{row_threads(base, a)}t" if len(thread_set(base)) > 1 else a["name"]
        if b is None:
            broken.append(f"{label}: missing")
        elif b["status"] != "ok":
            broken.append(f"{label}: failed now ({(b.get('error') or 'no reason given')[:160]})")
    return broken


def thread_set(report: dict) -> set[int]:
    return {row_threads(report, r) for r in report["results"]}


def check_max_slowdown(max_slowdown: float) -> float:
    """``max_slowdown`` if it is a usable limit (>= 0), else one clear error."""
    if max_slowdown < 0:
        raise EgoedgeError(f"--max-slowdown must be >= 0, got {max_slowdown}")
    return max_slowdown


def regressions(rows: list[dict], max_slowdown: float = 0.10) -> list[str]:
    """The rows of ``compare_reports`` whose median latency grew by more than ``max_slowdown`` (0.10 = 10 %).

    Example: ``regressions(compare_reports(baseline, new))`` -> ``["student_tflite_int8: 4.10 -> 4.90 ms (+20%)"]``
    """
    check_max_slowdown(max_slowdown)
    slower = []
    for r, name in zip(rows, row_labels(rows), strict=True):
        old, new = r["median_ms"]
        if old and new and new / old - 1.0 > max_slowdown:
            slower.append(f"{name}: {old:.2f} -> {new:.2f} ms ({100 * (new / old - 1.0):+.0f}%)")
    return slower


def row_labels(rows: list[dict]) -> list[str]:
    """Each compared row's name, with ``@Nt`` only where rows span several thread counts.

    Example: a sweep gives ``["student @2t", "student @1t"]``; one thread count gives ``["student"]``.
    """
    swept = len({r.get("threads") for r in rows}) > 1
    return [f"{r['name']} @{r['threads']}t" if swept else r["name"] for r in rows]
