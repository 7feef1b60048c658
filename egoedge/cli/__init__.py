"""The ``egoedge`` command line. Each command builds a config, calls one library function, renders."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from egoedge.bench.devices import DEVICES, device_choices, device_kinds, farms
from egoedge.cli.console import (
    DATA_HELP,
    OneLineErrors,
    Preset,
    RichProgress,
    console,
    err_console,
    fail,
    parse_backends,
    quiet_third_party,
)
from egoedge.cli.data import data_app
from egoedge.cli.render import (
    export_and_show,
    print_task_metrics,
    profile_tables,
    results_table,
    speedup_table,
    stages_table,
)
from egoedge.plugins import load_plugins
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.recipes import DEFAULT_RECIPE, RECIPES
from egoedge.trainer.tasks import TASKS

try:  # before any option's choices are read from a registry
    load_plugins()
except EgoedgeError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None

# --task choices: the registry's tasks that egoedge trains (the `model` task is your own model's export)
TaskName = Enum("TaskName", {name: name for name in TASKS.keys() if TASKS.get(name).flow}, type=str)
app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="egoedge: egocentric-video teachers -> distilled students -> phone-ready artifacts.")


@app.command()
def run(
    preset: Annotated[Preset, typer.Option(
        rich_help_panel="Run",
        help="quick: about 10 min on 2 CPU cores; full: GPU-sized; mini: seconds.")] = "quick",
    data: Annotated[str, typer.Option(rich_help_panel="Data", help=DATA_HELP)] = "synthetic",
    videos: Annotated[Path, typer.Option(
        rich_help_panel="Data",
        help="epic100: the videos folder (<participant>/videos/<video>.MP4) when not beside the annotation "
             "CSVs.")] = None,
    max_bad: Annotated[float, typer.Option(
        rich_help_panel="Data",
        help="Largest fraction of unusable clips a video source may skip (default 0.05); more stops the run.")] = None,
    out: Annotated[Path, typer.Option(rich_help_panel="Run", help="Run folder (default runs/<preset>).")] = None,
    config: Annotated[Path, typer.Option(
        rich_help_panel="Run",
        help="YAML/JSON overrides of the preset (any part of run_config.yaml).")] = None,
    recipe: Annotated[str, typer.Option(
        rich_help_panel="Distillation",
        help=f"Distillation recipe of the student: {', '.join(RECIPES.keys())} "
             f"(default {DEFAULT_RECIPE}); see `egoedge train student --help`.")] = None,
    student: Annotated[str, typer.Option(
        rich_help_panel="Models",
        help="Student as ARCH:VARIANT or a bare variant: timm:NAME (any timm backbone per frame, e.g. "
             "timm:mobilenetv3_small_100), resnet:r10_48 (the quick default; r10_16, r10_16_e128, r10_32, r10_48, "
             "r10_64, r18_32: dense convs, the ones int8 speeds up most), mobilevit:xxs (micro, tiny, xxs, xs, s; the "
             "full preset's), mobilenet:v4_small (v4_small_035, v4_small_050, v4_small, v2_050, lite0).")] = None,
    teacher: Annotated[str, typer.Option(
        rich_help_panel="Models",
        help="Teacher as timm:NAME (e.g. timm:vit_base_patch32_clip_224.openai) or hf:DIR (a local transformers "
             "vision/video model folder): pretrained and frozen, only its temporal pool and linear head are fitted; or "
             "ARCH:VARIANT of ours, trained (default: the preset's, clip_vit:small in quick).")] = None,
    teacher_weights: Annotated[Path, typer.Option(
        rich_help_panel="Models",
        help="The pretrained teacher's weights (safetensors or a state dict); without it timm downloads them when "
             "online (hf: reads its folder).")] = None,
    alpha: Annotated[float, typer.Option(
        rich_help_panel="Distillation",
        help="Weight of the feature-KD term (default 1.0).")] = None,
    beta: Annotated[float, typer.Option(
        rich_help_panel="Distillation",
        help="Weight of the response-KD term (default 1.0).")] = None,
    gamma: Annotated[float, typer.Option(
        rich_help_panel="Distillation",
        help="Weight of the cross-entropy term (default 0.5).")] = None,
    temperature: Annotated[float, typer.Option(
        rich_help_panel="Distillation",
        help="KD temperature T (default 4.0).")] = None,
    threads: Annotated[int, typer.Option(
        rich_help_panel="Bench",
        help="Threads for every runtime in the bench (default 2).")] = None,
    iterations: Annotated[int, typer.Option(
        rich_help_panel="Bench",
        help="Timed iterations per benchmark target.")] = None,
    task: Annotated[TaskName, typer.Option(
        rich_help_panel="Run",
        help="What the models do (the task registry); nlq runs the Ego4D NLQ family: VSLBase/VSLNet/FiLM, DeepVSLNet "
             "-> LightVSLNet -> CBKD -> int8, exported; writes nlq_*.json.")] = "recognition",
    film: Annotated[str, typer.Option(
        rich_help_panel="Models",
        help="--task nlq: the FiLM modes trained as extra VSLNets, comma-separated, or 'all' (default: the preset's, "
             "inside_encoder:after_pos for quick).")] = None,
) -> None:
    """Train a teacher, distil a student, export it, benchmark everything, write the report.

    Example: egoedge run --preset quick --out runs/quick
             egoedge run --data folder:my_clips/ --out runs/mine
             egoedge run --task nlq --out runs/nlq
    """
    from egoedge.pipeline import RunRequest, pipeline_for

    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    if iterations is not None and iterations < 1:
        fail(f"--iterations must be >= 1, got {iterations}")
    options = {"recipe": recipe, "student": student, "teacher": teacher,
               "teacher_weights": str(teacher_weights) if teacher_weights else None, "alpha": alpha, "beta": beta,
               "gamma": gamma, "temperature": temperature, "threads": threads, "iterations": iterations, "film": film,
               "config": config, "videos": videos, "max_bad": max_bad}
    request = RunRequest(preset.value, task.value, out, data, config,
                         {k: v for k, v in options.items() if v is not None})
    with RichProgress() as progress:
        result = pipeline_for(task.value).run(request, progress)
    report = result.report
    print_task_metrics(report)
    console.print(results_table(report))
    for key, value in report["summary"].items():
        console.print(f"  [bold]{key}:[/] {value}", highlight=False, soft_wrap=True)
    stages = stages_table(report)
    if stages is not None:
        console.print(stages)
    for name, path in result.files.items():
        console.print(f"{name}: {path}", highlight=False)


def _all_backends() -> str:
    from egoedge.edge.exporters import EXPORTERS

    return ",".join(EXPORTERS.keys())


@app.command()
def export(
    model: Annotated[str, typer.Argument(
        metavar="MODEL",
        help="An egoedge checkpoint of any task (runs/quick/student.pt, runs/nlq/nlq_student.pt), or your own model: a "
             "torch.export program (model.pt2), timm:NAME, or package.module:factory / file.py:factory (a callable "
             "returning an nn.Module); your own model needs --input-shape or --example-inputs.")],
    input_shape: Annotated[str, typer.Option(
        help="Your own model: its batch-1 input shape, e.g. 1,3,224,224 (several inputs: 1,3,224,224;1,10); held-out "
             "inputs are seeded random ones.")] = None,
    example_inputs: Annotated[Path, typer.Option(
        help="Your own model: held-out inputs, a .npy (N, ...) or a .npz (one array per input); parity and the bench "
             "run on them.")] = None,
    labels: Annotated[Path, typer.Option(
        help="Your own model: a .npy of N class indices for --example-inputs, so artifacts are scored on accuracy "
             "too.")] = None,
    weights: Annotated[Path, typer.Option(
        help="timm:NAME or a factory's model: a weights file (safetensors or a state dict) loaded strictly.")] = None,
    to: Annotated[str, typer.Option(
        help="Comma-separated backends (default: all of executorch,coreml,tflite,onnx).")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Also make each backend's int8 artifacts (calibrated).")] = False,
    precision: Annotated[str, typer.Option(
        help="Exact precisions instead, comma-separated: fp32,fp16,int8,w8,w8a8.")] = None,
    calib: Annotated[int, typer.Option(
        help="Calibration samples drawn from the checkpoint's training split (or --data's).")] = 256,
    calib_file: Annotated[Path, typer.Option(
        help="Use preprocessed inputs from this .npy (N, ...) instead, shaped like the model's input (single-input "
             "models; your own model's int8 needs it or --data).")] = None,
    int8_keep_float: Annotated[str, typer.Option(
        help="Comma-separated modules the int8 artifacts keep fp32, e.g. pool,head (default: none; the quick run keeps "
             "pool,head).")] = None,
    out: Annotated[Path, typer.Option(
        help="Output folder (default: export/ beside the checkpoint; export/<MODEL> for your own model).")] = None,
    parity_samples: Annotated[int, typer.Option(
        help="Held-out samples in the parity batch (random ones of --input-shape: this many).")] = 32,
    fp32_tol: Annotated[float, typer.Option(
        help="fp32 gate: max |logit difference| to PyTorch (default: the task's, 1e-4 for clips, 1e-3 for "
             "NLQ).")] = None,
    int8_agreement: Annotated[float, typer.Option(
        help="int8 gate: minimum top-1 agreement with PyTorch, % (default: the task's, 99 for clips, 80 for NLQ "
             "windows).")] = None,
    int8_drop: Annotated[float, typer.Option(
        help="int8 gate: maximum top-1 accuracy drop, points (default: the task's, 1 for clips, 2 for NLQ).")] = None,
    allow_failed: Annotated[bool, typer.Option(help="Exit 0 even if an artifact fails to export or its gate.")] = False,
    data: Annotated[str, typer.Option(
        help="Calibrate and check parity on this dataset instead of the checkpoint's own (same classes), e.g. "
             "folder:clips/; your own model: int8 calibrates on its clips or frames.")] = None,
    streaming: Annotated[bool, typer.Option(
        "--streaming",
        help="Also export each backend and precision as a streaming pair for a live camera: a frame encoder (one frame "
             "in) and a temporal head (the last T embeddings in), checked frame by frame against the clip "
             "model.")] = False,
) -> None:
    """Export a checkpoint of any task, or your own PyTorch model, to edge formats; gate each, write manifest.json.

    Example: egoedge export runs/quick/student.pt --to executorch,coreml,tflite,onnx --int8 --calib 256
             egoedge export runs/quick/student.pt --to executorch,tflite,onnx --int8 --streaming
             egoedge export runs/nlq/nlq_student.pt --to onnx --int8
             egoedge export timm:mobilenetv3_small_100 --input-shape 1,3,224,224 --to executorch,tflite,onnx
             egoedge export my_model.pt2 --example-inputs x.npy --int8 --calib-file calib.npy --out export/mine
    """
    from egoedge.edge.export import ExportConfig
    from egoedge.edge.foreign import ModelInputs
    from egoedge.edge.sources import source_of
    from egoedge.trainer.common.arrays import require_file

    precisions = tuple(p.strip() for p in precision.split(",") if p.strip()) if precision else None
    def config() -> ExportConfig:
        if calib_file is not None:
            require_file(calib_file, "--calib-file")
        return ExportConfig(formats=parse_backends(to or _all_backends()), precisions=precisions, int8=int8,
                            calibration=calib, calibration_file=str(calib_file) if calib_file else None,
                            parity_samples=parity_samples, gate=gate_of(fp32_tol, int8_agreement, int8_drop),
                            data=data, streaming=streaming,
                            int8_keep_float=tuple(m.strip() for m in (int8_keep_float or "").split(",") if m.strip()))

    inputs = ModelInputs(input_shape, str(example_inputs) if example_inputs else None,
                         str(labels) if labels else None, str(weights) if weights else None, samples=parity_samples)
    source = source_of(model)
    if source.checkpoint and (input_shape or example_inputs or labels or weights):
        fail("--input-shape, --example-inputs, --labels and --weights are for your own model; an egoedge checkpoint "
             "brings its own")
    export_and_show(model, None if source.checkpoint else inputs, out, config, allow_failed)


def gate_of(fp32_tol: float | None, int8_agreement: float | None, int8_drop: float | None):
    """The gate the user set, each unset bound from the default gate; ``None`` when nothing was set (the task's)."""
    from egoedge.edge.parity import ParityGate

    if fp32_tol is None and int8_agreement is None and int8_drop is None:
        return None
    d = ParityGate()
    return ParityGate(d.fp32_max_abs if fp32_tol is None else fp32_tol,
                      d.int8_min_agreement if int8_agreement is None else int8_agreement,
                      d.int8_max_accuracy_drop if int8_drop is None else int8_drop)


@app.command()
def quantize(
    checkpoint: Annotated[Path, typer.Argument(help="A trained student checkpoint (.pt).")],
    backend: Annotated[str, typer.Option(
        help="Quantizer of the intended target: xnnpack (ExecuTorch, Core ML W8A8) or litert (TFLite).")] = "xnnpack",
    observer: Annotated[str, typer.Option(help="Activation observer: histogram, minmax, percentile.")] = "histogram",
    calib: Annotated[int, typer.Option(help="Calibration clips drawn from the checkpoint's training split.")] = 256,
    target_agreement: Annotated[float, typer.Option(
        help="Stop keeping blocks fp32 once top-1 agreement with fp32 on the validation split reaches this "
             "(%).")] = 99.0,
    max_fallback: Annotated[int, typer.Option(help="At most this many blocks stay fp32 (0: quantize everything).")] = 4,
    skip: Annotated[str, typer.Option(help="Comma-separated blocks to keep fp32 from the start.")] = "",
    val_samples: Annotated[int, typer.Option(help="Validation clips scored per sensitivity trial.")] = 160,
    out: Annotated[Path, typer.Option(help="Output folder (default: beside the checkpoint).")] = None,
    data: Annotated[str, typer.Option(
        help="Calibrate and score on this dataset instead of the checkpoint's own (same classes), e.g. "
             "folder:clips/.")] = None,
) -> None:
    """Static int8 PTQ with measured per-block fp32 fallback; writes NAME_int8.pt2 and NAME_int8.json.

    Example: egoedge quantize runs/quick/student.pt --observer percentile --max-fallback 2
    """
    from egoedge.trainer.quantize.ptq import PTQConfig
    from egoedge.trainer.quantize.quantize_checkpoint import quantize_checkpoint
    from egoedge.trainer.tasks import task_named

    if not checkpoint.is_file():
        raise EgoedgeError(f"checkpoint not found: {checkpoint}")
    cfg = PTQConfig(backend=backend, observer=observer, calibration=calib, val_samples=val_samples,
                    target_agreement=target_agreement, max_fallback=max_fallback,
                    skip=tuple(s.strip() for s in skip.split(",") if s.strip()))
    with RichProgress() as progress:
        report = quantize_checkpoint(checkpoint, out or checkpoint.parent, cfg, progress, data=data)
    task = task_named(report["task"], str(report["artifact"]))
    cols = task.ptq_columns
    table = Table(title=f"PTQ int8 ({backend}, {observer} observer, {calib} calibration {task.units})")
    for col in ("model", *(c.replace("top", "top-") + " %" if c.startswith("top") else c for c in cols),
                task.agreement_column):
        table.add_column(col)
    table.add_row("fp32", *(f"{report['fp32'][c]:.1f}" for c in cols), "100.0")
    table.add_row("int8", *(f"{report['int8'][c]:.1f}" for c in cols), f"{report['test_agreement']:.1f}")
    console.print(table)
    console.print(f"kept fp32: {', '.join(report['skip']) or 'nothing'}; validation agreement "
                  f"{report['val_agreement']:.1f}%; {report['wall_s']:.0f} s", highlight=False)
    console.print(f"wrote {report['artifact']} and {Path(report['artifact']).stem}.json", highlight=False)


@app.command()
def bench(
    export_dir: Annotated[Path, typer.Argument(help="A folder with manifest.json (from `egoedge export`).")],
    device: Annotated[str, typer.Option(help=f"Where to run, comma-separated: {device_choices()}.")] = "host",
    out: Annotated[Path, typer.Option(help="Report folder (default: the export folder's parent).")] = None,
    threads: Annotated[str, typer.Option(
        help="Threads for every runtime; a comma-separated list (e.g. 1,2 or 1,all) times every host target at each "
             "count, accuracy and profiles at the first.")] = "2",
    warmup: Annotated[int, typer.Option(help="Untimed warm-up iterations.")] = 5,
    iterations: Annotated[int, typer.Option(help="Timed iterations.")] = 30,
    budget_s: Annotated[float, typer.Option(
        "--budget-s",
        help="Time each target for this many seconds instead (at least 5 iterations).")] = None,
    isolate: Annotated[bool, typer.Option(
        "--isolate/--in-process",
        help="Host: each target in a fresh process (own peak memory; a crash stays contained).")] = True,
    tflite_xnnpack: Annotated[bool, typer.Option(
        "--tflite-xnnpack/--no-tflite-xnnpack",
        help="LiteRT with its XNNPACK delegate (off: builtin kernels).")] = True,
    tool: Annotated[list[str], typer.Option(
        "--tool",
        metavar="FORMAT=PATH",
        help="Phone: FORMAT=PATH of a native benchmark binary (tflite=benchmark_model, executorch=executor_runner); "
             "repeatable.")] = None,
    device_timeout: Annotated[float, typer.Option(
        help="Phone: seconds one artifact may take before it counts as hung.")] = 600.0,
    compare: Annotated[Path, typer.Option(
        help="Baseline run folder or report.json: print the change row by row and exit 1 when a result is slower by "
             "more than --max-slowdown (a regression guard).")] = None,
    max_slowdown: Annotated[float, typer.Option(
        help="With --compare: the slowdown allowed, as a fraction (0.10 = 10%).")] = 0.10,
    profile: Annotated[bool, typer.Option(
        "--profile",
        help="Host: also profile every target's ops (ExecuTorch ETDump, ONNX Runtime profiler, torch.profiler) and "
             "report the top ops of each.")] = False,
    profile_runs: Annotated[int, typer.Option(help="With --profile: profiled calls per target.")] = 20,
    allow_failed: Annotated[bool, typer.Option(
        help="Exit 0 even if an artifact on disk is not the one its manifest describes (modified or truncated after "
             "export).")] = False,
) -> None:
    """Benchmark the eager source model and every artifact side by side; write report.json/md/png.

    Example: egoedge bench runs/quick/export --device host,android --out runs/quick/bench --compare runs/baseline
             egoedge bench runs/quick/export --threads 1,2 --profile
    """
    from egoedge.bench.bench_export import bench_export, parse_tools
    from egoedge.bench.compare import check_max_slowdown, load_report
    from egoedge.bench.host_bench import DAMAGED, BenchConfig, parse_threads

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
            report, paths = bench_export(export_dir, out or export_dir.parent, device, cfg, parse_tools(tool or []),
                                         progress)
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
    damaged = [r["name"] for r in report["results"] if (r.get("error") or "").startswith(DAMAGED)]
    if baseline is not None:
        from egoedge.bench.compare import comparison
        from egoedge.bench.html_report import write_html

        here = str(out or export_dir.parent)
        write_html(report, paths["report.html"], comparison(baseline, report, str(compare), here, max_slowdown))
        slower = print_comparison(baseline, report, str(compare), str(paths["report.json"]), max_slowdown)
        fail_on_regressions(slower, max_slowdown)
    if damaged and not allow_failed:
        fail(f"{len(damaged)} artifact(s) {DAMAGED}, not run: {', '.join(damaged)} (re-export, or --allow-failed "
             "to accept)")


@app.command()
def devices(
    farm: Annotated[str, typer.Option(
        help=f"List a device farm's hosted devices instead: {', '.join(farms())} "
             "(uses the farm's own client configuration).")] = None,
) -> None:
    """List the host and every attached Android phone/emulator and iPhone, with why any is unusable.

    Example: egoedge devices
             egoedge devices --farm aihub
    """
    if farm is not None and farm not in farms():
        fail(f"unknown farm '{farm}'; valid: {', '.join(farms())}")
    table = Table(title=f"{farm} devices" if farm else "devices")
    for h in ("kind", "id", "name", "state", "usable", "why not / details"):
        table.add_column(h, no_wrap=h in ("kind", "id"))
    # A view of another kind (emulator: its rows are android's) or a farm (listed with --farm) is skipped.
    kinds = [farm] if farm else [k for k in device_kinds() if DEVICES.get(k).base is None
                                 and not DEVICES.get(k).farm]
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:  # each kind waits on its own tool
        found = list(pool.map(lambda kind: DEVICES.get(kind).discover(), kinds))
    for rows in found:
        for d in rows:
            extra = ", ".join(f"{k} {v}" for k, v in d.details.items()
                              if v not in (None, "") and not isinstance(v, list))
            table.add_row(d.kind, d.id, d.name, d.state, "yes" if d.usable else "no", d.reason or extra)
    console.print(table)


def print_comparison(base: dict, other: dict, base_label: str, other_label: str, max_slowdown: float) -> list[str]:
    """The row-by-row change from ``base`` to ``other``; returns the rows slower by more than ``max_slowdown``."""
    from egoedge.bench.compare import breakages, compare_reports, only_in, regressions, row_labels
    from egoedge.bench.report import fmt

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
    return regressions(rows, max_slowdown) + breakages(base, other)


def fail_on_regressions(slower: list[str], max_slowdown: float) -> None:
    """Exit 1 naming every row slower than the baseline by more than the allowed fraction."""
    if slower:
        fail(f"{len(slower)} regression(s) against the baseline (slower by more than {100 * max_slowdown:.0f}%, "
             "failed or missing): "
             + "; ".join(slower))


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A run folder (or its report.json).")],
    compare: Annotated[Path, typer.Option(help="Another run folder: print what changed, row by row.")] = None,
    max_slowdown: Annotated[float, typer.Option(
        help="With --compare: exit 1 when a result of the other run is slower by more than this fraction.")] = 0.10,
) -> None:
    """Print a run's results table and summary, and rebuild its report.html from report.json; with --compare,
    the change against another run (in the page too).

    Example: egoedge report runs/quick --compare runs/quick-b
    """
    from egoedge.bench.compare import check_max_slowdown, comparison, load_report
    from egoedge.bench.html_report import write_html

    base = load_report(run)
    other = load_report(compare) if compare else None
    check_max_slowdown(max_slowdown)
    page = write_html(base, (run if run.is_dir() else run.parent) / "report.html",
                      comparison(base, other, str(run), str(compare), max_slowdown) if other is not None else None)
    console.print(results_table(base))
    for key, value in base.get("summary", {}).items():
        console.print(f"  [bold]{key}:[/] {value}", highlight=False, soft_wrap=True)
    console.print(f"report.html: {page}", highlight=False)
    if other is not None:
        fail_on_regressions(print_comparison(base, other, str(run), str(compare), max_slowdown), max_slowdown)


