"""Your own models: pretrained timm / Hugging Face teachers from files, timm students, export of any PyTorch model.

Everything offline: each pretrained path loads a randomly initialised model that the test saved itself.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.cli import app
from egoedge.trainer.common.io import EgoedgeError

runner = CliRunner()


@pytest.fixture(scope="module")
def splits():
    from egoedge.trainer.data import DataConfig, prepare_data
    from egoedge.trainer.stages import load_splits

    cfg = DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)
    prepare_data(cfg)
    return load_splits(cfg)


def test_weights_that_do_not_fit_are_one_line_naming_keys(tmp_path):
    from egoedge.trainer.models.weights import load_weights, read_weights

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = model.state_dict()
    bad = {"0.weight": torch.zeros(5, 4), "0.bias": state["0.bias"], "extra.weight": torch.zeros(1)}
    torch.save({"state_dict": bad}, tmp_path / "w.pt")
    with pytest.raises(EgoedgeError) as e:
        load_weights(model, read_weights(tmp_path / "w.pt"), "w.pt")
    msg = str(e.value)
    assert "\n" not in msg and "missing key(s): 1.weight, 1.bias" in msg and "unexpected key(s): extra.weight" in msg
    assert "0.weight (5, 4) vs (3, 4)" in msg
    from safetensors.torch import save_file

    save_file({f"module.{k}": v for k, v in state.items()}, tmp_path / "w.safetensors")  # a DDP-style prefix
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    load_weights(fresh, read_weights(tmp_path / "w.safetensors"), "w.safetensors")
    assert torch.equal(fresh[0].weight, model[0].weight)
    (tmp_path / "junk.pt").write_bytes(b"not weights")
    with pytest.raises(EgoedgeError, match="not a readable weights file"):
        read_weights(tmp_path / "junk.pt")


def test_unknown_timm_name_lists_close_matches():
    from egoedge.trainer.models.timm_trunk import check_timm_name

    with pytest.raises(EgoedgeError, match="close matches: .*mobilenetv3_small_100"):
        check_timm_name("mobilenetv3_smal_100")


def test_frozen_timm_teacher_from_file_fits_head_and_caches_outputs(tmp_path, splits):
    import timm

    from egoedge.trainer.checkpoint import load_model
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.frozen_teacher import cached_outputs
    from egoedge.trainer.recipes import recipe
    from egoedge.trainer.stages import ModelChoice, parse_model_spec, student_stage, teacher_stage

    full = timm.create_model("vit_tiny_patch16_224", num_classes=10)  # with a head and 224 px positions
    torch.save(full.state_dict(), tmp_path / "vit.pt")
    choice = parse_model_spec("timm:vit_tiny_patch16_224", str(tmp_path / "vit.pt"))
    assert choice.frozen
    path = teacher_stage(choice, splits, TrainConfig(epochs=1, batch_size=16), tmp_path / "run" / "teacher.pt")
    model, ckpt = load_model(path)  # rebuilds with no weights file and no download
    trunk = model.encoder.model
    assert torch.equal(trunk.blocks[0].mlp.fc1.weight, full.blocks[0].mlp.fc1.weight)  # the file's, frozen
    assert ckpt["metrics"]["frozen"]["trunk"] == "timm:vit_tiny_patch16_224"
    logits, feats = cached_outputs(path, splits.data)["train"]
    x = torch.from_numpy(__import__("egoedge.trainer.data", fromlist=["to_model_input"]).to_model_input(
        splits.train.clips[:2], ckpt["preprocess"]).numpy())
    with torch.no_grad():
        assert torch.allclose(model(x), logits[:2], atol=1e-4)  # the cache is what the whole model computes
    student = student_stage(ModelChoice("timm", "resnet10t"), [path], splits, TrainConfig(epochs=1, batch_size=16),
                            recipe("clip_kd"), "clip_kd", tmp_path / "run" / "student.pt")
    assert load_model(student)[1]["metrics"]["params"] > 0


def test_timm_download_offline_is_one_line_pointing_at_the_weights_flag():
    from egoedge.trainer.models.timm_trunk import TimmTrunk

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # conftest: no test downloads
    with pytest.raises(EgoedgeError, match="cannot download timm weights for 'resnet10t'.*--teacher-weights FILE"):
        TimmTrunk("resnet10t", 32).load_pretrained(None)


def test_timm_weights_of_another_model_are_one_line(tmp_path, splits):
    import timm

    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.stages import parse_model_spec, teacher_stage

    torch.save(timm.create_model("resnet10t", num_classes=0).state_dict(), tmp_path / "resnet.pt")
    choice = parse_model_spec("timm:vit_tiny_patch16_224", str(tmp_path / "resnet.pt"))
    with pytest.raises(EgoedgeError, match=r"does not fit the model: \d+ missing key\(s\): cls_token"):
        teacher_stage(choice, splits, TrainConfig(epochs=1, batch_size=16), tmp_path / "teacher.pt")


@pytest.mark.parametrize("kind", ["clip_vision", "videomae"])
def test_hf_folder_teacher(tmp_path, splits, kind):
    from transformers import CLIPVisionConfig, CLIPVisionModel, VideoMAEConfig, VideoMAEModel

    from egoedge.trainer.checkpoint import load_model
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.stages import parse_model_spec, teacher_stage

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=16)
    hf = (CLIPVisionModel(CLIPVisionConfig(image_size=64, **small)) if kind == "clip_vision" else
          VideoMAEModel(VideoMAEConfig(image_size=32, num_frames=4, tubelet_size=2, **small)))
    hf.save_pretrained(tmp_path / kind)
    path = teacher_stage(parse_model_spec(f"hf:{tmp_path / kind}"), splits, TrainConfig(epochs=1, batch_size=16),
                         tmp_path / "run" / "teacher.pt")
    import shutil

    shutil.rmtree(tmp_path / kind)  # the checkpoint carries the config: no folder needed to rebuild
    model, _ = load_model(path)
    loaded = dict(model.encoder.model.named_parameters())
    original = dict(hf.named_parameters())
    name = next(iter(original))
    assert torch.equal(loaded[name], original[name])
    assert model(model.example_inputs(2)[0]).shape == (2, len(splits.labels))


def test_timm_student_names_its_cbkd_blocks():
    from egoedge.trainer.models import build_model
    from egoedge.trainer.prune.cbkd import ClipCBKDTask

    model = build_model("timm", num_classes=4, frames=2, size=32, variant="mobilenetv3_small_050")
    assert model(model.example_inputs(1)[0]).shape == (1, 4)  # num_features is what forward returns (1024)
    blocks = ClipCBKDTask(None, None, {}).default_blocks(model)
    assert blocks[:2] == ["model.blocks.0", "model.blocks.1"]


def test_run_config_takes_teacher_spec_and_weights(tmp_path):
    from egoedge.pipeline.clips import resolve_config

    (tmp_path / "w.safetensors").write_bytes(b"x")
    cfg = resolve_config("mini", teacher="timm:vit_tiny_patch16_224", teacher_weights=str(tmp_path / "w.safetensors"))
    assert cfg.teacher.arch == "timm" and cfg.teacher.frozen and cfg.teacher.weights.endswith("w.safetensors")
    assert resolve_config("full").teacher.spec == "timm:vit_base_patch32_clip_224.openai"
    with pytest.raises(EgoedgeError, match="weights file not found"):
        resolve_config("mini", teacher="timm:resnet18", teacher_weights=str(tmp_path / "missing.pt"))


FACTORY = '''
import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 5))
'''


def _export_ok(result, out: Path) -> dict:
    import json

    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "model" and all(a["status"] == "ok" for a in manifest["artifacts"])
    return manifest


@pytest.mark.slow
def test_export_timm_pt2_and_factory_models_pass_the_gate_and_bench(tmp_path):
    import torchvision

    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig

    res = runner.invoke(app, ["export", "timm:resnet10t", "--input-shape", "1,3,64,64", "--to", "onnx",
                              "--parity-samples", "8", "--out", str(tmp_path / "timm")])
    _export_ok(res, tmp_path / "timm")
    program = torch.export.export(torchvision.models.mobilenet_v3_small(num_classes=10).eval(),
                                  (torch.randn(1, 3, 64, 64),))
    torch.export.save(program, tmp_path / "mnv3.pt2")
    x = np.random.default_rng(0).standard_normal((24, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x[:8])
    np.save(tmp_path / "calib.npy", x)
    np.save(tmp_path / "y.npy", np.arange(8) % 10)
    res = runner.invoke(app, ["export", str(tmp_path / "mnv3.pt2"), "--example-inputs", str(tmp_path / "x.npy"),
                              "--labels", str(tmp_path / "y.npy"), "--to", "onnx", "--out", str(tmp_path / "pt2")])
    manifest = _export_ok(res, tmp_path / "pt2")
    assert manifest["artifacts"][0]["accuracy"]["top1"] == manifest["source"]["accuracy"]["top1"]
    (tmp_path / "mymodels.py").write_text(FACTORY)
    res = runner.invoke(app, ["export", f"{tmp_path / 'mymodels.py'}:build", "--input-shape", "1,3,64,64",
                              "--to", "onnx", "--precision", "fp32,int8", "--calib-file", str(tmp_path / "calib.npy"),
                              "--allow-failed", "--out", str(tmp_path / "factory")])
    assert res.exit_code == 0, res.output
    import json

    manifest = json.loads((tmp_path / "factory" / "manifest.json").read_text())
    int8 = [a for a in manifest["artifacts"] if a["precision"] == "int8"][0]
    assert int8["file"] and int8["parity"] is not None  # made and gated on the user's inputs
    assert manifest["calibration"]["source"] == str(tmp_path / "calib.npy")
    report, _ = bench_export(tmp_path / "pt2", tmp_path / "bench", "host", BenchConfig(warmup=1, iterations=2,
                                                                                       isolate=False))
    names = [r["name"] for r in report["results"]]
    assert names[0] == "mnv3" and "mnv3_onnx_fp32" in names
    assert all(r["error"] is None for r in report["results"])


def test_export_bad_input_is_one_line(tmp_path):
    res = runner.invoke(app, ["export", "timm:mobilenetv3_smal_100", "--input-shape", "1,3,64,64", "--to", "onnx",
                              "--out", str(tmp_path / "a")])
    assert "close matches" in assert_one_line_error(res)
    res = runner.invoke(app, ["export", "timm:resnet10t", "--to", "onnx", "--out", str(tmp_path / "b")])
    assert "--input-shape" in assert_one_line_error(res)
    res = runner.invoke(app, ["export", "no_such_pkg.models:build", "--input-shape", "1,3,64,64", "--to", "onnx",
                              "--out", str(tmp_path / "c")])
    assert "cannot import module 'no_such_pkg.models'" in assert_one_line_error(res)
    res = runner.invoke(app, ["export", "timm:resnet10t", "--input-shape", "3,64,64", "--to", "onnx",
                              "--out", str(tmp_path)])
    assert "batch-1 shape" in assert_one_line_error(res)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "w.pt")
    res = runner.invoke(app, ["export", "timm:resnet10t", "--input-shape", "1,3,64,64", "--weights",
                              str(tmp_path / "w.pt"), "--to", "onnx", "--out", str(tmp_path / "d")])
    assert "does not fit the model" in assert_one_line_error(res)
    res = runner.invoke(app, ["export", "timm:resnet10t", "--input-shape", "1,3,64,64", "--to", "onnx", "--int8",
                              "--out", str(tmp_path / "e")])
    assert "--calib-file" in assert_one_line_error(res)
    res = runner.invoke(app, ["export", "model.onnx", "--input-shape", "1,3,64,64", "--out", str(tmp_path)])
    assert "is none of" in assert_one_line_error(res)


@pytest.mark.parametrize("name", ["resnet10t", "vit_tiny_patch16_224"])
def test_cbkd_prunes_a_timm_student_block_and_the_checkpoint_replays(tmp_path, name):
    from egoedge.trainer.checkpoint import load_model, save_checkpoint
    from egoedge.trainer.common.complexity import count_params
    from egoedge.trainer.data import DataConfig, label_names, preprocess_spec
    from egoedge.trainer.models import build_model
    from egoedge.trainer.prune import prune_block
    from egoedge.trainer.prune.cbkd import ClipCBKDTask

    data = DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)
    kwargs = {"num_classes": 16, "frames": 2, "size": 32, "variant": name}
    torch.manual_seed(0)
    model = build_model("timm", **kwargs).eval()
    x = model.example_inputs(2)[0]
    block = ClipCBKDTask(None, None, {}).default_blocks(model)[-1]
    params = count_params(model)
    steps = prune_block(model.encoder, block, 0.5, (torch.zeros(2, 3, 32, 32),))
    assert steps and count_params(model) < params and model(x).shape == (2, 16)
    save_checkpoint(tmp_path / "s.pt", arch="timm", model_kwargs=kwargs, model=model, metrics={},
                    label_names=label_names(data), preprocess=preprocess_spec(data),
                    config={"pruning": {"scope": "encoder", "input": [2, 3, 32, 32], "steps": steps}})
    loaded, _ = load_model(tmp_path / "s.pt")
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_export_own_model_calibrates_on_a_dataset(tmp_path):
    import json

    (tmp_path / "mymodels.py").write_text(FACTORY)
    res = runner.invoke(app, ["export", f"{tmp_path / 'mymodels.py'}:build", "--input-shape", "1,3,32,32", "--to",
                              "onnx", "--precision", "int8", "--data", "synthetic", "--calib", "16", "--allow-failed",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["calibration"] == {"source": "synthetic/train", "samples": 16, "seed": 0}
    assert manifest["artifacts"][0]["file"]
    res = runner.invoke(app, ["export", f"{tmp_path / 'mymodels.py'}:build", "--input-shape", "1,3,32,48",
                              "--to", "onnx", "--int8", "--data", "synthetic", "--out", str(tmp_path / "bad")])
    assert "--data gives RGB clips" in assert_one_line_error(res)


@pytest.mark.slow
def test_run_with_a_frozen_timm_teacher_and_a_timm_student(tmp_path):
    """`egoedge run` end to end: a pretrained teacher from a file, distilled into a timm student, pruned, exported."""
    import json

    import timm

    from egoedge.bench.report import validate_report

    torch.save(timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict(), tmp_path / "vit.pt")
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--preset", "mini", "--teacher", "timm:vit_tiny_patch16_224", "--teacher-weights",
                              str(tmp_path / "vit.pt"), "--student", "timm:resnet10t", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    rows = {r["name"]: r for r in report["results"]}
    assert rows["teacher"]["params"] > 5.5e6 and rows["student"]["params"] > 4e6 and rows["teacher"]["status"] == "ok"
    assert "teacher/student params" in report["summary"] and (out / "teacher_outputs.npz").is_file()
    assert report["run"]["cbkd"]["macs_cut"] > 0  # CBKD cut channels inside the timm ResNet's blocks
    assert all(r["status"] == "ok" for r in report["results"]), [(r["name"], r["error"]) for r in report["results"]]


def test_train_commands_take_pretrained_specs(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=16)).save_pretrained(tmp_path / "clip")
    res = runner.invoke(app, ["train", "teacher", "--preset", "mini", "--arch", f"hf:{tmp_path / 'clip'}",
                              "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "teacher_hf.pt").is_file() and "hf" in res.output
    # `train student` takes the same teacher specs as `run`: the pretrained one is fitted first, beside the student.
    res = runner.invoke(app, ["train", "student", "--preset", "mini", "--teacher", f"hf:{tmp_path / 'clip'}",
                              "--out", str(tmp_path / "distil")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "distil" / "teacher_hf.pt").is_file() and (tmp_path / "distil" / "student_clip_kd.pt").is_file()
    fitted = str(tmp_path / "run" / "teacher_hf.pt")
    res = runner.invoke(app, ["train", "student", "--preset", "mini", "--teacher", fitted, "--teacher-weights", fitted])
    assert "--teacher-weights is for a timm:/hf: --teacher" in assert_one_line_error(res)
    res = runner.invoke(app, ["train", "student", "--preset", "mini", "--teacher", "timm:resnet18", "--teacher-weights",
                              str(tmp_path / "missing.safetensors")])
    assert "weights file not found" in assert_one_line_error(res)
    res = runner.invoke(app, ["train", "student", "--preset", "mini", "--teacher", str(tmp_path / "nowhere.pt")])
    assert "teacher checkpoint not found" in assert_one_line_error(res)
    res = runner.invoke(app, ["run", "--preset", "mini", "--teacher", "resnet18", "--out", str(tmp_path / "x")])
    assert "is not ARCH:VARIANT" in assert_one_line_error(res)
