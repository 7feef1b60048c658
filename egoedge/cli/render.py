"""How the CLI shows results (rich tables of reports, manifests, speed-ups, profiles, task figures), and the
export body that `egoedge export` and its moved spelling `egoedge nlq export` share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from egoedge.cli.console import RichProgress, console, fail

if TYPE_CHECKING:
    from egoedge.edge.export import ExportConfig

# The terminal table keeps what fits 80 columns; report.md has every column.
TERMINAL_COLUMNS = {"name": "name", "threads": "thr", "size MB": "MB", "median ms": "ms", "p90 ms": "p90",
                    "top-1 %": "top-1", "R1@0.3 %": "R1@.3", "agree %": "agree", "int8 MACs %": "int8 %",
                    "status": "status"}


def results_table(report: dict) -> Table:
    """The report's results as a rich table."""
    from egoedge.bench.report import table_rows

    header, rows = table_rows(report)
    keep = [i for i, h in enumerate(header) if h in TERMINAL_COLUMNS]
    from egoedge.trainer.tasks import task_named

    unit = task_named(report.get("task"), "the report").unit
    table = Table(title=f"egoedge — {report['machine']['cpu']}, {report['machine']['threads']} threads, "
                        f"latency per {unit}")
    for i in keep:
        table.add_column(TERMINAL_COLUMNS[header[i]], justify="left" if header[i] in ("name", "status") else "right",
                         no_wrap=header[i] != "status")
    status = header.index("status")
    for row in rows:
        row = [short_status(cell) if i == status else cell for i, cell in enumerate(row)]
        table.add_row(*[row[i] for i in keep])
    return table


def stages_table(report: dict) -> Table | None:
    """Where the run's time went, stage by stage (report.json's ``stages``)."""
    from egoedge.bench.report import STAGE_HEADER, stage_rows

    rows = stage_rows(report)
    if not rows:
        return None
    total = sum(s["wall_s"] for s in report["stages"])
    table = Table(title=f"stages: {total:.0f} s in all")
    for i, h in enumerate(STAGE_HEADER):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def speedup_table(report: dict) -> Table | str | None:
    """Reduced precision vs fp32 per runtime and thread count, then the fastest artifact vs eager.

    Without reduced-precision artifacts only the fastest-artifact lines remain (a string); with
    neither, None.
    """
    from egoedge.bench.report import SPEEDUP_HEADER, best_vs_eager, speedup_cells, speedups

    rows, best = speedups(report), best_vs_eager(report)
    if not rows and not best:
        return None
    caption = "; ".join(f"fastest at {b['threads']}t: {b['name']} {b['ms']:.3f} ms = {b['speedup']:.2f}x eager"
                        for b in best)
    if not rows:  # an empty table would print only its borders
        return caption
    table = Table(title="speed-ups vs fp32 (same runtime, same threads)", caption=caption or None)
    for h in SPEEDUP_HEADER:
        table.add_column(h, justify="left" if h in ("runtime", "precision", "status") else "right", no_wrap=True)
    for row in rows:
        table.add_row(*speedup_cells(row))
    return table


def profile_tables(report: dict, top: int = 5) -> list[Table]:
    """One small table per profiled row: its ``top`` ops by time per inference."""
    from egoedge.bench.report import profile_rows

    tables = []
    for r in report["results"]:
        prof = r.get("profile")
        if not prof:
            continue
        if "error" in prof:
            console.print(f"{r['name']}: no profile ({prof['error']})", highlight=False)
            continue
        calls = f", {prof['delegate_calls']} delegate calls" if "delegate_calls" in prof else ""
        table = Table(title=f"{r['name']} — top ops ({prof['tool']}, {prof['total_ms']:.3f} ms of kernels per "
                            f"call{calls})")
        for col in ("op", "where", "calls", "ms", "%"):
            table.add_column(col, justify="left" if col in ("op", "where") else "right")
        for row in profile_rows(prof)[:top]:
            table.add_row(*row)
        tables.append(table)
    return tables


def short_status(text: str) -> str:
    """The verdict without its explanation (the files keep the whole reason), to fit a terminal."""
    text = text.split(";")[0].replace("failed: refused by the parity gate:", "refused:")
    return text if len(text) <= 60 else text[:57] + "..."


def print_task_metrics(report: dict) -> None:
    """The task's own figures of every PyTorch model (e.g. NLQ's Recall@K and mIoU), where the task has any."""
    from egoedge.trainer.tasks import task_named

    field = task_named(report.get("task"), "the report").report_field
    first = report["machine"]["threads"]  # a thread sweep repeats the same figures at each count
    rows = {r["name"]: r[field] for r in report["results"]
            if field and r.get(field) and r["format"] == "pytorch" and r.get("threads", first) == first}
    if rows:
        console.print(metrics_table(rows, f"{report['task']}, test split (%)"))


def metrics_table(rows: dict[str, dict], title: str) -> Table:
    """One row per model, one column per figure of its metrics dict."""
    table = Table(title=title)
    cols = list(next(iter(rows.values())))
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in rows.items():
        table.add_row(name, *(f"{m[c]:.2f}" for c in cols))
    return table


ROLE_CELLS = {"clip": "clip", "stream_step": "stream: step", "frame_encoder": "stream: encoder",
              "temporal_head": "stream: head"}


def streaming_table(report: dict) -> Table | None:
    """Per new frame (a fused step, or encoder + head) against the clip artifact of the same backend and precision."""
    from egoedge.bench.report import STREAM_HEADER, stream_cells, stream_rows

    rows = stream_rows(report)
    if not rows:
        return None
    table = Table(title="streaming: per new frame vs the clip artifact (same runtime, same threads)")
    for h in STREAM_HEADER:
        table.add_column(h, justify="left" if h in ("streaming artifact", "form", "runtime", "status") else "right")
    for r in rows:
        table.add_row(*stream_cells(report, r))
    return table


