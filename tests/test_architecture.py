"""The layout's promises, checked: no import cycles (imports inside functions count) and every list from a registry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("trainer", "edge", "bench")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages (a package is its ``__init__``)."""
    out = {}
    for pkg in PACKAGES:
        for f in (root / pkg).rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Which of our modules each module imports, anywhere in its body (functions included)."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(t for a in node.names if (t := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    target = full if full in mods else resolve(base)
                    if target:
                        edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "trainer" / "a.py").write_text("from trainer.b import x\n")
    (tmp_path / "trainer" / "b.py").write_text("def x():\n    from trainer import a\n    return a\n")
    (tmp_path / "edge" / "c.py").write_text("from . import d\n")
    (tmp_path / "edge" / "d.py").write_text("import edge.c\n")
    assert sorted(cycles(import_graph(modules(tmp_path)))) == [["edge.c", "edge.d"], ["trainer.a", "trainer.b"]]


def test_no_import_cycles():
    assert cycles(import_graph(modules())) == []


def test_the_manifest_schema_lists_exactly_the_registered_backends():
    from edge.exporters import EXPORTERS

    schema = json.loads((ROOT / "edge" / "schemas" / "manifest.schema.json").read_text())
    formats = schema["$defs"]["artifact"]["properties"]["format"]["enum"]
    assert sorted(formats) == sorted(EXPORTERS.keys())


def test_every_backend_has_a_bench_runner_and_every_task_a_run_flow():
    from bench.flows import FLOWS
    from bench.runners import RUNNERS
    from edge.exporters import EXPORTERS
    from trainer.tasks import TASKS

    assert set(EXPORTERS.keys()) <= set(RUNNERS.keys())
    assert set(FLOWS.keys()) == {t for t in TASKS.keys() if TASKS.get(t).trains}


@pytest.mark.parametrize("task", ["recognition", "anticipation", "nlq"])
def test_tasks_are_registered_and_say_what_differs(task):
    from trainer.tasks import TASKS

    t = TASKS.get(task)
    assert t.name == task and t.unit in ("clip", "query") and t.metric_column.endswith("%")
    assert t.gate.int8_min_agreement > 0 and t.report_note


def test_no_module_outside_the_tasks_tests_a_task_name():
    """Stages ask the task what differs; the string of a task name appears only where that task lives."""
    allowed = {"trainer/tasks", "trainer/nlq", "trainer/models/vslnet.py", "bench/flows/nlq.py", "bench/cli/nlq.py",
               "trainer/data"}
    offenders = []
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT).as_posix()
            if any(rel.startswith(a) for a in allowed):
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Compare) and any(
                        isinstance(c, ast.Constant) and c.value in ("nlq", "recognition", "anticipation")
                        for c in [node.left, *node.comparators]):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


# --- a new backend and a new task are one registration each ------------------------------------------------

class ToyExporter:
    """A backend made up for this test: a ``torch.export`` program run by PyTorch."""

    format, ext, runtime = "toy", "pt2", "toy-torch-export"
    precisions = float_precisions = ("fp32",)
    int8_precisions: tuple[str, ...] = ()

    def export(self, model, example_inputs, path, precision, calibration, names=None) -> dict:
        import torch

        torch.export.save(torch.export.export(model, example_inputs, strict=False), str(path))
        return {"program": "torch.export"}

    def unavailable(self) -> str | None:
        return None

    def load(self, path, threads=None):
        import torch

        module = torch.export.load(str(path)).module()

        def run(inputs):
            with torch.no_grad():
                out = module(*[torch.from_numpy(x) for x in inputs])
            return [t.numpy() for t in (out if isinstance(out, tuple | list) else (out,))]

        return run


def _toy_task():
    from trainer.tasks.clips import ClipEvaluation, ClipTask

    class ErrorRateEvaluation(ClipEvaluation):
        def score(self, outputs):
            scored = super().score(outputs)
            return {**scored, "metrics": {"error %": 100.0 - scored["accuracy"]["top1"]}}

    class ErrorRateTask(ClipTask):
        def evaluation(self, ckpt):
            return ErrorRateEvaluation(ckpt)

    return ErrorRateTask("toy", metric_column="top-1 (toy) %", report_field="toy", report_note="A toy task.")


@pytest.fixture
def toy_registered(monkeypatch):
    """Register the toy backend (its exporter; the bench runs it through ArtifactRunner) and the toy task."""
    from bench.runners import RUNNERS
    from bench.runners.artifact import ArtifactRunner
    from edge.exporters import EXPORTERS
    from trainer.tasks import TASKS

    monkeypatch.setitem(EXPORTERS._items, "toy", ToyExporter())
    monkeypatch.setitem(RUNNERS._items, "toy", ArtifactRunner("toy", ToyExporter.runtime))
    monkeypatch.setitem(TASKS._items, "toy", _toy_task())


