"""report.json's contract, and report.md + pareto.png drawn from it alone (every file at once: ``report_files``)."""

from __future__ import annotations

from pathlib import Path

from egoedge.trainer.common.io import atomic_write
from egoedge.trainer.tasks import task_named

RESULT_KEYS = ("name", "format", "precision", "device", "runtime", "size_bytes", "params", "macs", "load_ms",
               "latency_ms", "peak_rss_mb", "accuracy", "top1_agreement", "parity_max_abs", "status", "error")
LATENCY_KEYS = ("mean", "median", "p90", "p99", "std", "iterations", "warmup")
MACHINE_KEYS = ("cpu", "cores", "threads", "os", "python", "torch")


def validate_report(report: dict) -> None:
    """Raise ``ValueError`` naming the first field that breaks the report.json contract."""
    for k in MACHINE_KEYS:
        if k not in report.get("machine", {}):
            raise ValueError(f"report.machine lacks '{k}'")
    if not isinstance(report.get("results"), list):
        raise ValueError("report.results must be a list")
    for i, r in enumerate(report["results"]):
        for k in RESULT_KEYS:
            if k not in r:
                raise ValueError(f"report.results[{i}] lacks '{k}'")
        if r["status"] not in ("ok", "failed"):
            raise ValueError(f"report.results[{i}].status is '{r['status']}', not ok|failed")
        if r["status"] == "ok":
            for k in LATENCY_KEYS:
                if k not in (r["latency_ms"] or {}):
                    raise ValueError(f"report.results[{i}].latency_ms lacks '{k}'")


def fmt(v, spec: str, none: str = "–") -> str:
    """``v`` formatted with ``spec``, or a dash for a missing value."""
    return none if v is None else format(v, spec)


def agreement_cell(agreement: float | None, ties: int | None = None, unit: str = "") -> str:
    """Top-1 agreement, with the flips it let pass as ties: ``agreement_cell(99.69, 5, "%")`` is ``99.7% (5 ties)``."""
    return fmt(agreement, ".1f") + (unit if agreement is not None else "") + (
        f" ({ties} tie{'s' if ties > 1 else ''})" if ties else "")


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:.2f}"


def _delegation(d: dict | None) -> str:
    if not d or "delegated_subgraphs" not in d:
        return "–"
    return f"{d['delegated_subgraphs']} / {d.get('portable_nodes', '–')}"


def profile_rows(profile: dict) -> list[list[str]]:
    """A profile's top ops as table cells: op, where it ran, calls and ms per inference, share of kernel time."""
    return [[o["op"], o["where"], fmt(o["calls"], "g"), fmt(o["ms"], ".3f"), fmt(o["pct"], ".1f")]
            for o in profile["ops"]]


