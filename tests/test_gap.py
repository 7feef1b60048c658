"""Per-layer numeric gap files of int8 artifacts, `egoedge inspect`, and report.md's worst layers."""

import json

import pytest
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.cli import app
from egoedge.edge.exporters import EXPORTERS
from egoedge.edge.gap import FORMAT, gap_path, read_gap, worst_table
from egoedge.trainer.common.io import EgoedgeError


def _static_int8_artifacts(manifest: dict) -> list[dict]:
    """Clip artifacts, the fused streaming steps and both halves of each streaming pair."""
    return [a for a in manifest["artifacts"] if a["file"] and a["precision"] in ("int8", "w8a8")]


@pytest.mark.parametrize("fmt", sorted(EXPORTERS.keys()))
def test_every_static_int8_artifact_has_its_gap_file_and_inspect_reads_it(full_export, fmt):
    export, manifest = full_export
    artifacts = [a for a in _static_int8_artifacts(manifest) if a["format"] == fmt]
    roles = {a.get("role", "clip") for a in artifacts}
    pairs = {"frame_encoder", "temporal_head"} if fmt in ("executorch", "tflite") else set()  # the app's runtimes
    assert roles == {"clip", "stream_step"} | pairs
    assert not any("layer_gap" in (a.get("backend") or {}) for a in manifest["artifacts"])  # in the files only
    for a in artifacts:
        assert a["gap"] == gap_path(export / a["file"]).name
        gap = json.loads((export / a["gap"]).read_text())
        assert gap["format"] == FORMAT and gap["artifact"] == a["file"] and gap["samples"] > 0
        # ONNX Runtime's QDQ model is read layer by layer from the runtime; the others lower the PT2E program whole.
        assert gap["measured"] == ("runtime" if fmt == "onnx" else "program")
        layers = gap["layers"]
        assert len(layers) >= 2 and all(isinstance(r["lost_db"], float) and r["max_abs"] >= 0 for r in layers)
        assert any(r["int8"] for r in layers) and any(r["op"].lower().startswith(("conv", "linear", "gemm", "matmul"))
                                                      for r in layers)
        if a.get("role") != "clip":
            continue
        result = CliRunner().invoke(app, ["inspect", str(export / a["file"]), "--top", "3"])
        assert result.exit_code == 0, result.output
        worst = sorted((r for r in layers if r["int8"]), key=lambda r: r["lost_db"], reverse=True)[0]
        assert a["file"] in result.output and worst["op"][:4] in result.output
        assert "worst 3 layers" in result.output


def test_inspect_of_an_artifact_without_a_gap_is_one_line(full_export, tmp_path):
    export, manifest = full_export
    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32" and a["file"])
    assert_one_line_error(CliRunner().invoke(app, ["inspect", str(export / fp32["file"])]), "no ")
    broken = tmp_path / "x_onnx_int8.gap.json"
    broken.write_text('{"format": "something else"}')
    assert_one_line_error(CliRunner().invoke(app, ["inspect", str(broken)]), "not a readable gap file")
    with pytest.raises(EgoedgeError, match="no x_int8.gap.json beside it"):
        read_gap(tmp_path / "x_int8.onnx")


def test_worst_table_lists_the_layers_that_lose_most_first():
    gap = {"layers": [
        {"layer": "a", "op": "conv2d", "int8": True, "sqnr_db": 30.0, "lost_db": 1.0, "max_abs": 0.1},
        {"layer": "b", "op": "linear", "int8": True, "sqnr_db": 20.0, "lost_db": 9.5, "max_abs": 0.5},
        {"layer": "c", "op": "linear", "int8": False, "sqnr_db": None, "lost_db": 20.0, "max_abs": 0.0}]}
    lines = worst_table(gap, 5)
    assert lines[2].startswith("| b | linear | 20.0 | +9.5") and lines[3].startswith("| a |") and len(lines) == 4
    assert worst_table({"layers": [gap["layers"][2]]}) == ["(no int8 layer: every layer runs in float)"]
