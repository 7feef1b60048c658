"""The ``egoedge`` command line. Each command builds a config, calls one library function, renders."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from bench.console import Preset, RichProgress, console, err_console, fail, parse_backends
from bench.pipeline import resolve_config
from trainer.common.io import EgoedgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="egoedge: egocentric-video teachers -> distilled students -> phone-ready artifacts.")


# The terminal table keeps what fits 80 columns; report.md has every column.
TERMINAL_COLUMNS = {"name": "name", "threads": "thr", "size MB": "MB", "median ms": "ms", "p90 ms": "p90",
                    "top-1 %": "top-1", "R1@0.3 %": "R1@.3", "agree %": "agree", "status": "status"}


def results_table(report: dict) -> Table:
    """The report's results as a rich table."""
    from bench.report import table_rows

    header, rows = table_rows(report)
    keep = [i for i, h in enumerate(header) if h in TERMINAL_COLUMNS]
    table = Table(title=f"egoedge — {report['machine']['cpu']}, {report['machine']['threads']} threads, "
                        f"latency per {'query' if report.get('task') == 'nlq' else 'clip'}")
    for i in keep:
        table.add_column(TERMINAL_COLUMNS[header[i]], justify="left" if header[i] in ("name", "status") else "right",
                         no_wrap=header[i] != "status")
    status = header.index("status")
    for row in rows:
        row = [short_status(cell) if i == status else cell for i, cell in enumerate(row)]
        table.add_row(*[row[i] for i in keep])
    return table


def speedup_table(report: dict) -> Table | str | None:
    """Reduced precision vs fp32 per runtime and thread count, then the fastest artifact vs eager.

    Without reduced-precision artifacts only the fastest-artifact lines remain (a string); with
    neither, None.
    """
    from bench.report import SPEEDUP_HEADER, best_vs_eager, speedup_cells, speedups

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
    from bench.report import profile_rows

    tables = []
    for r in report["results"]:
        prof = r.get("profile")
        if not prof:
            continue
        if "error" in prof:
            console.print(f"{r['name']}: no profile ({prof['error']})", highlight=False)
            continue
        table = Table(title=f"{r['name']} — top ops ({prof['tool']}, {prof['total_ms']:.3f} ms of kernels per call)")
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


@app.command()
def run(
    preset: Preset = typer.Option("quick", help="quick: about 14 min on 2 CPU cores; full: GPU-sized; mini: seconds."),
    data: str = typer.Option("synthetic", help="Dataset: 'synthetic' (the generated egocentric clips)."),
    out: Path = typer.Option(None, help="Run folder (default runs/<preset>)."),
    config: Path = typer.Option(None, help="YAML/JSON overrides of the preset (any part of run_config.yaml)."),
    recipe: str = typer.Option(None, help="Distillation recipe of the student (default clip_kd); see `egoedge "
                               "train student --help`."),
    student: str = typer.Option(None, help="Student as ARCH:VARIANT or a bare variant: resnet:r10_48 (the quick "
                                "default; r10_16, r10_16_e128, r10_32, r10_48, r10_64, r18_32: dense convs, the ones "
                                "int8 speeds up most), mobilevit:xxs (micro, tiny, xxs, xs, s; the full preset's), "
                                "mobilenet:v4_small (v4_small_035, v4_small_050, v4_small, v2_050, lite0)."),
    alpha: float = typer.Option(None, help="Weight of the feature-KD term (default 1.0)."),
    beta: float = typer.Option(None, help="Weight of the response-KD term (default 1.0)."),
    gamma: float = typer.Option(None, help="Weight of the cross-entropy term (default 0.5)."),
    temperature: float = typer.Option(None, help="KD temperature T (default 4.0)."),
    threads: int = typer.Option(None, help="Threads for every runtime in the bench (default 2)."),
    iterations: int = typer.Option(None, help="Timed iterations per benchmark target."),
    task: str = typer.Option(None, help="recognition (default), anticipation, or nlq (the Ego4D NLQ family: "
                             "VSLBase/VSLNet/FiLM, DeepVSLNet -> LightVSLNet -> CBKD -> int8, exported; writes "
                             "nlq_*.json)."),
    film: str = typer.Option(None, help="--task nlq: the FiLM modes trained as extra VSLNets, comma-separated, or "
                             "'all' (default: the preset's, inside_encoder:after_pos for quick)."),
) -> None:
    """Train a teacher, distil a student, export it, benchmark everything, write the report.

    Example: egoedge run --preset quick --out runs/quick
             egoedge run --task nlq --out runs/nlq
    """
    from bench.pipeline import run as run_pipeline

    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    if iterations is not None and iterations < 1:
        fail(f"--iterations must be >= 1, got {iterations}")
    if task == "nlq":
        return _run_nlq(preset, data, out, threads, iterations, film)
    if film is not None:
        fail("--film applies to --task nlq only")
    try:
        if data != "synthetic":
            raise EgoedgeError(f"unknown dataset '{data}'; available: synthetic")
        cfg = resolve_config(preset.value, config, recipe=recipe, student_variant=student, alpha=alpha, beta=beta,
                             gamma=gamma, task=task,
                             temperature=temperature, threads=threads, iterations=iterations)
        out = out or Path("runs") / preset.value
        with RichProgress() as progress:
            report = run_pipeline(cfg, out, progress)
    except EgoedgeError as e:
        fail(str(e))
    console.print(results_table(report))
    for key, value in report["summary"].items():
        console.print(f"  [bold]{key}:[/] {value}", highlight=False, soft_wrap=True)
    for name in ("report.json", "report.md", "pareto.png"):
        console.print(f"{name}: {out / name}", highlight=False)


