import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Keep tests deterministic and light on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Nothing downloads in tests: a pretrained path that tried would fail at once (set before huggingface_hub loads).
os.environ["HF_HUB_OFFLINE"] = "1"
_SHARED = pytest.StashKey[tuple]()


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


def rounds_with_a_bias():
    """A depthwise 3x3 conv whose weights round to int8 with a bias (nine per channel, most small), then a 1x1 conv
    and a classifier ``fc``: on positive inputs its int8 outputs shift unless bias correction takes the shift back."""
    import torch

    class RoundsWithABias(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
            self.pw = torch.nn.Conv2d(16, 8, 1)
            self.fc = torch.nn.Linear(8, 10)
            with torch.no_grad():
                self.dw.weight.copy_(torch.randn(16, 1, 3, 3) * torch.logspace(-2, 0, 9).view(1, 1, 3, 3))

        def forward(self, x):
            return self.fc(self.pw(self.dw(x)).mean((2, 3)))

    return RoundsWithABias().eval()


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


def build_fp32_export(root: Path) -> Path:
    """An untrained micro student (``student.pt``) exported fp32 to ExecuTorch, LiteRT and ONNX; returns the export."""
    from egoedge.edge.export import ExportConfig, export_checkpoint

    make_ckpt(root / "student.pt", mini_data())
    export_checkpoint(root / "student.pt", root / "export",
                      ExportConfig(formats=("executorch", "tflite", "onnx"), parity_samples=4))
    return root / "export"


def build_mini_run(root: Path) -> tuple[Path, str]:
    """``egoedge run --preset mini`` through the CLI runner; returns ``(run folder, terminal output)``."""
    from typer.testing import CliRunner

    from egoedge.cli import app

    out = root / "mini"
    result = CliRunner().invoke(app, ["run", "--preset", "mini", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (root / "output.txt").write_text(result.output)
    return out, result.output


def build_full_export(root: Path) -> dict:
    """Every backend x every precision it makes, with fused streaming steps (pairs for ExecuTorch and LiteRT), from
    one untrained micro student; returns the manifest (the export is ``root / "export"``)."""
    from egoedge.edge.export import ExportConfig, export_checkpoint
    from egoedge.edge.exporters import EXPORTERS
    from egoedge.edge.parity import ParityGate

    make_ckpt(root / "student.pt", mini_data())
    # Every backend gets its fused step, as in the quick run; pairs (which `export --streaming` makes and the app
    # runs too) for the app's runtimes only.
    cfg = ExportConfig(formats=tuple(EXPORTERS.keys()), int8=True, calibration=16, parity_samples=8,
                       gate=ParityGate(int8_min_agreement=0.0, int8_max_accuracy_drop=100.0), streaming=True,
                       pair_formats=("executorch", "tflite"))
    return export_checkpoint(root / "student.pt", root / "export", cfg)


# The session's shared builds (fixture name -> builder), in the order the background process makes them: the
# quick ones first, and the test files that read them run last in the same order.
SHARED_BUILDS = {"fp32_export": build_fp32_export, "mini_run": build_mini_run, "full_export": build_full_export}


def build_in_background(root: Path, names: list[str]) -> None:
    """Make each named shared build in ``root / NAME``, marking each finished one with a ``.done`` file."""
    for name in names:
        (root / name).mkdir()
        SHARED_BUILDS[name](root / name)
        (root / name / ".done").touch()


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` have deselected: build only for the tests that will run
def pytest_collection_modifyitems(session, config, items):
    """Start the session's shared builds (minutes, mostly on one core) in one background process, and run the
    test files that read them last, so the other tests use the second core meanwhile."""
    def needs(item) -> list[str]:
        return [n for n in SHARED_BUILDS if n in getattr(item, "fixturenames", ())]

    late: dict = {}  # module -> the last build (in build order) any of its tests reads
    wanted: set[str] = set()
    for item in items:
        if names := needs(item):
            wanted.update(names)
            late[item.module] = max(late.get(item.module, 0), list(SHARED_BUILDS).index(names[-1]))
    if not late or config.option.collectonly:
        return
    items[:] = [i for i in items if i.module not in late] + sorted(
        (i for i in items if i.module in late), key=lambda i: late[i.module])  # stable: file order kept within
    names = [n for n in SHARED_BUILDS if n in wanted]
    root = Path(tempfile.mkdtemp(prefix="egoedge-shared-"))
    code = "import sys; from pathlib import Path; from conftest import build_in_background; " \
           "build_in_background(Path(sys.argv[1]), sys.argv[2:])"
    # At the lowest priority: it takes the cycles the running tests leave (most phases use one core), and a
    # test that trains on both cores is not slowed by it.
    with (root / "build.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(root), *names], cwd=Path(__file__).parent,
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                preexec_fn=lambda: os.nice(19))
    config.stash[_SHARED] = (proc, root, names)


def pytest_unconfigure(config):
    proc, root, _ = config.stash.get(_SHARED, (None, None, ()))
    if proc is not None:
        proc.kill()
        proc.wait()
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def _shared_build(request, name: str) -> Path:
    """The folder of shared build ``name``: made in the background (waited for here), else made now."""
    proc, root, names = request.config.stash.get(_SHARED, (None, None, ()))
    if proc is None or name not in names:  # collected some other way: build it here
        folder = Path(tempfile.mkdtemp(prefix=f"egoedge-{name}-"))
        request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
        SHARED_BUILDS[name](folder)
        return folder
    folder = root / name
    while not (folder / ".done").exists():
        if proc.poll() is not None and not (folder / ".done").exists():
            pytest.fail(f"the background build of {name} failed:\n" + (root / "build.log").read_text()[-3000:])
        time.sleep(0.2)
    return folder


@pytest.fixture(scope="session")
def fp32_export(request):
    """:func:`build_fp32_export`'s export folder, shared read-only by every file that benches, profiles, embeds or
    ships an export; a test that changes it works on a copy (``shutil.copytree(fp32_export.parent, ...)``: the
    checkpoint comes along)."""
    return _shared_build(request, "fp32_export") / "export"


@pytest.fixture(scope="session")
def full_export(request):
    """``(export folder, manifest)`` of :func:`build_full_export`, shared read-only by the export matrix, the
    streaming, gap and app contract tests. The gate is lenient: an untrained model's logits are near ties any
    int8 flips."""
    folder = _shared_build(request, "full_export")
    return folder / "export", json.loads((folder / "export" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def mini_run(request):
    """``egoedge run --preset mini`` once per session: ``(run folder, terminal output)``; read-only (copy to change)."""
    folder = _shared_build(request, "mini_run")
    return folder / "mini", (folder / "output.txt").read_text()
