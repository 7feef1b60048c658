"""The layout's promises, checked: one import package, layers that import only downwards, no import cycles
(imports inside functions count), and every list from a registry."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Repository folder -> the package it installs as (setup.py), in layer order: each imports only those below it.
PACKAGES = {"egoedge": "egoedge", "bench": "egoedge.bench", "edge": "egoedge.edge", "trainer": "egoedge.trainer"}
LAYERS = ("egoedge.trainer", "egoedge.edge", "egoedge.bench", "egoedge")  # bottom to top


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages (a package is its ``__init__``)."""
    out = {}
    for folder, package in PACKAGES.items():
        for f in (root / folder).rglob("*.py"):
            parts = [package, *f.relative_to(root / folder).with_suffix("").parts]
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def layer(module: str) -> int:
    """The index in :data:`LAYERS` of the layer ``module`` belongs to."""
    return max((i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")),
               key=lambda i: len(LAYERS[i]))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import of a module from a higher layer (the application root package excepted)."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if b != "egoedge" and layer(b) > layer(a))


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


def _fake_tree(tmp_path: Path) -> Path:
    for folder in PACKAGES:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    return tmp_path


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    root = _fake_tree(tmp_path)
    (root / "trainer" / "a.py").write_text("from egoedge.trainer.b import x\n")
    (root / "trainer" / "b.py").write_text("def x():\n    from egoedge.trainer import a\n    return a\n")
    (root / "edge" / "c.py").write_text("from . import d\n")
    (root / "edge" / "d.py").write_text("import egoedge.edge.c\n")
    assert sorted(cycles(import_graph(modules(root)))) == [["egoedge.edge.c", "egoedge.edge.d"],
                                                            ["egoedge.trainer.a", "egoedge.trainer.b"]]


def test_the_layer_check_sees_an_upward_import_inside_a_function(tmp_path):
    root = _fake_tree(tmp_path)
    (root / "bench" / "m.py").write_text("def f():\n    from egoedge.pipeline import run\n")
    (root / "egoedge" / "pipeline.py").write_text("from egoedge.bench import m\n")
    (root / "trainer" / "t.py").write_text("from ..edge import c\n")
    (root / "edge" / "c.py").write_text("from egoedge.trainer import t\n")
    assert upward_imports(import_graph(modules(root))) == ["egoedge.bench.m -> egoedge.pipeline",
                                                           "egoedge.trainer.t -> egoedge.edge.c"]


def test_no_import_cycles():
    assert cycles(import_graph(modules())) == []


def test_layers_import_only_downwards():
    """app (egoedge.cli, egoedge.pipeline) -> bench -> edge -> trainer; imports inside functions count."""
    assert upward_imports(import_graph(modules())) == []


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package(tmp_path):
    """`egoedge` is the only name the distribution puts into site-packages (`trainer` is Coqui's, `bench`
    and `edge` anyone's), and the layer folders land inside it with their data files."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", *PACKAGES):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("egoedge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"egoedge", wheel.name.split("-py")[0] + ".dist-info"}
    for expected in ("egoedge/cli/__init__.py", "egoedge/pipeline/clips.py", "egoedge/trainer/train.py",
                     "egoedge/edge/export.py", "egoedge/bench/host_bench.py",
                     "egoedge/edge/schemas/manifest.schema.json",
                     "egoedge/edge/schemas/app_result.schema.json"):
        assert expected in names
    entry = zipfile.ZipFile(wheel).read(wheel.name.split("-py")[0] + ".dist-info/entry_points.txt").decode()
    assert "egoedge = egoedge.cli:main" in entry


def test_the_manifest_schema_lists_exactly_the_registered_backends():
    from egoedge.edge.exporters import EXPORTERS

    schema = json.loads((ROOT / "edge" / "schemas" / "manifest.schema.json").read_text())
    formats = schema["$defs"]["artifact"]["properties"]["format"]["enum"]
    assert sorted(formats) == sorted(EXPORTERS.keys())


def test_every_backend_has_a_host_runtime_and_every_task_a_pipeline():
    from egoedge.bench.runtimes import RUNTIMES
    from egoedge.edge.exporters import EXPORTERS
    from egoedge.pipeline import PIPELINES
    from egoedge.trainer.tasks import TASKS

    assert set(EXPORTERS.keys()) <= set(RUNTIMES.keys())
    assert {TASKS.get(t).flow for t in TASKS.keys()} - {None} == set(PIPELINES.keys())


@pytest.mark.parametrize("task", ["recognition", "anticipation", "nlq"])
def test_tasks_are_registered_and_say_what_differs(task):
    from egoedge.trainer.tasks import TASKS

    t = TASKS.get(task)
    assert t.name == task and t.unit in ("clip", "query") and t.metric_column.endswith("%")
    assert t.gate.int8_min_agreement > 0 and t.report_note


def test_no_module_outside_the_tasks_tests_a_task_name():
    """Stages ask the task what differs; the string of a task name appears only where that task lives."""
    allowed = {"trainer/tasks", "trainer/nlq", "trainer/models/vslnet.py", "egoedge/pipeline/nlq.py",
               "egoedge/cli/nlq.py"}
    offenders = []
    for folder in PACKAGES:
        for f in (ROOT / folder).rglob("*.py"):
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


def load_toy_task(monkeypatch) -> None:
    """Import tests/plugins/toy_task.py afresh, its registrations undone after the test."""
    import importlib.util

    from egoedge.trainer.data.labeling import LABELINGS
    from egoedge.trainer.tasks import TASKS

    for registry in (TASKS, LABELINGS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    spec = importlib.util.spec_from_file_location("toy_task", ROOT / "tests" / "plugins" / "toy_task.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.fixture
def toy_registered(monkeypatch):
    """Register the toy backend (its exporter; the bench runs it through ArtifactRuntime) and the toy task."""
    from egoedge.bench.runtimes import RUNTIMES
    from egoedge.bench.runtimes.artifact import ArtifactRuntime
    from egoedge.edge.exporters import EXPORTERS

    monkeypatch.setitem(EXPORTERS._items, "toy", ToyExporter())
    monkeypatch.setitem(RUNTIMES._items, "toy", ArtifactRuntime("toy", ToyExporter.runtime))
    load_toy_task(monkeypatch)


@pytest.mark.parametrize("task", ["recognition", "toy"])
def test_a_registered_backend_and_task_go_through_export_and_bench(task, toy_registered, tmp_path, mini_data_cfg,
                                                                   micro_ckpt):
    import torch

    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig
    from egoedge.edge.export import ExportConfig, export_checkpoint
    from egoedge.trainer.checkpoint import read_checkpoint, save_checkpoint
    from egoedge.trainer.models import build_model

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


TOY = ROOT / "tests" / "plugins" / "toy_task.py"


def test_a_third_task_is_one_module_through_train_export_and_bench(tmp_path):
    """tests/plugins/toy_task.py adds the ``toy`` task (its labeling, its metric) in one module named in
    EGOEDGE_PLUGINS: ``egoedge run --task toy`` trains, exports (the export spawned beside the run loads it
    too) and benches it, and nothing else in egoedge knows the task."""
    from egoedge.trainer.checkpoint import read_checkpoint
    from egoedge.trainer.tasks import checkpoint_task_name

    out = tmp_path / "toy"
    done = subprocess.run([sys.executable, "-m", "egoedge", "run", "--task", "toy", "--preset", "mini",
                           "--out", str(out)], env={**os.environ, "EGOEDGE_PLUGINS": str(TOY)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("teacher.pt", "student.pt", "student_cbkd.pt"):
        assert checkpoint_task_name(read_checkpoint(out / name)) == "toy"
    for folder in ("export", "export_cbkd"):
        manifest = json.loads((out / folder / "manifest.json").read_text())
        assert manifest["task"] == "toy" and all(a["status"] == "ok" for a in manifest["artifacts"])
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "toy"
    assert {s["name"] for s in report["stages"]} >= {"data", "teacher", "student", "cbkd", "bench"}
    for row in report["results"]:  # the task's own figure on every row, from its own score()
        assert row["toy"] == {"error %": pytest.approx(100.0 - row["accuracy"]["top1"])}, row["name"]
    assert "top-1 (toy) %" in (out / "report.md").read_text()


def test_a_clip_task_labels_its_clips_its_own_way(monkeypatch):
    """The toy task's labeling (clips played backwards) is what the synthetic source generates for it."""
    import numpy as np

    from egoedge.trainer.data import DataConfig, load_split

    load_toy_task(monkeypatch)
    cfg = DataConfig(frames=3, size=16, train=4, val=4, test=4)
    forward, rewound = (load_split(replace(cfg, task=t), "val") for t in ("recognition", "toy"))
    np.testing.assert_array_equal(rewound.clips, forward.clips[:, ::-1])
    np.testing.assert_array_equal(rewound.labels, forward.labels)


def test_bad_plugins_and_tasks_are_one_line(tmp_path):
    from egoedge.pipeline import pipeline_for
    from egoedge.trainer.common.io import EgoedgeError
    from egoedge.trainer.data import DataConfig, load_split

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half written')\n")
    for spec, line in ((str(tmp_path / "none.py"), "error: EGOEDGE_PLUGINS: no such file: "),
                       (str(broken), "error: EGOEDGE_PLUGINS: " + str(broken) + " did not import: RuntimeError: "
                                     "half written")):
        done = subprocess.run([sys.executable, "-m", "egoedge", "--help"], env={**os.environ, "EGOEDGE_PLUGINS": spec},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr
    with pytest.raises(EgoedgeError, match="egoedge does not train --task model models"):
        pipeline_for("model")
    with pytest.raises(EgoedgeError, match="unknown clip task 'nlq'; valid: anticipation, recognition"):
        load_split(DataConfig(task="nlq"), "val")


def test_every_pipeline_has_the_cli_presets():
    """`--preset`'s choices are a constant (so `--help` does not load PyTorch); each pipeline has exactly them."""
    from egoedge.cli.console import PRESET_NAMES
    from egoedge.pipeline.clips import PRESETS
    from egoedge.pipeline.nlq import nlq_preset
    from egoedge.trainer.common.io import EgoedgeError

    assert tuple(PRESETS) == PRESET_NAMES
    assert [nlq_preset(name).preset for name in PRESET_NAMES] == list(PRESET_NAMES)
    with pytest.raises(EgoedgeError, match="unknown preset"):
        nlq_preset("huge")


def test_device_choices_come_from_the_device_registry():
    from egoedge.bench.devices import DEVICES, device_choices
    from egoedge.bench.devices.on_device.dispatch import parse_device_specs

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
    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig
    from egoedge.bench.runtimes import RUNTIMES
    from egoedge.bench.runtimes.artifact import ArtifactRuntime
    from egoedge.edge.export import ExportConfig, export_checkpoint
    from egoedge.edge.exporters import EXPORTERS

    monkeypatch.setitem(EXPORTERS._items, "drifting", DriftingExporter())
    monkeypatch.setitem(RUNTIMES._items, "drifting", ArtifactRuntime("drifting", DriftingExporter.runtime))
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