def _run_nlq(preset, data: str, out: Path | None, threads: int | None, iterations: int | None,
             film: str | None) -> None:
    from dataclasses import replace

    from bench.cli_nlq import metrics_table
    from bench.nlq import film_modes, nlq_preset, run_nlq

    try:
        if data != "synthetic":
            raise EgoedgeError(f"unknown dataset '{data}' for --task nlq; available: synthetic "
                               "(train on your own Ego4D features with `egoedge nlq train --data DIR`)")
        cfg = nlq_preset(preset.value)
        bench = replace(cfg.bench, **{k: v for k, v in (("threads", threads), ("iterations", iterations))
                                      if v is not None})
        cfg = replace(cfg, bench=bench, film=cfg.film if film is None else film_modes(film))
        out = out or Path("runs") / f"nlq-{preset.value}"
        with RichProgress() as progress:
            report = run_nlq(cfg, out, progress)
    except EgoedgeError as e:
        fail(str(e))
    rows = {r["name"]: r["nlq"] for r in report["results"] if r.get("nlq") and r["format"] == "pytorch"}
    console.print(metrics_table(rows, "Ego4D NLQ, test split (official metrics, %)"))
    console.print(results_table(report))
    for key, value in report["summary"].items():
        console.print(f"  [bold]{key}:[/] {value}", highlight=False, soft_wrap=True)
    for name in ("nlq_predictions.json", "nlq_metrics.json", "report.json", "report.md", "pareto.png"):
        console.print(f"{name}: {out / name}", highlight=False)


def _all_backends() -> str:
    from edge.exporters import EXPORTERS

    return ",".join(EXPORTERS.keys())