def int8_caption(int8: dict | None) -> str | None:
    """What the int8 artifacts keep fp32, who chose it and how it was calibrated, for the export table's caption."""
    if not int8:
        return None
    kept = ", ".join(int8["keep_float"]) or "nothing (every module int8)"
    why = {"program": f"as in {int8.get('program')}", "user": "as --int8-keep-float asked",
           "gate": "the fewest that pass the parity gate"}.get(int8.get("chosen_by"), "")
    sens = int8.get("sensitivity") or {}
    numbers = ", ".join(f"{m} {sens[m]:.2g}" for m in int8["keep_float"] if m in sens)
    calibrated = (f"; {int8['observer']} observer" + (", bias-corrected" if int8.get("bias_correction") else "")
                  if int8.get("observer") else "")
    return (f"int8 keeps fp32: {kept} ({why}" + (f"; error removed: {numbers}" if numbers else "") + ")"
            + calibrated
            + (f"; program {int8['program']}" if int8.get("program") and int8.get("chosen_by") != "program" else ""))


def manifest_table(manifest: dict, title: str) -> Table:
    """One row per artifact: format, precision, size, parity, accuracy and status (with the reason)."""
    from egoedge.bench.report import agreement_cell

    table = Table(title=title, caption=int8_caption(manifest.get("int8")))
    roles = any(a.get("role", "clip") != "clip" for a in manifest["artifacts"])
    for h, justify in ((("role", "left"),) if roles else ()) + (
            ("format", "left"), ("precision", "left"), ("MB", "right"), ("top-1 %", "right"),
            ("max |Δ|", "right"), ("agree %", "right"), ("status", "left")):
        table.add_column(h, justify=justify)
    for a in manifest["artifacts"]:
        p, acc = a["parity"] or {}, a["accuracy"] or {}
        status = a["status"]
        if a["reason"]:
            status = short_status(f"{status}: {a['reason']}")
        elif (a.get("verified") or "").startswith("spec only"):
            status += " (spec only)"
        role = (ROLE_CELLS.get(a.get("role", "clip"), "clip"),) if roles else ()
        table.add_row(*role, a["format"], a["precision"], f"{a['bytes'] / 2**20:.2f}" if a["bytes"] else "–",
                      f"{acc['top1']:.1f}" if acc else "–", f"{p['max_abs']:.1e}" if p else "–",
                      agreement_cell(p["top1_agreement"], p.get("tie_flips")) if p else "–", status)
    return table


def export_and_show(model: str, inputs, out: Path | None, config: Callable[[], ExportConfig],
                    allow_failed: bool) -> None:
    """``egoedge export``: build the config (its errors are one line too), export into ``out``, show the result.

    ``inputs`` (:class:`edge.foreign.ModelInputs`) is ``None`` for an egoedge checkpoint.
    """
    from egoedge.edge.export import export_checkpoint
    from egoedge.edge.foreign import export_any
    from egoedge.edge.sources import source_of

    cfg = config()
    out = out or source_of(model).default_out(model)
    with RichProgress() as progress:
        if inputs is None:
            manifest = export_checkpoint(model, out, cfg, progress)
        else:
            manifest = export_any(model, out, cfg, inputs, progress)
    print_export(manifest, out, allow_failed)


def print_export(manifest: dict, out: Path, allow_failed: bool) -> None:
    """The artifact table, the PyTorch reference figures, and exit 1 on a failed artifact unless allowed."""
    console.print(manifest_table(manifest, str(out / "manifest.json")))
    src = manifest["source"]
    if src.get("accuracy") or src.get("metrics"):  # your own model without --labels has no accuracy
        figures = src.get("metrics") or {"top-1": src["accuracy"]["top1"], "top-5": src["accuracy"]["top5"]}
        console.print("PyTorch reference: " + ", ".join(f"{k} {v:.1f}%" for k, v in figures.items()), highlight=False)
    fail_on_failed_artifacts(manifest, out, allow_failed)


def fail_on_failed_artifacts(manifest: dict, out: Path, allow_failed: bool) -> None:
    """Exit 1 naming every artifact that failed to export or its gate, unless ``allow_failed``."""
    failed = [a["name"] for a in manifest["artifacts"] if a["status"] != "ok"]
    if failed and not allow_failed:
        fail(f"{len(failed)} artifact(s) failed: {', '.join(failed)} (reasons in {out / 'manifest.json'}; "
             "--allow-failed to accept)")


def cbkd_table(summary: dict, title: str) -> Table:
    """The CBKD stage table (params, MACs, validation score per stage) with the cuts in its caption."""
    from egoedge.trainer.prune.cbkd import stage_table

    unpruned = summary.get("unpruned") or []
    note = (f"; nothing prunable inside {', '.join(unpruned)} (every channel group reaches outside the block)"
            if unpruned else "")
    table = Table(title=title, caption=f"MACs cut {100 * summary['macs_cut']:.1f}%, params cut "
                  f"{100 * summary['params_cut']:.1f}%{note}")
    for col in ("stage", "block", "ratio", "params", "MMACs", f"val {summary.get('metric', 'top1')} %"):
        table.add_column(col, justify="left" if col in ("stage", "block") else "right")
    for r in stage_table(summary):
        table.add_row(r["stage"], r["block"], "–" if r["ratio"] is None else f"{r['ratio']:.2f}", f"{r['params']:,}",
                      f"{r['macs'] / 1e6:.1f}", f"{r['val']:.1f}")
    return table
