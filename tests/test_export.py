import json

import numpy as np
import pytest
import torch

from edge.export import ExportConfig, export_checkpoint
from edge.exporters import EXPORTERS, ExportError
from edge.parity import ParityGate, compare
from trainer.checkpoint import save_checkpoint
from trainer.common.io import EgoedgeError, sha256_file
from trainer.data import label_names, preprocess_spec
from trainer.models import build_model


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory, mini_data_cfg):
    from dataclasses import asdict

    torch.manual_seed(0)
    kwargs = {"num_classes": 16, "frames": mini_data_cfg.frames, "size": mini_data_cfg.size, "variant": "micro"}
    path = tmp_path_factory.mktemp("run") / "student.pt"
    save_checkpoint(path, arch="mobilevit", model_kwargs=kwargs, model=build_model("mobilevit", **kwargs),
                    metrics={}, label_names=label_names(mini_data_cfg), preprocess=preprocess_spec(mini_data_cfg),
                    config={"data": asdict(mini_data_cfg)})
    return path


@pytest.mark.slow
def test_executorch_export_parity_and_manifest(student_ckpt):
    out = student_ckpt.parent / "export"
    manifest = export_checkpoint(student_ckpt, out, ExportConfig(parity_samples=8))
    (art,) = manifest["artifacts"]
    assert art["status"] == "ok", art["reason"]
    assert art["parity"]["max_abs"] <= 1e-4 and art["parity"]["top1_agreement"] == 100.0
    assert art["backend"]["delegated_subgraphs"] >= 1 and art["backend"]["delegated_nodes"] > 0
    assert art["file"] == "student_executorch_fp32.pte"
    assert art["sha256"] == sha256_file(out / art["file"]) and art["bytes"] == (out / art["file"]).stat().st_size
    assert art["inputs"][0]["shape"] == [1, 2, 3, 32, 32] and art["outputs"][0]["shape"] == [1, 16]
    assert set(art["preprocess"]) == {"size", "mean", "std", "frames", "layout"}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert (out / on_disk["source"]["checkpoint"]).resolve() == student_ckpt.resolve()
    # The saved sample reproduces the reference output through the artifact.
    x, y = np.load(out / "sample_input.npy"), np.load(out / "sample_output.npy")
    session = EXPORTERS.get("executorch").load(out / art["file"])
    np.testing.assert_allclose(session([x])[0], y, atol=1e-4)


def test_unknown_backend_fails_before_work(student_ckpt, tmp_path):
    with pytest.raises(KeyError, match="valid: executorch"):
        export_checkpoint(student_ckpt, tmp_path, ExportConfig(formats=("tensorrt",)))
    assert not (tmp_path / "manifest.json").exists()


def test_unsupported_precision_is_export_error(tmp_path):
    model = build_model("mobilevit", num_classes=2, frames=1, size=32, variant="micro")
    with pytest.raises(ExportError, match="executorch: precision 'int4'"):
        EXPORTERS.get("executorch").export(model, model.example_inputs(), tmp_path / "m.pte", "int4")


def test_parity_batch_larger_than_val_is_clear(student_ckpt, tmp_path):
    with pytest.raises(EgoedgeError, match="parity batch of 999"):
        export_checkpoint(student_ckpt, tmp_path, ExportConfig(parity_samples=999))


def test_parity_gate():
    gate = ParityGate()
    ref = {"top1": 80.0}
    assert gate.check("fp32", {"max_abs": 5e-5, "top1_agreement": 100.0}, ref, ref) is None
    assert "max |logit diff|" in gate.check("fp32", {"max_abs": 1e-2, "top1_agreement": 100.0}, ref, ref)
    assert "agreement" in gate.check("int8", {"max_abs": 1.0, "top1_agreement": 97.0}, ref, ref)
    assert "drop" in gate.check("int8", {"max_abs": 1.0, "top1_agreement": 99.5}, {"top1": 78.0}, ref)
    a = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert compare(a, a + [[0, 0], [0, 4.0]]) == {"max_abs": 4.0, "top1_agreement": 50.0}
