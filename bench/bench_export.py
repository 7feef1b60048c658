"""``egoedge bench``: an export folder measured on the host and on phones, into one report."""

from __future__ import annotations

from pathlib import Path

from egoedge.bench.devices import DeviceError, DeviceInfo
from egoedge.bench.devices.on_device.dispatch import bench_on_device, device_label, parse_device_specs, select_device
from egoedge.bench.devices.on_device.native import NATIVE_TOOLS
from egoedge.bench.host_bench import (
    BenchConfig,
    checkpoint_target,
    host_report,
    int8_program_target,
    manifest_targets,
    program_target,
    teacher_of,
)
from egoedge.bench.peak import add_throughput
from egoedge.bench.report import ship_choice, summarize
from egoedge.bench.report_files import write_report
from egoedge.bench.runtimes import RUNTIMES
from egoedge.edge.artifact import run_session
from egoedge.edge.manifest import load_manifest
from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.arrays import NPY_KEY, pick, read_arrays
from egoedge.trainer.common.io import EgoedgeError, write_json_atomic
from egoedge.trainer.common.lock import locks_folder
from egoedge.trainer.common.progress import Progress, no_progress
from egoedge.trainer.tasks import Evaluation, task_named, task_of
from egoedge.trainer.tasks.base import Arrays
from egoedge.trainer.tasks.model import output_parity


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


class SampleEvaluation(Evaluation):
    """An export folder on its own (its source checkpoint is not beside it): the saved sample input is the
    test set and the saved PyTorch output the reference; there is no test accuracy to score."""

    def __init__(self, export_dir: Path, manifest: dict) -> None:
        sample = manifest.get("sample") or {}
        names = [a for a in manifest["artifacts"] if a.get("inputs")]
        if not sample.get("input") or not sample.get("output") or not names:
            raise EgoedgeError(f"{export_dir} has no source checkpoint and no saved sample to check artifacts on; "
                               "copy the checkpoint beside it or re-export")
        self.inputs = tuple(t["name"] for t in names[0]["inputs"])
        self.outputs = tuple(t["name"] for t in names[0]["outputs"])
        self.source = str(export_dir)
        self._inputs = _arrays(export_dir / sample["input"], self.inputs)
        self._outputs = _arrays(export_dir / sample["output"], self.outputs)

    def parity_inputs(self, count: int) -> Arrays:
        return self._inputs

    def test_inputs(self, variant=None) -> Arrays:
        return self._inputs

    def calibration(self, count: int, seed: int) -> Arrays:
        raise EgoedgeError("an export folder without its checkpoint has no training data to calibrate on")

    def score(self, outputs: Arrays) -> dict:
        return {"accuracy": None}

    def parity(self, reference: Arrays, candidate: Arrays, inputs: Arrays) -> dict:
        return output_parity(reference, candidate)  # the worst over every model output

    def reference(self) -> Arrays:
        return self._outputs


def _arrays(path: Path, names: tuple[str, ...]) -> Arrays:
    """One ``.npy`` array, or an ``.npz``'s arrays in ``names`` order; a damaged file is one line."""
    arrays = read_arrays(path, "the export's saved sample")
    return (arrays[NPY_KEY],) if NPY_KEY in arrays else pick(arrays, names, "the export's saved sample", path)


@locks_folder("out", "egoedge bench")
def bench_export(export_dir: Path, out: Path, devices: str = "host", cfg: BenchConfig = BenchConfig(),
                 tools: dict[str, Path] | None = None, progress: Progress = no_progress) -> tuple[dict, dict]:
    """Measure the source model and its artifacts on every device in ``devices``; returns (report, paths).

    The eager PyTorch model (and its teacher, if beside it) is always measured on the host: it is
    the baseline and the reference for agreement. An export folder copied without its checkpoint
    is still benchmarked: each artifact is timed on the saved sample input and checked against the
    saved PyTorch output (no eager row, no test accuracy; the summary says so). report.json is
    rewritten after every device row, so an unplugged phone or an interrupted run keeps what was
    measured (``"partial": true``).

    Example::

        report, paths = bench_export(Path("runs/quick/export"), Path("runs/quick"), "host,android")
    """
    specs = parse_device_specs(devices)
    phones: list[DeviceInfo] = [select_device(s) for s in specs if s != "host"]  # fail before measuring
    manifest, source = load_manifest(export_dir)
    if source.is_file() and source.suffix == ".pt2":  # your own model: its program and saved held-out inputs
        task = task_named(manifest.get("task"), str(export_dir / "manifest.json"))
        ev = task.evaluation({"samples": str(export_dir / manifest["source"].get("samples", "samples.npz"))})
        from egoedge.edge.sources import source_of

        model = manifest["source"].get("model") or str(source)
        student = program_target(source, source_of(model).stem(model), ev.parity_inputs(1))
        targets, params, macs = [student], student.params, student.macs
    elif source.is_file():
        ckpt = read_checkpoint(source)
        task = task_of(ckpt)
        ev = task.evaluation(ckpt)
        student = checkpoint_target(source, source.stem, compare_to_reference=True, ckpt=ckpt)
        targets = [student, *int8_program_target(export_dir, manifest, student)]
        if teacher := teacher_of(source, ckpt):  # the model it was distilled from: the baseline to beat
            targets.insert(0, checkpoint_target(teacher, teacher.stem, compare_to_reference=False))
        params, macs = student.params, student.macs
    else:  # a copied export folder: the artifacts and their saved sample are all there is
        task, ev = task_named(manifest.get("task"), str(export_dir / "manifest.json")), SampleEvaluation(
            export_dir, manifest)
        targets, student, params, macs = [], None, None, None
    if "host" in specs:
        targets += manifest_targets(export_dir, manifest, params, macs)
    report = host_report(targets, task, ev, cfg, progress, peaks="host" in specs)
    report["devices"] = {"host": {"name": report["machine"]["cpu"]}} if "host" in specs else {}
    host_rows = len(report["results"])
    if phones:
        reference = (ev.reference()[0] if student is None else
                     run_session(RUNTIMES.get("pytorch").open(student.target, cfg.threads), ev.test_inputs())[0])
        artifacts = manifest_targets(export_dir, manifest, params, macs, host_only=False)
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
    report["ship"] = ship_choice(report, {student.name if student else "": export_dir.name})
    report["summary"] = summarize(report)
    if student is None:
        report["summary"]["source checkpoint"] = (
            f"not found ({source}): the eager model and test accuracy are skipped; each artifact was timed on "
            f"the saved sample input and checked against the saved PyTorch output")
    return report, write_report(report, out)