@app.command()
def inspect(
    artifact: Annotated[Path, typer.Argument(help="An int8 artifact (or its NAME.gap.json).")],
    top: Annotated[int, typer.Option(help="How many layers to list.", min=1)] = 10,
) -> None:
    """Print an int8 artifact's worst layers against float: SQNR, what each layer loses itself, max |diff|.

    Example: egoedge inspect runs/quick/export/student_onnx_int8.onnx --top 5
    """
    from egoedge.edge.gap import HEADERS, read_gap, summary, worst_cells

    gap = read_gap(artifact)
    console.print(summary(gap), highlight=False, soft_wrap=True)
    if gap.get("keep_float"):
        console.print(f"kept fp32: {', '.join(gap['keep_float'])}", highlight=False, soft_wrap=True)
    cells = worst_cells(gap, top)
    if not cells:
        console.print("no int8 layer: every layer runs in float", highlight=False)
        return
    table = Table(title=f"worst {len(cells)} layers (by SQNR lost in the layer itself)")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("layer", "op") else "right", overflow="fold",
                         no_wrap=h != "layer")
    for row in cells:
        table.add_row(*row)
    console.print(table)


@app.command()
def embed(
    run: Annotated[Path, typer.Argument(help="A run folder (with export/manifest.json) or an export folder.")],
    app_dir: Annotated[Path, typer.Option("--app", help="The Android demo project.")] = Path("android_demo"),
    models: Annotated[str, typer.Option(
        help="Comma-separated artifact names or patterns, e.g. '*_int8' (default: every ExecuTorch/LiteRT artifact "
             "that passed the parity gate).")] = None,
    sample: Annotated[bool, typer.Option(
        help="Also embed a held-out sample clip with PyTorch's logits for it.")] = True,
) -> None:
    """Copy exported students, their manifest and a sample clip into the Android app's assets, checked.

    Example: egoedge embed runs/quick --app android_demo --models 'student_*_int8'
    """
    from egoedge.edge.embed import EmbedConfig
    from egoedge.edge.embed import embed as embed_run

    cfg = EmbedConfig(models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
                      sample=sample)
    summary = embed_run(run, app_dir, cfg)
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


from egoedge.cli.nlq import nlq_app  # noqa: E402
from egoedge.cli.train import train_app  # noqa: E402

app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
app.add_typer(nlq_app, name="nlq")


@app.callback()
def options(verbose: Annotated[bool, typer.Option(
                "--verbose",
                help="Also show third-party notices (library warnings, native runtime log lines), which are hidden by "
                     "default.")] = False) -> None:
    """egoedge: egocentric-video teachers -> distilled students -> phone-ready artifacts."""


def main() -> None:
    """Console-script entry point."""
    if "--verbose" not in sys.argv[1:]:
        quiet_third_party()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
