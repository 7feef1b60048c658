import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Keep tests deterministic and light on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Nothing downloads in tests: a pretrained path that tried would fail at once (set before huggingface_hub loads).
os.environ["HF_HUB_OFFLINE"] = "1"
_FULL_EXPORT = pytest.StashKey[tuple]()


def mini_data():
    """The tiny generated dataset every micro-student checkpoint of the suite is made for."""
    from egoedge.trainer.data import DataConfig

    return DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)


@pytest.fixture(scope="session")
def mini_data_cfg():
    return mini_data()


def make_ckpt(path, data_cfg, preprocess=None):
    """An untrained micro-MobileViT student checkpoint for ``data_cfg`` (optionally with a wrong preprocess)."""
    from dataclasses import asdict

    import torch

    from egoedge.trainer.checkpoint import save_checkpoint
    from egoedge.trainer.data import label_names, preprocess_spec
    from egoedge.trainer.models import build_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 16, "frames": data_cfg.frames, "size": data_cfg.size, "variant": "micro"}
    save_checkpoint(path, arch="mobilevit", model_kwargs=kwargs, model=build_model("mobilevit", **kwargs),
                    metrics={}, label_names=label_names(data_cfg), preprocess=preprocess or preprocess_spec(data_cfg),
                    config={"data": asdict(data_cfg)})
    return path


@pytest.fixture
def micro_ckpt():
    """``micro_ckpt(path, data_cfg, preprocess=None)`` writes a checkpoint and returns its path."""
    return make_ckpt


@pytest.fixture(scope="session")
def nlq_data(tmp_path_factory):
    """A tiny generated NLQ dataset (24 train queries, 8-d features, 24 steps, 10 query tokens)."""
    from egoedge.trainer.nlq.dataset import NLQDataSpec, load_data
    from egoedge.trainer.nlq.synthetic import NLQDataConfig, generate

    cfg = NLQDataConfig(train_clips=12, val_clips=4, test_clips=4, queries=2, dim=8, min_seconds=10, max_seconds=30)
    root = generate(cfg, tmp_path_factory.mktemp("nlq"))
    return load_data(NLQDataSpec(str(root), max_pos_len=24, max_query_len=10))


def assert_one_line_error(result, message: str | None = None) -> str:
    """A CLI result that failed the way egoedge promises: exit 1 through its own `fail` (an uncaught exception
    would be a traceback for a user; Typer's test runner hides it, so check the exception, not the text),
    with one `error:` line. Returns that line with white space folded."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {type(result.exception).__name__}: {result.exception}"
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    text = " ".join(result.output[result.output.index("error:"):].split())
    if message is not None:
        assert message in text, text
    return text


@pytest.fixture(scope="session")
def fp32_export(tmp_path_factory, mini_data_cfg):
    """An untrained micro student (``student.pt``) exported fp32 to ExecuTorch, LiteRT and ONNX, once per session.

    Shared read-only by every file that benches, profiles, embeds or ships an export; a test that
    changes it works on a copy (``shutil.copytree(fp32_export.parent, ...)``: the checkpoint comes along).
    """
    from egoedge.edge.export import ExportConfig, export_checkpoint

    root = tmp_path_factory.mktemp("fp32_export")
    make_ckpt(root / "student.pt", mini_data_cfg)
    export_checkpoint(root / "student.pt", root / "export",
                      ExportConfig(formats=("executorch", "tflite", "onnx"), parity_samples=4))
    return root / "export"


def build_full_export(root: Path) -> dict:
    """Every backend x every precision it makes, with fused streaming steps (pairs for ExecuTorch and LiteRT), from
    one untrained micro student; returns the manifest (the export is ``root / "export"``)."""
    from egoedge.edge.export import ExportConfig, export_checkpoint
    from egoedge.edge.exporters import EXPORTERS
    from egoedge.edge.parity import ParityGate

    make_ckpt(root / "student.pt", mini_data())
    # Pairs for the app's runtimes only, as the quick preset makes them; every backend gets its fused step.
    cfg = ExportConfig(formats=tuple(EXPORTERS.keys()), int8=True, calibration=16, parity_samples=8,
                       gate=ParityGate(int8_min_agreement=0.0, int8_max_accuracy_drop=100.0), streaming=True,
                       pair_formats=("executorch", "tflite"))
    return export_checkpoint(root / "student.pt", root / "export", cfg)


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` have deselected: build only for the tests that will run
def pytest_collection_modifyitems(session, config, items):
    """Start building the shared every-backend export (minutes, mostly on one core) in a background process,
    and run the test files that read it last, so the other tests use the second core meanwhile."""
    late = {item.module for item in items if "full_export" in getattr(item, "fixturenames", ())}
    if not late or config.option.collectonly:
        return
    items[:] = [i for i in items if i.module not in late] + [i for i in items if i.module in late]
    root = Path(tempfile.mkdtemp(prefix="egoedge-full-export-"))
    code = "import sys; from pathlib import Path; from conftest import build_full_export; " \
           "build_full_export(Path(sys.argv[1]))"
    # At the lowest priority: it takes the cycles the running tests leave (most phases use one core), and a
    # test that trains on both cores is not slowed by it.
    with (root / "build.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(root)], cwd=Path(__file__).parent, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                preexec_fn=lambda: os.nice(19))
    config.stash[_FULL_EXPORT] = (proc, root)


def pytest_unconfigure(config):
    proc, root = config.stash.get(_FULL_EXPORT, (None, None))
    if proc is not None:
        proc.kill()
        proc.wait()
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def full_export(request):
    """``(export folder, manifest)`` of :func:`build_full_export`, shared read-only by the export matrix, the
    streaming, gap and app contract tests. The gate is lenient: an untrained model's logits are near ties any
    int8 flips. Built in the background from collection on (see ``pytest_collection_modifyitems``)."""
    proc, root = request.config.stash.get(_FULL_EXPORT, (None, None))
    if proc is None:  # collected some other way: build it here
        root = Path(tempfile.mkdtemp(prefix="egoedge-full-export-"))
        request.config.stash[_FULL_EXPORT] = (None, root)
        return root / "export", build_full_export(root)
    assert proc.wait() == 0, (root / "build.log").read_text()[-3000:]
    return root / "export", json.loads((root / "export" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """``egoedge run --preset mini`` once per session: ``(run folder, terminal output)``; read-only (copy to change)."""
    from typer.testing import CliRunner

    from egoedge.cli import app

    out = tmp_path_factory.mktemp("runs") / "mini"
    result = CliRunner().invoke(app, ["run", "--preset", "mini", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output