def manifest_table(manifest: dict, title: str) -> Table:
    """One row per artifact: format, precision, size, parity, accuracy and status (with the reason)."""
    table = Table(title=title)
    for h, justify in (("format", "left"), ("precision", "left"), ("MB", "right"), ("top-1 %", "right"),
                       ("max |Δ|", "right"), ("agree %", "right"), ("status", "left")):
        table.add_column(h, justify=justify)
    for a in manifest["artifacts"]:
        p, acc = a["parity"] or {}, a["accuracy"] or {}
        status = a["status"]
        if a["reason"]:
            status = short_status(f"{status}: {a['reason']}")
        elif (a.get("verified") or "").startswith("spec only"):
            status += " (spec only)"
        table.add_row(a["format"], a["precision"], f"{a['bytes'] / 2**20:.2f}" if a["bytes"] else "–",
                      f"{acc['top1']:.1f}" if acc else "–", f"{p['max_abs']:.1e}" if p else "–",
                      f"{p['top1_agreement']:.1f}" if p else "–", status)
    return table


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="An egoedge checkpoint (e.g. runs/quick/student.pt)."),
    to: str = typer.Option(None, help="Comma-separated backends (default: all of executorch,coreml,tflite,onnx)."),
    int8: bool = typer.Option(False, "--int8", help="Also make each backend's int8 artifacts (calibrated)."),
    precision: str = typer.Option(None, help="Exact precisions instead, comma-separated: fp32,fp16,int8,w8,w8a8."),
    calib: int = typer.Option(256, help="Calibration clips drawn from the checkpoint's training split."),
    calib_file: Path = typer.Option(None, help="Use preprocessed clips from this .npy (N,T,3,H,W) instead."),
    int8_keep_float: str = typer.Option(None, help="Comma-separated modules the int8 artifacts keep fp32, e.g. "
                                        "pool,head (default: none; the quick run keeps pool,head)."),
    out: Path = typer.Option(None, help="Output folder (default: export/ beside the checkpoint)."),
    parity_samples: int = typer.Option(32, help="Held-out clips in the parity batch."),
    fp32_tol: float = typer.Option(1e-4, help="fp32 gate: max |logit difference| to PyTorch."),
    int8_agreement: float = typer.Option(99.0, help="int8 gate: minimum top-1 agreement with PyTorch (%)."),
    int8_drop: float = typer.Option(1.0, help="int8 gate: maximum top-1 accuracy drop (points)."),
    allow_failed: bool = typer.Option(False, help="Exit 0 even if an artifact fails to export or its gate."),
) -> None:
    """Export a student to edge formats, check each against PyTorch, write manifest.json.

    Example: egoedge export runs/quick/student.pt --to executorch,coreml,tflite,onnx --int8 --calib 256
    """
    from edge.export import ExportConfig, export_checkpoint
    from edge.parity import ParityGate

    precisions = tuple(p.strip() for p in precision.split(",") if p.strip()) if precision else None
    try:
        formats = parse_backends(to or _all_backends())
        if calib_file is not None and not calib_file.is_file():
            raise EgoedgeError(f"--calib-file {calib_file} does not exist")
        cfg = ExportConfig(formats=formats, precisions=precisions, int8=int8, calibration=calib,
                           calibration_file=str(calib_file) if calib_file else None, parity_samples=parity_samples,
                           int8_keep_float=tuple(m.strip() for m in (int8_keep_float or "").split(",") if m.strip()),
                           gate=ParityGate(fp32_tol, int8_agreement, int8_drop))
        out = out or checkpoint.parent / "export"
        with RichProgress() as progress:
            manifest = export_checkpoint(checkpoint, out, cfg, progress)
    except EgoedgeError as e:
        fail(str(e))
    console.print(manifest_table(manifest, str(out / "manifest.json")))
    src = manifest["source"]["accuracy"]
    console.print(f"PyTorch reference: top-1 {src['top1']:.1f}%, top-5 {src['top5']:.1f}%", highlight=False)
    fail_on_failed_artifacts(manifest, out, allow_failed)


def fail_on_failed_artifacts(manifest: dict, out: Path, allow_failed: bool) -> None:
    """Exit 1 naming every artifact that failed to export or its gate, unless ``allow_failed``."""
    failed = [a["name"] for a in manifest["artifacts"] if a["status"] != "ok"]
    if failed and not allow_failed:
        fail(f"{len(failed)} artifact(s) failed: {', '.join(failed)} (reasons in {out / 'manifest.json'}; "
             "--allow-failed to accept)")