def render_profiles(report: dict) -> list[str]:
    """The report.md section with each profiled row's top ops (empty without ``--profile``)."""
    profiled = [r for r in report["results"] if r.get("profile")]
    if not profiled:
        return []
    lines = ["## Where the time goes (top ops per call)", "",
             "Each runtime's own profiler, run after the timing: `ms` and `calls` are per inference, `%` is the "
             "share of the kernel time the profiler saw (profilers add overhead, so totals exceed the timed median).",
             ""]
    for r in profiled:
        prof = r["profile"]
        if "error" in prof:
            lines += [f"**{r['name']}**: no profile ({prof['error']})", ""]
            continue
        lines += [f"**{r['name']}** — {prof['tool']}, {prof['runs']} runs, {prof['total_ms']:.3f} ms of kernels "
                  f"per call, {prof['distinct_ops']} distinct ops"
                  + (f", {prof['delegate_calls']} delegate calls ({prof['portable_ms']:.3f} ms in portable kernels "
                     "between them)" if "delegate_calls" in prof else ""), "",
                  "| op | where | calls | ms | % |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in profile_rows(prof)]
        lines.append("")
    return lines


def row_threads(report: dict, row: dict) -> int:
    """The thread count a row was measured at (rows of older reports: the machine's)."""
    return row.get("threads") or report["machine"]["threads"]


def thread_counts(report: dict) -> list[int]:
    """Every thread count the report's rows were measured at, the main one (``machine.threads``) first."""
    counts = [report["machine"]["threads"]]
    for r in report["results"]:
        if row_threads(report, r) not in counts:
            counts.append(row_threads(report, r))
    return counts


def at_threads(report: dict, threads: int | None = None) -> dict:
    """The report with only the rows measured at ``threads`` (default: the main count)."""
    threads = threads or report["machine"]["threads"]
    return {**report, "results": [r for r in report["results"] if row_threads(report, r) == threads]}


def clip_rows(rows: list[dict]) -> list[dict]:
    """Rows timed per call on the whole input; streaming rows are timed per frame and compared only in their section."""
    return [r for r in rows if r.get("streaming") is None]


def stream_rows(report: dict) -> list[dict]:
    """The streaming artifacts' rows (fused steps and pairs), every thread count."""
    return [r for r in report["results"] if r.get("streaming") is not None]


STREAM_HEADER = ["streaming artifact", "form", "runtime", "precision", "threads", "frame ms", "p90", "clip ms",
                 "frame / clip", "top-1 %", "agree %", "sliding top-1 %", "lag (frames)", "status"]


def ratio_cell(block: dict) -> str:
    """A streaming block's frame / clip ratio; ``apart`` where it comes from two rows rather than timing in turns."""
    return fmt(block.get("ratio"), ".2f") + (" apart" if block.get("timed") == "apart" and block.get("ratio") else "")


def stream_cells(report: dict, r: dict) -> list[str]:
    """One streaming row as table cells (report.md and the terminal)."""
    s = r["streaming"]
    frame = s.get("frame_ms") or {}
    sliding = s.get("sliding") or {}
    lag = sliding.get("lag_frames_median")
    return [r["name"], s.get("form", "pair"), r["runtime"], r["precision"], str(row_threads(report, r)),
            fmt(frame.get("median"), ".3f"),
            fmt(frame.get("p90"), ".3f"), fmt(s.get("clip_ms"), ".3f"),
            ratio_cell(s),
            fmt((r["accuracy"] or {}).get("top1"), ".1f"), agreement_cell(r["top1_agreement"], r.get("tie_flips")),
            fmt(sliding.get("top1"), ".1f"),
            "–" if lag is None else f"{lag:.0f} (median of {sliding['followed']}, {sliding['missed']} missed)",
            "ok" if r["status"] == "ok" else f"failed: {r['error']}"]


def render_streaming(report: dict) -> list[str]:
    """The report.md section on streaming artifacts."""
    rows = stream_rows(report)
    if not rows:
        return []
    window = rows[0]["streaming"].get("window")
    lines = ["## Streaming", "",
             f"A step is one call per new frame, the last {window} embeddings carried as its own inputs and outputs; "
             f"a pair is a frame encoder plus a temporal head over the last {window} embeddings, kept by the caller. "
             "`frame ms` is the steady-state cost of one new camera frame (the window full); `clip ms` "
             "the clip artifact of the same runtime and precision, which recomputes every frame of the window, "
             "timed in turns with the frame in a fresh process (five calls each, alternating), so their ratio "
             "does not move with the machine's speed between rows; a ratio marked `apart` comes from the two "
             "rows (a phone, an in-process bench). "
             "Top-1 and agreement: each test clip played frame by frame, scored at its last frame. Sliding: the "
             "test clips played back to back, every step from the first full window scored against the action of "
             "its newest frame; lag is how many frames of a new action pass before the prediction names it.", "",
             "| " + " | ".join(STREAM_HEADER) + " |", "|" + "---|" * len(STREAM_HEADER)]
    lines += ["| " + " | ".join(stream_cells(report, r)) + " |" for r in rows]
    return lines + [""]


def _reference(rows: list[dict]) -> dict | None:
    """The eager fp32 model every artifact was compared with (it agrees with itself exactly)."""
    eager = [r for r in rows if r["format"] == "pytorch" and r["status"] == "ok" and r["latency_ms"]]
    exact = [r for r in eager if r["parity_max_abs"] == 0.0]
    named = [r for r in eager if r["name"] == "student"]
    return (named or exact or [None])[0]


def fp32_name(name: str) -> str:
    """The name of the fp32 artifact a reduced-precision one was exported beside (same student, same backend).

    Example: ``fp32_name("student_cbkd_onnx_int8@android")`` is ``"student_cbkd_onnx_fp32@android"``.
    """
    base, at, device = name.partition("@")
    return f"{base.rsplit('_', 1)[0]}_fp32{at}{device}"


def speedups(report: dict) -> list[dict]:
    """Each reduced-precision artifact against the fp32 artifact of its student and runtime, at the same thread count.

    Rows: ``{"threads", "name", "format", "runtime", "precision", "fp32_ms", "ms", "speedup", "size_ratio",
    "top1_delta", "delegation": [fp32, this], "peak_pct": [fp32, this], "status"}``, gate-refused artifacts
    included (their speed is a measured fact) with their status.
    """
    out = []
    for threads in thread_counts(report):
        rows = [r for r in clip_rows(at_threads(report, threads)["results"])
                if r["format"] != "pytorch" and (r["latency_ms"] or {}).get("median")]
        fp32 = {r["name"]: r for r in rows if r["precision"] == "fp32" and r["status"] == "ok"}
        for r in rows:
            base = fp32.get(fp32_name(r["name"]))
            if base is None or r is base:
                continue
            acc, base_acc = (r["accuracy"] or {}).get("top1"), (base["accuracy"] or {}).get("top1")
            out.append({"threads": threads, "name": r["name"], "device": r.get("device", "host"),
                        "format": r["format"], "runtime": r["runtime"], "precision": r["precision"],
                        "fp32_ms": base["latency_ms"]["median"], "ms": r["latency_ms"]["median"],
                        "speedup": base["latency_ms"]["median"] / r["latency_ms"]["median"],
                        "size_ratio": r["size_bytes"] / base["size_bytes"],
                        "top1_delta": acc - base_acc if acc is not None and base_acc is not None else None,
                        "delegation": [_delegation(base.get("delegation")), _delegation(r.get("delegation"))],
                        "peak_pct": [base.get("peak_pct"), r.get("peak_pct")], "status": r["status"]})
    return out


def best_vs_eager(report: dict) -> list[dict]:
    """Per thread count, the fastest host artifact against the eager fp32 model it came from."""
    out = []
    for threads in thread_counts(report):
        rows = clip_rows(at_threads(report, threads)["results"])
        ref = _reference(rows)
        artifacts = [r for r in rows if r["format"] != "pytorch" and r["status"] == "ok" and r["latency_ms"]
                     and _on_host(r)]
        if ref is None or not artifacts:
            continue
        best = min(artifacts, key=lambda r: r["latency_ms"]["median"])
        out.append({"threads": threads, "name": best["name"], "runtime": best["runtime"],
                    "ms": best["latency_ms"]["median"], "eager_ms": ref["latency_ms"]["median"],
                    "speedup": ref["latency_ms"]["median"] / best["latency_ms"]["median"],
                    "peak_pct": best.get("peak_pct")})
    return out


def mostly_float(row: dict) -> bool:
    """Whether an int8 row runs under half its MACs in int8 (its recipe kept most of the model fp32)."""
    return bool((row.get("int8") or {}).get("mostly_float"))


def int8_cell(row: dict) -> str:
    """The share of an int8 row's MACs that run in int8 (and of its weights stored 8-bit, where measured),
    flagged when under half."""
    int8 = row.get("int8") or {}
    weights = int8.get("weights_int8_pct")
    return (fmt(int8.get("macs_int8_pct"), ".1f") + (f" · weights {weights:.1f}" if weights is not None else "")
            + (" (mostly float)" if mostly_float(row) else ""))


def precision_label(row: dict) -> str:
    """The row's precision as the tables print it: ``int8 (mostly float)`` when it is."""
    return f"{row['precision']} (mostly float)" if mostly_float(row) else row["precision"]


def ship_choice(report: dict, exports: dict[str, str]) -> dict | None:
    """The artifact to ship: the fastest host artifact that passed its parity gate, at the main thread count.

    An "int8" artifact with most of its MACs left in float is not a candidate: it is not what it is called.

    ``exports`` maps each student's artifact-name stem to its export folder (``{"student_cbkd": "export_cbkd"}``).
    """
    rows = [r for r in clip_rows(at_threads(report)["results"])
            if r["format"] != "pytorch" and r["status"] == "ok" and (r["latency_ms"] or {}).get("median")
            and _on_host(r) and not mostly_float(r)]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["latency_ms"]["median"])
    stems = [s for s in exports if best["name"].startswith(s + "_")]
    stem = max(stems, key=len) if stems else None
    return {"name": best["name"], "format": best["format"], "precision": best["precision"], "runtime": best["runtime"],
            "median_ms": best["latency_ms"]["median"], "top1": (best["accuracy"] or {}).get("top1"),
            "student": stem, "export": exports.get(stem) if stem else None}