@pytest.mark.parametrize("task", ["recognition", "toy"])
def test_a_registered_backend_and_task_go_through_export_and_bench(task, toy_registered, tmp_path, mini_data_cfg,
                                                                   micro_ckpt):
    import torch

    from bench.bench_export import bench_export
    from bench.host_bench import BenchConfig
    from edge.export import ExportConfig, export_checkpoint
    from trainer.checkpoint import read_checkpoint, save_checkpoint
    from trainer.models import build_model

    path = micro_ckpt(tmp_path / "run" / "student.pt", mini_data_cfg)
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["arch"], **ckpt["config"]["model"])
    model.load_state_dict(ckpt["state_dict"])
    save_checkpoint(path, arch=ckpt["arch"], model_kwargs=ckpt["config"]["model"], model=model, metrics={},
                    label_names=ckpt["label_names"], preprocess=ckpt["preprocess"],
                    config={**ckpt["config"], "task": task})
    torch.manual_seed(0)
    manifest = export_checkpoint(path, tmp_path / "run" / "export", ExportConfig(formats=("toy",), parity_samples=4))
    assert manifest["task"] == task
    [artifact] = manifest["artifacts"]
    assert artifact["file"] == "student_toy_fp32.pt2" and artifact["status"] == "ok", artifact["reason"]
    assert artifact["parity"]["max_abs"] < 1e-5
    report, paths = bench_export(tmp_path / "run" / "export", tmp_path / "bench", "host",
                                 BenchConfig(iterations=2, warmup=0))
    eager, toy = report["results"]
    assert toy["runtime"] == "toy-torch-export" and toy["status"] == "ok" and toy["top1_agreement"] == 100.0
    assert report["task"] == task
    if task == "toy":  # the task's own figures reach the report rows and its column the report
        assert toy["toy"] == eager["toy"] == {"error %": 100.0 - eager["accuracy"]["top1"]}
        assert "top-1 (toy) %" in paths["report.md"].read_text()


def test_every_run_flow_has_the_cli_presets():
    """`--preset`'s choices are a constant (so `--help` does not load PyTorch); every flow must have exactly them."""
    from bench.cli.console import PRESET_NAMES
    from bench.flows.clips import PRESETS
    from bench.flows.nlq import nlq_preset
    from trainer.common.io import EgoedgeError

    assert tuple(PRESETS) == PRESET_NAMES
    assert [nlq_preset(name).preset for name in PRESET_NAMES] == list(PRESET_NAMES)
    with pytest.raises(EgoedgeError, match="unknown preset"):
        nlq_preset("huge")


def test_device_choices_come_from_the_device_registry():
    from bench.device_runners.run import parse_device_specs
    from bench.devices import DEVICES, device_choices

    assert device_choices() == "host, aihub[:NAME], android[:SERIAL], emulator[:SERIAL], ios[:UDID]"
    assert parse_device_specs("emulator:emulator-5554,host") == ["emulator:emulator-5554", "host"]
    assert DEVICES.get("emulator").base == "android"


class DriftingExporter(ToyExporter):
    """A backend with a real bug: it exports the model with its classifier's weights slightly off."""

    format, runtime = "drifting", "drifting-torch-export"

    def export(self, model, example_inputs, path, precision, calibration, names=None) -> dict:
        import copy

        import torch

        broken = copy.deepcopy(model)
        with torch.no_grad():
            for p in broken.head.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return super().export(broken, example_inputs, path, precision, calibration, names)


def test_the_default_gate_refuses_a_wrong_artifact_and_bench_says_why(monkeypatch, tmp_path, mini_data_cfg,
                                                                      micro_ckpt):
    """Not an extreme threshold: the default gate (fp32 max |Δ| 1e-4) catches a backend that drifts."""
    from bench.bench_export import bench_export
    from bench.host_bench import BenchConfig
    from bench.runners import RUNNERS
    from bench.runners.artifact import ArtifactRunner
    from edge.export import ExportConfig, export_checkpoint
    from edge.exporters import EXPORTERS

    monkeypatch.setitem(EXPORTERS._items, "drifting", DriftingExporter())
    monkeypatch.setitem(RUNNERS._items, "drifting", ArtifactRunner("drifting", DriftingExporter.runtime))
    path = micro_ckpt(tmp_path / "run" / "student.pt", mini_data_cfg)
    manifest = export_checkpoint(path, tmp_path / "run" / "export", ExportConfig(formats=("drifting",),
                                                                                  parity_samples=4))
    [artifact] = manifest["artifacts"]
    assert artifact["status"] == "failed" and artifact["reason"].startswith("max |logit diff|")
    assert artifact["parity"]["max_abs"] > 1e-3
    report, _ = bench_export(tmp_path / "run" / "export", tmp_path / "bench", "host",
                             BenchConfig(iterations=2, warmup=0))
    row = next(r for r in report["results"] if r["name"] == "student_drifting_fp32")
    assert row["status"] == "failed" and row["latency_ms"] is not None  # measured, but reported as refused
    assert row["error"].startswith("refused by the parity gate: max |logit diff|")