@app.command()
def quantize(
    checkpoint: Path = typer.Argument(..., help="A trained student checkpoint (.pt)."),
    backend: str = typer.Option("xnnpack", help="Quantizer of the intended target: xnnpack (ExecuTorch, "
                                "Core ML W8A8) or litert (TFLite)."),
    observer: str = typer.Option("histogram", help="Activation observer: histogram, minmax, percentile."),
    calib: int = typer.Option(256, help="Calibration clips drawn from the checkpoint's training split."),
    target_agreement: float = typer.Option(99.0, help="Stop keeping blocks fp32 once top-1 agreement with fp32 "
                                           "on the validation split reaches this (%)."),
    max_fallback: int = typer.Option(4, help="At most this many blocks stay fp32 (0: quantize everything)."),
    skip: str = typer.Option("", help="Comma-separated blocks to keep fp32 from the start."),
    val_samples: int = typer.Option(160, help="Validation clips scored per sensitivity trial."),
    out: Path = typer.Option(None, help="Output folder (default: beside the checkpoint)."),
) -> None:
    """Static int8 PTQ with measured per-block fp32 fallback; writes NAME_int8.pt2 and NAME_int8.json.

    Example: egoedge quantize runs/quick/student.pt --observer percentile --max-fallback 2
    """
    from trainer.quantize.ptq import PTQConfig, quantize_checkpoint

    try:
        if not checkpoint.is_file():
            raise EgoedgeError(f"checkpoint not found: {checkpoint}")
        cfg = PTQConfig(backend=backend, observer=observer, calibration=calib, val_samples=val_samples,
                        target_agreement=target_agreement, max_fallback=max_fallback,
                        skip=tuple(s.strip() for s in skip.split(",") if s.strip()))
        with RichProgress() as progress:
            report = quantize_checkpoint(checkpoint, out or checkpoint.parent, cfg, progress)
    except EgoedgeError as e:
        fail(str(e))
    nlq = "R1@0.3" in report["fp32"]  # an NLQ span model: Recall@K at IoU and mIoU instead of top-k
    cols = ("R1@0.3", "R1@0.5", "R5@0.3", "mIoU") if nlq else ("top1", "top5")
    table = Table(title=f"PTQ int8 ({backend}, {observer} observer, {calib} calibration "
                  f"{'queries' if nlq else 'clips'})")
    for col in ("model", *(c if nlq else c.replace("top", "top-") + " %" for c in cols),
                "top-1 window = fp32 %" if nlq else "agreement %"):
        table.add_column(col)
    table.add_row("fp32", *(f"{report['fp32'][c]:.1f}" for c in cols), "100.0")
    table.add_row("int8", *(f"{report['int8'][c]:.1f}" for c in cols), f"{report['test_agreement']:.1f}")
    console.print(table)
    console.print(f"kept fp32: {', '.join(report['skip']) or 'nothing'}; validation agreement "
                  f"{report['val_agreement']:.1f}%; {report['wall_s']:.0f} s", highlight=False)
    console.print(f"wrote {report['artifact']} and {Path(report['artifact']).stem}.json", highlight=False)