def ship_line(ship: dict) -> str:
    """The report's one line naming the artifact to ship."""
    top1 = f", top-1 {ship['top1']:.1f}%" if ship.get("top1") is not None else ""
    where = f", in {ship['export']}/" if ship.get("export") else ""
    return (f"{ship['name']} ({ship['runtime']}, {ship['precision']}): {ship['median_ms']:.3f} ms{top1}{where} "
            "(the fastest artifact that passed its parity gate)")


def speedup_cells(row: dict) -> list[str]:
    """One ``speedups`` row as table cells (report.md and the terminal)."""
    where = row["runtime"] + ("" if _on_host(row) else f" on {row['device']}")
    return [row.get("name", "–"), where, str(row["threads"]), row["precision"], fmt(row["fp32_ms"], ".3f"),
            fmt(row["ms"], ".3f"),
            f"{row['speedup']:.2f}x", fmt(row["top1_delta"], "+.1f"),
            "–" if set(row["delegation"]) == {"–"} else " → ".join(row["delegation"]),
            " / ".join(fmt(p, ".0f") for p in row["peak_pct"]), "ok" if row["status"] == "ok" else "refused"]


SPEEDUP_HEADER = ["artifact", "runtime", "threads", "precision", "fp32 ms", "ms", "speed-up", "Δ top-1",
                  "delegate calls", "% peak fp32 / this", "status"]


