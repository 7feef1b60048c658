"""``egoedge bench``: an export folder measured on the host and on phones, into one report."""

from __future__ import annotations

import json
from pathlib import Path

from bench.device_runners.native import NATIVE_TOOLS
from bench.device_runners.run import bench_on_device, device_label, parse_device_specs, select_device
from bench.devices import DeviceError, DeviceInfo
from bench.host_bench import BenchConfig, checkpoint_target, host_report, manifest_targets, teacher_of
from bench.peak import add_throughput
from bench.report import summarize, write_report
from bench.runners import RUNNERS
from edge.export import run_session
from trainer.checkpoint import read_checkpoint
from trainer.common.io import EgoedgeError, write_json_atomic
from trainer.common.progress import Progress, no_progress
from trainer.tasks import task_of


def parse_tools(items: list[str]) -> dict[str, Path]:
    """``["tflite=./benchmark_model"]`` → ``{"tflite": Path(...)}``, each format and file checked."""
    tools: dict[str, Path] = {}
    for item in items:
        fmt, sep, path = item.partition("=")
        if not sep or not path:
            raise EgoedgeError(f"--tool takes FORMAT=PATH, got '{item}'")
        if fmt not in NATIVE_TOOLS:
            raise EgoedgeError(f"no native tool for '{fmt}'; valid: {', '.join(NATIVE_TOOLS.keys())}")
        if not Path(path).is_file():
            raise EgoedgeError(f"--tool {fmt}: {path} is not a file")
        tools[fmt] = Path(path)
    return tools


def load_manifest(export_dir: Path) -> tuple[dict, Path]:
    """The export's manifest and the checkpoint it came from, or one clear error."""
    path = export_dir / "manifest.json"
    if not path.is_file():
        raise EgoedgeError(f"no manifest.json in {export_dir}; run `egoedge export` first")
    try:
        manifest = json.loads(path.read_text())
        return manifest, (export_dir / manifest["source"]["checkpoint"]).resolve()
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise EgoedgeError(f"{path} is not an egoedge manifest ({type(e).__name__})") from None


def bench_export(export_dir: Path, out: Path, devices: str = "host", cfg: BenchConfig = BenchConfig(),
                 tools: dict[str, Path] | None = None, progress: Progress = no_progress) -> tuple[dict, dict]:
    """Measure the source model and its artifacts on every device in ``devices``; returns (report, paths).

    The eager PyTorch model (and its teacher, if beside it) is always measured on the host: it is
    the baseline and the reference for agreement. report.json is rewritten after every device
    row, so an unplugged phone or an interrupted run keeps what was measured (``"partial": true``).

    Example::

        report, paths = bench_export(Path("runs/quick/export"), Path("runs/quick"), "host,android")
    """
    specs = parse_device_specs(devices)
    phones: list[DeviceInfo] = [select_device(s) for s in specs if s != "host"]  # fail before measuring
    manifest, source = load_manifest(export_dir)
    ckpt = read_checkpoint(source)
    task = task_of(ckpt)
    ev = task.evaluation(ckpt)
    student = checkpoint_target(source, source.stem, compare_to_reference=True)
    targets = [student]
    if teacher := teacher_of(source, ckpt):  # the model it was distilled from: the baseline to beat
        targets.insert(0, checkpoint_target(teacher, teacher.stem, compare_to_reference=False))
    if "host" in specs:
        targets += manifest_targets(export_dir, manifest, student.params, student.macs)
    report = host_report(targets, task, ev, cfg, progress, peaks="host" in specs)
    report["devices"] = {"host": {"name": report["machine"]["cpu"]}} if "host" in specs else {}
    host_rows = len(report["results"])
    if phones:
        reference = run_session(RUNNERS.get("pytorch").open(student.target, cfg.threads), ev.test_inputs())[0]
        artifacts = manifest_targets(export_dir, manifest, student.params, student.macs, host_only=False)
        out.mkdir(parents=True, exist_ok=True)
        for phone in phones:
            label = device_label(phone)
            report["devices"][label] = {"name": phone.name, **phone.details}
            done = len(report["results"])

            def save_partial(row: dict) -> None:
                report["results"].append(row)
                write_json_atomic(out / "report.json", {**report, "partial": True})

            try:
                _, skipped = bench_on_device(phone, artifacts, ev, reference, cfg, tools, save_partial, progress)
            except DeviceError as e:
                raise EgoedgeError(f"{label}: {e} ({len(report['results']) - done} rows kept in "
                                   f"{out / 'report.json'})") from None
            report["devices"][label]["skipped"] = skipped
        add_throughput(report["results"][host_rows:], report["machine"].get("peak_gmacs"))
    report["summary"] = summarize(report)
    return report, write_report(report, out)
