"""`egoedge embed`: artifacts, manifest and sample clip into the Android app's assets, checked."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.cli import app as cli
from egoedge.edge.embed import ASSETS, EmbedConfig, embed
from egoedge.edge.schema import schema_errors
from egoedge.trainer.common.io import EgoedgeError, sha256_file

APP_SOURCE = Path(__file__).resolve().parent.parent / "android_demo"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fp32_export):
    """A run folder with an export holding app formats (one refused by the gate) and one the app cannot run."""
    run = tmp_path_factory.mktemp("run")
    shutil.copytree(fp32_export.parent, run, dirs_exist_ok=True)
    manifest = json.loads((run / "export/manifest.json").read_text())
    # One artifact refused by the gate, as a too-lossy int8 would be.
    refused = next(a for a in manifest["artifacts"] if a["format"] == "tflite")
    refused.update(status="failed", reason="top-1 agreement 81.25% < 99.0%")
    (run / "export/manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture
def app_dir(tmp_path):
    """A copy of the project files embed looks at (not the sources: they are not needed)."""
    app = tmp_path / "android_demo"
    (app / "app").mkdir(parents=True)
    for rel in ("settings.gradle.kts", "app/build.gradle.kts", "gradle/libs.versions.toml"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(APP_SOURCE / rel, app / rel)
    return app


def test_embeds_what_the_app_can_run_and_passed_the_gate(run_dir, app_dir):
    summary = embed(run_dir, app_dir)
    assets = app_dir / ASSETS
    manifest = json.loads((assets / "manifest.json").read_text())
    assert schema_errors(manifest, "manifest") == []
    assert [a["file"] for a in manifest["artifacts"]] == ["models/student_executorch_fp32.pte"]
    for a in manifest["artifacts"]:
        assert sha256_file(assets / a["file"]) == a["sha256"]
        assert (assets / a["file"]).stat().st_size == a["bytes"]
    src = json.loads((run_dir / "export/manifest.json").read_text())
    assert manifest["embedded"]["manifest_sha256"] == sha256_file(run_dir / "export/manifest.json")
    assert manifest["source"] == src["source"]
    sample = manifest["sample"]
    clip = np.frombuffer((assets / sample["clip"]).read_bytes(), dtype=np.uint8).reshape(sample["shape"])
    assert np.array_equal(clip, np.load(run_dir / "export/sample_clip.npy"))
    assert np.allclose(sample["reference_logits"], np.load(run_dir / "export/sample_output.npy").ravel())
    assert summary["warnings"] == [] and not list(assets.glob(".egoedge-*"))


def test_patterns_choose_and_a_new_embed_replaces_the_old(run_dir, app_dir):
    embed(run_dir, app_dir)
    (app_dir / ASSETS / "models/stale.pte").write_bytes(b"old")
    embed(run_dir / "export", app_dir, EmbedConfig(models=("*executorch*",), sample=False))
    assets = app_dir / ASSETS
    assert sorted(p.name for p in (assets / "models").iterdir()) == ["student_executorch_fp32.pte"]
    manifest = json.loads((assets / "manifest.json").read_text())
    assert "sample" not in manifest and not (assets / "sample").exists()


@pytest.mark.parametrize("models,message", [
    (("student_tflite_fp32",), "refusing student_tflite_fp32: it failed the parity gate (top-1 agreement"),
    (("student_onnx_fp32",), "student_onnx_fp32 is onnx; the Android app runs executorch, tflite"),
    (("*_int8",), "no artifact matches '*_int8'; exported: student_executorch_fp32"),
])
def test_refuses_what_cannot_ship(run_dir, app_dir, models, message):
    with pytest.raises(EgoedgeError, match=message.replace("(", r"\(").replace("*", r"\*")):
        embed(run_dir, app_dir, EmbedConfig(models=models))
    assert not (app_dir / ASSETS / "manifest.json").exists()


def test_refuses_an_artifact_changed_since_export(run_dir, app_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    with open(run / "export/student_executorch_fp32.pte", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EgoedgeError, match="changed since export"):
        embed(run, app_dir)


@pytest.mark.parametrize("where,message", [("no_run", "no manifest.json in"), ("no_app", "is not the Android demo"),
                                           ("bad_manifest", "does not follow the manifest schema: artifacts/0")])
def test_bad_places_are_named(run_dir, app_dir, tmp_path, where, message):
    run, app = run_dir, app_dir
    if where == "no_run":
        run = tmp_path / "empty"
        run.mkdir()
    elif where == "no_app":
        app = tmp_path
    else:
        run = tmp_path / "run"
        shutil.copytree(run_dir, run)
        manifest = json.loads((run / "export/manifest.json").read_text())
        del manifest["artifacts"][0]["labels"]
        (run / "export/manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EgoedgeError, match=message):
        embed(run, app)


@pytest.mark.parametrize("spoil,message", [
    ("delete", "has no sample clip (exported by an older egoedge?)"),
    ("brighten", "the app's preprocessing of sample_clip.npy does not give sample_input.npy"),
])
def test_refuses_a_sample_clip_that_does_not_match_its_input(run_dir, app_dir, tmp_path, spoil, message):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    clip = run / "export/sample_clip.npy"
    if spoil == "delete":
        clip.unlink()
    else:
        np.save(clip, np.clip(np.load(clip).astype(np.int16) + 1, 0, 255).astype(np.uint8))
    with pytest.raises(EgoedgeError, match=re.escape(message)):
        embed(run, app_dir)
    assert embed(run, app_dir, EmbedConfig(sample=False))["manifest"]["artifacts"]  # --no-sample still embeds


def test_warns_when_the_app_links_an_older_executorch(run_dir, app_dir):
    toml = app_dir / "gradle/libs.versions.toml"
    toml.write_text(toml.read_text().replace('executorch = "', 'executorch = "0.7.0" # was "', 1))
    warnings = embed(run_dir, app_dir)["warnings"]
    assert len(warnings) == 1 and "exported with executorch" in warnings[0] and "links executorch 0.7.0" in warnings[0]


def test_cli_embed(run_dir, app_dir):
    result = CliRunner().invoke(cli, ["embed", str(run_dir), "--app", str(app_dir), "--models", "student_executorch_*"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "models/student_executorch_fp32.pte" in out and "./gradlew installDebug" in out
    bad = CliRunner().invoke(cli, ["embed", str(run_dir), "--app", str(app_dir), "--models", "student_onnx_fp32"])
    assert_one_line_error(bad)