def render_speedups(report: dict) -> list[str]:
    """The report.md section: reduced precision vs fp32 per runtime and thread count, and the best vs eager."""
    rows = speedups(report)
    best = best_vs_eager(report)
    if not rows and not best:
        return []
    lines = ["## Speed-ups", ""]
    if rows:
        lines += ["Each reduced-precision artifact against the fp32 artifact of its own student and runtime at the "
                  "same thread count (`% peak`: each against the GEMM peak of its arithmetic at that count; delegate "
                  "calls for ExecuTorch, fp32 → this).", "",
                  "| " + " | ".join(SPEEDUP_HEADER) + " |", "|" + "---|" * len(SPEEDUP_HEADER)]
        lines += ["| " + " | ".join(speedup_cells(r)) + " |" for r in rows]
        lines.append("")
    for b in best:
        lines.append(f"- fastest artifact at {b['threads']} thread{'s' if b['threads'] > 1 else ''}: {b['name']} "
                     f"({b['runtime']}), {b['ms']:.3f} ms, {b['speedup']:.2f}x the eager fp32 model"
                     + (f", {b['peak_pct']:.0f}% of the peak" if b.get("peak_pct") is not None else ""))
    return lines + ([""] if best else [])


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table, shared by report.md and the CLI's rich table.

    A report measured at several thread counts gets a ``threads`` column.
    """
    swept = len(thread_counts(report)) > 1
    header = ["name", "format", "precision", "runtime", *(["threads"] if swept else []), "size MB", "params M",
              "GMACs", "median ms", "p90 ms",
              "GMAC/s", "% peak", "peak RSS MB", task_named(report.get("task"), "the report").metric_column,
              "agree %", "max abs Δ", "int8 MACs %", "delegate calls / portable ops", "status"]
    rows = []
    for r in clip_rows(report["results"]):
        lat = r["latency_ms"] or {}
        acc = r["accuracy"] or {}
        rows.append([
            r["name"], r["format"], precision_label(r), r["runtime"], *([str(row_threads(report, r))] if swept else []),
            _mb(r["size_bytes"]),
            fmt(r["params"] and r["params"] / 1e6, ".2f"), fmt(r["macs"] and r["macs"] / 1e9, ".3f"),
            fmt(lat.get("median"), ".2f"), fmt(lat.get("p90"), ".2f"),
            fmt(r.get("gmacs_per_s"), ".1f"), fmt(r.get("peak_pct"), ".1f"),
            fmt(r["peak_rss_mb"], ".0f"),
            fmt(acc.get("top1"), ".1f"), agreement_cell(r["top1_agreement"], r.get("tie_flips")),
            fmt(r["parity_max_abs"], ".1e"),
            int8_cell(r), _delegation(r.get("delegation")),
            r["status"] if r["status"] == "ok" else f"failed: {r['error']}",
        ])
    return header, rows


def render_worst_layers(report: dict) -> list[str]:
    """Each int8 artifact's five layers losing the most SQNR themselves (from its ``NAME.gap.json``)."""
    rows = [r for r in clip_rows(at_threads(report)["results"]) if (r.get("int8") or {}).get("worst_layers")]
    if not rows:
        return []
    lines = ["## int8: worst layers", "",
             "Per int8 artifact, the five layers whose own int8 arithmetic or output quantization loses the most "
             "SQNR against float (`egoedge inspect ARTIFACT` lists more). *lost here*: the layer's output SQNR "
             "below its input's; *runtime*: read from the runtime's own layer outputs, *program*: from the int8 "
             "program the artifact lowers.", "",
             "| artifact | layer | op | SQNR dB | lost here dB | max abs Δ | measured |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        for w in r["int8"]["worst_layers"]:
            sqnr = "exact" if w["sqnr_db"] is None else f"{w['sqnr_db']:.1f}"
            lines.append(f"| {r['name']} | {w['layer'] or '(model)'} | {w['op']} | {sqnr} | {w['lost_db']:+.1f} | "
                         f"{w['max_abs']:.3g} | {w['measured']} |")
    return lines + [""]


def render_markdown(report: dict) -> str:
    """The human-readable report."""
    m = report["machine"]
    header, rows = table_rows(report)
    lines = ["# egoedge report", "",
             f"Machine: {m['cpu']} ({m['cores']} cores), {m['threads']} threads, {m['os']}, "
             f"Python {m['python']}, torch {m['torch']}."]
    peaks = m.get("peak_gmacs_by_threads") or ({str(m["threads"]): m["peak_gmacs"]} if m.get("peak_gmacs") else {})
    for threads, peak in peaks.items():
        if peak:
            plural = "" if str(threads) == "1" else "s"
            lines.append(f"Measured GEMM peak at {threads} thread{plural}: fp32 {peak['fp32']:.1f} GMAC/s, "
                         f"int8 {peak['int8']:.1f} GMAC/s (`% peak` compares each row with the one "
                         "matching its arithmetic and thread count).")
    lines.append("")
    for key, value in report.get("summary", {}).items():
        lines.append(f"- {key}: {value}")
    if report.get("summary"):
        lines.append("")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    note = task_named(report.get("task"), "the report").report_note
    lines += ["", note + " Peak RSS is the whole "
              "process while the target loaded and ran (it includes everything resident before). Delegate calls / "
              "portable ops: for ExecuTorch, how many XNNPACK subgraphs the graph was cut into and how many nodes "
              "run in portable kernels between them (fewer is faster).", "",
              "![pareto](pareto.png)", ""]
    lines += render_speedups(report)
    lines += render_worst_layers(report)
    lines += render_streaming(report)
    lines += render_profiles(report)
    lines += render_stages(report)
    return "\n".join(lines)


def stage_rows(report: dict) -> list[list[str]]:
    """One row per stage of the run (``report["stages"]``): name, wall s, CPU s, cores busy, share of the run."""
    stages = report.get("stages") or []
    total = sum(s["wall_s"] for s in stages) or 1.0
    return [[s["name"] + (" (reused)" if s.get("reused") else ""), f"{s['wall_s']:.1f}", f"{s['cpu_s']:.1f}",
             fmt(s["cpu_s"] / s["wall_s"] if s["wall_s"] else None, ".1f"), f"{100 * s['wall_s'] / total:.0f}"]
            for s in stages]


STAGE_HEADER = ["stage", "wall s", "CPU s", "cores busy", "% of run"]


def render_stages(report: dict) -> list[str]:
    """The report.md section: where the run's time went, stage by stage."""
    rows = stage_rows(report)
    if not rows:
        return []
    return ["## Where the run's time went", "", "| " + " | ".join(STAGE_HEADER) + " |",
            "|" + "---|" * len(STAGE_HEADER), *("| " + " | ".join(r) + " |" for r in rows), ""]


def plot_pareto(report: dict, path: str | Path) -> Path:
    """Latency (x, log) vs top-1 (y), marker area proportional to file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ok = [r for r in clip_rows(at_threads(report)["results"])
          if r["status"] == "ok" and r["accuracy"] and r["latency_ms"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    largest = max((r["size_bytes"] for r in ok), default=1)
    colors = {"pytorch": "tab:blue", "executorch": "tab:orange", "tflite": "tab:green", "onnx": "tab:purple",
              "coreml": "tab:red"}
    points, labels = [], []
    ship = (report.get("ship") or {}).get("name")
    for r in sorted(ok, key=lambda r: r["latency_ms"]["median"]):
        x, y = r["latency_ms"]["median"], r["accuracy"]["top1"]
        ax.scatter(x, y, s=60 + 1500 * r["size_bytes"] / largest, alpha=0.6,
                   color=colors.get(r["format"], "tab:gray"), edgecolors="black", linewidths=0.6)
        if r["name"] == ship:
            ax.scatter(x, y, s=(60 + 1500 * r["size_bytes"] / largest) * 2.2, facecolors="none", edgecolors="red",
                       linewidths=1.8, zorder=5)
        points.append((x, y))
        labels.append(("SHIP: " if r["name"] == ship else "")
                      + f"{r['name'].removeprefix('student_').replace('_', ' ')}\n{r['size_bytes'] / 2**20:.1f} MB")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    for fmt in sorted({r["format"] for r in ok}):
        ax.scatter([], [], color=colors.get(fmt, "tab:gray"), label=fmt, s=40)
    if ship and any(r["name"] == ship for r in ok):
        ax.scatter([], [], facecolors="none", edgecolors="red", linewidths=1.8, s=60, label="to ship")
    if ok:
        ax.legend(loc="lower right", fontsize=8, title="format", title_fontsize=8)
    ax.set_xlabel("median latency per clip (ms, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    m = report["machine"]
    ax.set_title(f"accuracy vs latency — {m['cpu'][:40]}, {m['threads']} threads\nmarker area ∝ file size",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ok:
        lo = min(r["accuracy"]["top1"] for r in ok)
        ax.set_ylim(max(0, lo - 10), 102)
        xs = [r["latency_ms"]["median"] for r in ok]
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.5)
    fig.tight_layout()
    place_labels(ax, points, labels)
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


# Offsets (points) tried for each label, nearest first: right of the marker above and below, then
# left, then further out; a label that fits nowhere takes the least crowded place and a leader line.
# A two-line label at 7.5 pt is about 19 points tall: the rings are 22 points apart.
_LABEL_OFFSETS = [(dx, dy) for dy in (6, -28, 28, -50, 50, -72, 72, -94, 94, -116) for dx in (6, -6)]


def place_labels(ax, points: list[tuple[float, float]], labels: list[str], fontsize: float = 7.5) -> list:
    """Annotate each point with its label where it overlaps no label placed before it; returns the texts.

    Call it after the axes' limits and scales are final: placement works in display coordinates.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed, texts = [], []

    def annotate(label, xy, offset, leader):
        return ax.annotate(label, xy, textcoords="offset points", xytext=offset, fontsize=fontsize,
                           ha="left" if offset[0] > 0 else "right", va="bottom",
                           arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.45"} if leader else None)

    for xy, label in zip(points, labels, strict=True):
        best = None
        for offset in _LABEL_OFFSETS:
            text = annotate(label, xy, offset, False)
            box = text.get_window_extent(renderer)
            text.remove()
            clash = sum(_overlap(box, other) for other in placed) + (0 if _inside(box, frame) else 1e6)
            if best is None or clash < best[0]:
                best = (clash, offset, box)
            if clash == 0:
                break
        _, offset, box = best
        texts.append(annotate(label, xy, offset, leader=abs(offset[1]) > 28))
        placed.append(box)
    return texts


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def _on_host(row: dict) -> bool:
    return row.get("device", "host") == "host"


def faster(speedup: float) -> str:
    """A speed ratio as a reader says it: ``faster(2.0)`` is "2.00x faster", ``faster(0.9)`` "1.11x slower"."""
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"


def summarize(report: dict) -> dict[str, str]:
    """The headline ratios at the main thread count: teacher vs student size and speed, accuracies, artifact parity."""
    report = at_threads(report)
    by = {r["name"]: r for r in report["results"] if r["status"] == "ok"}
    s: dict[str, str] = {}
    if report.get("ship"):
        s["artifact to ship"] = ship_line(report["ship"])
    t, st = by.get("teacher"), by.get("student")
    if t and st:
        s["teacher/student params"] = f"{t['params'] / st['params']:.1f}x ({t['params'] / 1e6:.2f}M vs " \
                                      f"{st['params'] / 1e6:.2f}M)"
        s["teacher/student latency"] = f"{t['latency_ms']['median'] / st['latency_ms']['median']:.2f}x"
        if t["accuracy"] and st["accuracy"]:
            s["top-1 teacher / student"] = f"{t['accuracy']['top1']:.1f}% / {st['accuracy']['top1']:.1f}%"
    probe = report.get("run", {}).get("linear_probe_top1")
    if probe is not None:
        s["linear probe on raw pixels (top-1)"] = f"{probe:.1f}%"
    for r in clip_rows(report["results"]):
        if r["format"] == "pytorch" or r["status"] != "ok":
            continue
        agree = agreement_cell(r["top1_agreement"], r.get("tie_flips"), "%")
        parity = f"max |Δ| {fmt(r['parity_max_abs'], '.1e')}, agreement {agree}"
        if _on_host(r) and st:
            s[f"{r['name']} vs eager student"] = (
                f"{faster(st['latency_ms']['median'] / r['latency_ms']['median'])}, {parity}")
        elif not _on_host(r):  # another machine: its own numbers, no ratio to the host's eager model
            s[r["name"]] = f"{r['latency_ms']['median']:.2f} ms on {r['device']} ({r['runtime']}), {parity}"
    if st:  # report is at one thread count: at most one fastest artifact
        for best in best_vs_eager(report):
            s["fastest artifact vs eager student"] = (
                f"{best['name']} ({best['runtime']}), {best['speedup']:.2f}x"
                + (f", {best['peak_pct']:.0f}% of the measured peak" if best.get("peak_pct") is not None else ""))
    # Reduced precisions against their own backend's fp32, gate-refused ones included (marked):
    # their speed and size are measured facts even when their predictions were not accepted.
    for x in speedups(report):
        line = f"size {x['size_ratio']:.2f}x, {faster(x['speedup'])}"
        if x["top1_delta"] is not None:
            line += f", top-1 {x['top1_delta']:+.1f} points"
        if x["status"] != "ok":
            line += ", refused by the parity gate"
        s[f"{x['name']} vs fp32"] = line
    timed = [r for r in stream_rows(report) if r["status"] == "ok" and r["streaming"].get("ratio")]
    if timed:
        ratios = sorted(r["streaming"]["ratio"] for r in timed)
        best = min(timed, key=lambda r: r["streaming"]["frame_ms"]["median"])
        s["streaming per frame vs clip"] = (
            f"{ratios[0]:.2f}-{ratios[-1]:.2f}x the clip artifact's latency over the {len(timed)} steps and pairs "
            f"that passed their gate; fastest "
            f"{best['name']}, {best['streaming']['frame_ms']['median']:.3f} ms per new frame")
    return s