@app.command()
def bench(
    export_dir: Path = typer.Argument(..., help="A folder with manifest.json (from `egoedge export`)."),
    device: str = typer.Option("host", help="Where to run, comma-separated: host, android[:SERIAL], "
                               "emulator[:SERIAL], ios[:UDID]."),
    out: Path = typer.Option(None, help="Report folder (default: the export folder's parent)."),
    threads: str = typer.Option("2", help="Threads for every runtime; a comma-separated list (e.g. 1,2 or 1,all) "
                                "times every host target at each count, accuracy and profiles at the first."),
    warmup: int = typer.Option(5, help="Untimed warm-up iterations."),
    iterations: int = typer.Option(30, help="Timed iterations."),
    budget_s: float = typer.Option(None, "--budget-s", help="Time each target for this many seconds instead "
                                   "(at least 5 iterations)."),
    isolate: bool = typer.Option(True, "--isolate/--in-process", help="Host: each target in a fresh process "
                                 "(own peak memory; a crash stays contained)."),
    tflite_xnnpack: bool = typer.Option(True, "--tflite-xnnpack/--no-tflite-xnnpack",
                                        help="LiteRT with its XNNPACK delegate (off: builtin kernels)."),
    tool: list[str] = typer.Option([], "--tool", help="Phone: FORMAT=PATH of a native benchmark binary "
                                   "(tflite=benchmark_model, executorch=executor_runner); repeatable."),
    device_timeout: float = typer.Option(600.0, help="Phone: seconds one artifact may take before it counts as hung."),
    compare: Path = typer.Option(None, help="Baseline run folder or report.json: print the change row by row and "
                                 "exit 1 when a result is slower by more than --max-slowdown (a regression guard)."),
    max_slowdown: float = typer.Option(0.10, help="With --compare: the slowdown allowed, as a fraction (0.10 = 10%)."),
    profile: bool = typer.Option(False, "--profile", help="Host: also profile every target's ops (ExecuTorch ETDump, "
                                 "ONNX Runtime profiler, torch.profiler) and report the top ops of each."),
    profile_runs: int = typer.Option(20, help="With --profile: profiled calls per target."),
) -> None:
    """Benchmark the eager source model and every artifact side by side; write report.json/md/png.

    Example: egoedge bench runs/quick/export --device host,android --out runs/quick/bench --compare runs/baseline
             egoedge bench runs/quick/export --threads 1,2 --profile
    """
    from bench.compare import check_max_slowdown, load_report
    from bench.host import BenchConfig, parse_threads
    from bench.session import bench_export, parse_tools

    try:
        counts = parse_threads(threads)
        if iterations < 1 or warmup < 0 or (budget_s is not None and budget_s <= 0):
            raise EgoedgeError("--iterations must be >= 1, --warmup >= 0, --budget-s > 0")
        if profile_runs < 1:
            raise EgoedgeError(f"--profile-runs must be >= 1, got {profile_runs}")
        check_max_slowdown(max_slowdown)
        baseline = load_report(compare) if compare else None  # a bad baseline fails before minutes of benching
        cfg = BenchConfig(warmup=warmup, iterations=iterations, threads=counts[0], more_threads=counts[1:],
                          budget_s=budget_s, isolate=isolate,
                          options={} if tflite_xnnpack else {"tflite": {"xnnpack": False}},
                          device_timeout_s=device_timeout, profile_runs=profile_runs if profile else 0)
        with RichProgress() as progress:
            report, paths = bench_export(export_dir, out or export_dir.parent, device, cfg, parse_tools(tool),
                                         progress)
    except EgoedgeError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted; rows measured so far are in {(out or export_dir.parent) / 'report.json'}")
    console.print(results_table(report))
    if table := speedup_table(report):
        console.print(table, highlight=False)
    if profile:
        for table in profile_tables(report, top=5):
            console.print(table)
    for label, info in report.get("devices", {}).items():
        for name, reason in (info.get("skipped") or {}).items():
            console.print(f"{label}: skipped {name}: {reason}", highlight=False)
    for name, path in paths.items():
        console.print(f"{name}: {path}", highlight=False)
    if baseline is not None:
        slower = print_comparison(baseline, report, str(compare), str(paths["report.json"]), max_slowdown)
        fail_on_regressions(slower, max_slowdown)


@app.command()
def devices() -> None:
    """List the host and every attached Android phone/emulator and iPhone, with why any is unusable.

    Example: egoedge devices
    """
    from bench.devices import DEVICES

    table = Table(title="devices")
    for h in ("kind", "id", "name", "state", "usable", "why not / details"):
        table.add_column(h, no_wrap=h in ("kind", "id"))
    for kind in sorted(DEVICES.keys(), key=lambda k: k != "host"):
        for d in DEVICES.get(kind)():
            extra = ", ".join(f"{k} {v}" for k, v in d.details.items() if v not in (None, ""))
            table.add_row(d.kind, d.id, d.name, d.state, "yes" if d.usable else "no", d.reason or extra)
    console.print(table)


def print_comparison(base: dict, other: dict, base_label: str, other_label: str, max_slowdown: float) -> list[str]:
    """The row-by-row change from ``base`` to ``other``; returns the rows slower by more than ``max_slowdown``."""
    from bench.compare import compare_reports, only_in, regressions, row_labels
    from bench.report import fmt

    rows = compare_reports(base, other)
    table = Table(title=f"{base_label} → {other_label}")
    for h in ("name", "ms", "→ ms", "×", "top-1", "→ top-1", "Δ top-1"):
        table.add_column(h, justify="left" if h == "name" else "right", no_wrap=h == "name")
    for row, name in zip(rows, row_labels(rows), strict=True):
        table.add_row(name, fmt(row["median_ms"][0], ".2f"), fmt(row["median_ms"][1], ".2f"),
                      fmt(row["speedup"], ".2f") + ("x" if row["speedup"] else ""),
                      fmt(row["top1"][0], ".1f"), fmt(row["top1"][1], ".1f"), fmt(row["top1_delta"], "+.1f"))
    console.print(table)
    for label, names in (("only in " + base_label, only_in(base, other)),
                         ("only in " + other_label, only_in(other, base))):
        if names:
            console.print(f"{label}: {', '.join(names)}", highlight=False)
    return regressions(rows, max_slowdown)


def fail_on_regressions(slower: list[str], max_slowdown: float) -> None:
    """Exit 1 naming every row slower than the baseline by more than the allowed fraction."""
    if slower:
        fail(f"{len(slower)} result(s) slower than the baseline by more than {100 * max_slowdown:.0f}%: "
             + "; ".join(slower))


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder (or its report.json)."),
    compare: Path = typer.Option(None, help="Another run folder: print what changed, row by row."),
    max_slowdown: float = typer.Option(0.10, help="With --compare: exit 1 when a result of the other run is slower "
                                       "by more than this fraction."),
) -> None:
    """Print a run's results table and summary; with --compare, the change against another run.

    Example: egoedge report runs/quick --compare runs/quick-b
    """
    from bench.compare import check_max_slowdown, load_report

    try:
        base = load_report(run)
        other = load_report(compare) if compare else None
        check_max_slowdown(max_slowdown)
    except EgoedgeError as e:
        fail(str(e))
    console.print(results_table(base))
    for key, value in base.get("summary", {}).items():
        console.print(f"  [bold]{key}:[/] {value}", highlight=False, soft_wrap=True)
    if other is not None:
        fail_on_regressions(print_comparison(base, other, str(run), str(compare), max_slowdown), max_slowdown)


@app.command()
def embed(
    run: Path = typer.Argument(..., help="A run folder (with export/manifest.json) or an export folder."),
    app_dir: Path = typer.Option(Path("android_demo"), "--app", help="The Android demo project."),
    models: str = typer.Option(None, help="Comma-separated artifact names or patterns, e.g. '*_int8' "
                               "(default: every ExecuTorch/LiteRT artifact that passed the parity gate)."),
    sample: bool = typer.Option(True, help="Also embed a held-out sample clip with PyTorch's logits for it."),
) -> None:
    """Copy exported students, their manifest and a sample clip into the Android app's assets, checked.

    Example: egoedge embed runs/quick --app android_demo --models 'student_*_int8'
    """
    from bench.embed import EmbedConfig
    from bench.embed import embed as embed_run

    try:
        cfg = EmbedConfig(models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
                          sample=sample)
        summary = embed_run(run, app_dir, cfg)
    except EgoedgeError as e:
        fail(str(e))
    table = Table(title=f"embedded into {summary['assets']}")
    for h in ("file", "precision", "MB", "top-1 %", "sha256"):
        table.add_column(h, justify="left" if h in ("file", "precision", "sha256") else "right", no_wrap=True)
    for a in summary["manifest"]["artifacts"]:
        table.add_row(a["file"], a["precision"], f"{a['bytes'] / 1e6:.2f}",
                      f"{a['accuracy']['top1']:.1f}" if a.get("accuracy") else "–", a["sha256"][:8])
    console.print(table)
    if s := summary["manifest"].get("sample"):
        console.print(f"sample clip: {s['clip']} ({'x'.join(map(str, s['shape']))}, label {s['label']})",
                      highlight=False)
    for w in summary["warnings"]:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    console.print(f"next: cd {app_dir} && ./gradlew installDebug", highlight=False, soft_wrap=True)


from bench.cli_nlq import nlq_app  # noqa: E402
from bench.cli_train import train_app  # noqa: E402  (needs `app`'s helpers above)

app.add_typer(train_app, name="train")
app.add_typer(nlq_app, name="nlq")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
