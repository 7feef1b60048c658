"""CBKD and PTQ int8 of the NLQ span models, and ``egoedge run --task nlq`` end to end."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from egoedge.trainer.common.complexity import count_macs
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.engine import TrainConfig
from egoedge.trainer.nlq.compress import NLQCBKDTask, cbkd_nlq_checkpoint, valid_step_error, window_agreement
from egoedge.trainer.nlq.train import build_for, load_nlq_model, save_nlq_checkpoint, train_nlq
from egoedge.trainer.prune import prune_block
from egoedge.trainer.prune.cbkd import CBKDConfig, stage_table
from egoedge.trainer.quantize.program import load_program
from egoedge.trainer.quantize.ptq import PTQConfig, blocks_of
from egoedge.trainer.quantize.quantize_checkpoint import quantize_checkpoint

SMALL = {"dim": 16, "heads": 2, "word_dim": 8}
STAGE = TrainConfig(epochs=1, batch_size=8, label_smoothing=0.0)


def _light(nlq_data):
    torch.manual_seed(0)
    return build_for("lightvslnet", nlq_data, **SMALL)


@pytest.fixture(scope="module")
def student(nlq_data, tmp_path_factory):
    model = _light(nlq_data)
    train_nlq(model, nlq_data, STAGE)
    return save_nlq_checkpoint(tmp_path_factory.mktemp("nlq_student") / "light.pt", "lightvslnet",
                               model.cpu().eval(), nlq_data, {})


def test_default_blocks_are_the_encoder_blocks_and_the_heads(nlq_data):
    heads = ["predictor.start_head", "predictor.end_head"]
    light = NLQCBKDTask(nlq_data).default_blocks(_light(nlq_data))
    assert light == ["query_encoder.blocks.0", "encoder.blocks.0", *heads]
    deep = build_for("deepvslnet", nlq_data, dim=16, heads=2)  # one encoder shared by video and query
    assert NLQCBKDTask(nlq_data).default_blocks(deep) == ["encoder.blocks.0", "encoder.blocks.1", *heads]


@pytest.mark.parametrize("block, hidden", [("encoder.blocks.0", "encoder.blocks.0.ffn.0"),
                                           ("query_encoder.blocks.0", "query_encoder.blocks.0.ffn.0"),
                                           ("predictor.start_head", "predictor.start_head.0")])
def test_pruning_an_nlq_block_cuts_only_its_hidden_width(nlq_data, block, hidden):
    model = _light(nlq_data).eval()
    x = model.example_inputs(2)
    macs = count_macs(model, model.example_inputs())
    width = model.get_submodule(hidden).out_features
    steps = prune_block(model, block, 0.5, x)
    assert [s["module"] for s in steps] == [hidden] and len(steps[0]["idxs"]) == width // 2
    assert model.get_submodule(hidden).out_features == width // 2
    assert count_macs(model, model.example_inputs()) < macs
    assert [t.shape for t in model(*x)] == [(2, 24), (2, 24)]  # the residual stream keeps its width
    assert model.encoder.blocks[0].ffn[2].out_features == SMALL["dim"]


def test_cbkd_of_an_nlq_student_saves_loadable_stages(student, tmp_path):
    cfg = CBKDConfig(min_ratio=0.5, max_ratio=0.5, recover=STAGE, finetune=STAGE, temperature=1.0)
    path, summary = cbkd_nlq_checkpoint(student, tmp_path / "light_cbkd.pt", cfg)
    assert [s["block"] for s in summary["stages"]] == ["predictor.end_head", "predictor.start_head",
                                                       "encoder.blocks.0", "query_encoder.blocks.0"]
    assert 0 < summary["macs_cut"] < 1 and summary["final"]["params"] < summary["start"]["params"]
    rows = stage_table(summary)
    assert [r["stage"] for r in rows] == ["start", "1", "2", "3", "4", "finetune"]
    assert {r["metric"] for r in rows} == {"R1@0.3"} and all(0 <= r["val"] <= 100 for r in rows)
    state = json.loads((tmp_path / "light_cbkd_stages" / "cbkd_state.json").read_text())
    assert len(state["stages"]) == 4 and (tmp_path / "light_cbkd_stages" / "cbkd_stage4.pt").is_file()
    model, ckpt = load_nlq_model(path)  # rebuild, replay the recorded pruning, load the weights
    assert [x["dtype"] for x in ckpt["config"]["pruning"]["inputs"]] == ["float32", "float32", "int32"]
    assert ckpt["metrics"]["macs"] == summary["final"]["macs"] and set(ckpt["metrics"]["test"]) >= {"R1@0.3", "mIoU"}
    x = model.example_inputs()
    assert [t.shape for t in model(*x)] == [(1, 24), (1, 24)]
    staged, _ = load_nlq_model(tmp_path / "light_cbkd_stages" / "cbkd_stage2.pt")
    assert staged.predictor.end_head[0].out_features == model.predictor.end_head[0].out_features


def test_ptq_of_an_nlq_checkpoint_scores_recall_and_runs(student, tmp_path):
    model, _ = load_nlq_model(student)
    cfg = PTQConfig(calibration=8, val_samples=8, target_agreement=100.0, max_fallback=1)
    report = quantize_checkpoint(student, tmp_path, cfg)
    for precision in ("fp32", "int8"):
        assert {"top1", "top5", "R1@0.3", "R1@0.5", "mIoU"} <= set(report[precision])
        assert report[precision]["top1"] == report[precision]["R1@0.3"]
    assert set(report["skip"]) <= set(blocks_of(model)) and len(report["skip"]) <= 1
    assert set(report["sensitivity"]) <= set(blocks_of(model))
    assert 0 <= report["test_agreement"] <= 100
    program = load_program(tmp_path / "light_int8.pt2")
    x = model.example_inputs()
    with torch.no_grad():
        start, end = program(*x)
        ref = model(*x)
    assert start.shape == (1, 24) and torch.isfinite(end).all()
    assert float((start - ref[0]).abs().max()) < 5.0  # int8, not garbage


def test_any_unit_can_stay_float(nlq_data):
    """A skipped unit must not leave neighbours sharing observers with it (prepare_pt2e once hit a KeyError)."""
    from egoedge.trainer.quantize.pt2e import quantize_pt2e
    from egoedge.trainer.quantize.ptq import quantizer_for

    model = _light(nlq_data).eval()
    x = model.example_inputs()
    for unit in blocks_of(model):
        q = quantize_pt2e(model, x, [x], quantizer_for("xnnpack", "minmax", (unit,)))
        with torch.no_grad():
            assert all(torch.isfinite(t).all() for t in q(*x)), unit


def test_vslnet_ptq_units_name_every_part_but_the_word_table(nlq_data):
    units = blocks_of(_light(nlq_data))
    assert units == ["text.proj", "video_proj", "encoder.blocks.0", "query_encoder.blocks.0", "cq_attention",
                     "cq_concat", "highlighter", "predictor"]


def test_nlq_ptq_refuses_an_impossible_calibration_count(student, tmp_path):
    with pytest.raises(EgoedgeError, match="--calib 4000 must be between 8 and the 24 training queries"):
        quantize_checkpoint(student, tmp_path, PTQConfig(calibration=4000))


def test_window_agreement_and_error_ignore_padded_steps():
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    ref = np.array([[[0, 5, 0, 0], [0, 0, 5, 0]], [[5, 0, 0, 0], [0, 5, 0, 0]]], dtype=np.float32)
    inputs = (None, mask, None)
    padded_only = ref.copy()
    padded_only[0, :, 3] = 9.0
    padded_only[1, :, 2:] = 9.0
    assert window_agreement(ref, padded_only, inputs) == 100.0
    assert valid_step_error(ref, padded_only, inputs) == 0.0
    moved = ref.copy()
    moved[1, 1] = [0, 0, 0, 0]
    moved[1, 1, 0] = 5.0  # second query: end moves from step 1 to step 0
    assert window_agreement(ref, moved, inputs) == 50.0
    assert valid_step_error(ref, moved, inputs) == pytest.approx(50.0 / 10)


def test_film_modes_parse_all_and_lists():
    from egoedge.pipeline.nlq import film_modes

    assert film_modes("all") == ("before_encoder", "after_encoder", "inside_encoder:after_pos",
                                 "inside_encoder:after_conv", "inside_encoder:after_attn", "inside_encoder:multi")
    assert film_modes("off, before_encoder") == ("off", "before_encoder")
    with pytest.raises(EgoedgeError, match="unknown FiLM mode"):
        film_modes("sideways")


@pytest.mark.parametrize("args, message", [
    (["run", "--film", "all"], "--film does not apply to --task recognition"),
    (["run", "--task", "nlq", "--film", "inside_encoder:nowhere"], "unknown FiLM mode(s) inside_encoder:nowhere"),
])
def test_cli_film_errors(args, message, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from egoedge.cli import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and message in " ".join(r.output.split()), r.output


@pytest.mark.slow
def test_run_task_nlq_mini_end_to_end(tmp_path, monkeypatch):
    """Baselines, teacher, KD student, CBKD student, int8 student and exports: one report."""
    from typer.testing import CliRunner

    from egoedge.cli import app

    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "nlq"
    r = CliRunner().invoke(app, ["run", "--task", "nlq", "--preset", "mini", "--out", str(out), "--film",
                                 "after_encoder"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    rows = {x["name"]: x for x in report["results"]}
    assert "vslnet_film-after_encoder" in rows and "vslnet_film-inside_encoder-after_pos" not in rows
    cbkd, int8 = rows["student_cbkd"], rows["student_cbkd_int8"]
    assert cbkd["status"] == "ok" and cbkd["macs"] < rows["student"]["macs"] and "R1@0.3" in cbkd["nlq"]
    assert int8["precision"] == "int8" and int8["status"] == "ok", int8["error"]
    assert int8["latency_ms"]["median"] > 0 and "mIoU" in int8["nlq"]
    assert report["run"]["cbkd"]["stages"][-1]["stage"] == "finetune" and report["run"]["ptq"]["skip"] == []
    assert "CBKD student" in report["summary"] and "int8 student (PyTorch)" in report["summary"]
    for name in ("nlq_predictions.json", "nlq_metrics.json", "report.md", "nlq_student_cbkd_int8.pt2"):
        assert (out / name).is_file(), name
    # Rerun after a lost export (as after a kill during it): every other stage is taken from the folder.
    (out / "export" / "manifest.json").unlink()
    (out / "log.jsonl").unlink()
    r = CliRunner().invoke(app, ["run", "--task", "nlq", "--preset", "mini", "--out", str(out), "--film",
                                 "after_encoder"])
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    reused = {e["stage"] for e in events if e["event"] == "reused"}
    assert reused == {"model vslbase", "model vslnet", "model vslnet_film-after_encoder", "model teacher",
                      "model student_nokd", "model student", "cbkd", "ptq"}
    assert not [e for e in events if e["event"] == "epoch"] and (out / "export" / "manifest.json").is_file()
    again = {x["name"]: x for x in json.loads((out / "report.json").read_text())["results"]}
    assert again.keys() == rows.keys() and again["student_cbkd"]["nlq"] == cbkd["nlq"]
    assert json.loads((out / "report.json").read_text())["run"]["cbkd"] == report["run"]["cbkd"]


@pytest.mark.slow
def test_litert_int8_export_of_the_nlq_student_prepares(student, tmp_path):
    """Its attention softmaxes once failed TFLite's prepare (int8 SOFTMAX output scale must be 1/256)."""
    from egoedge.edge.export import ExportConfig, export_checkpoint
    from egoedge.edge.parity import ParityGate

    lenient = ParityGate(fp32_max_abs=1e-3, int8_min_agreement=0.0, int8_max_accuracy_drop=100.0)
    manifest = export_checkpoint(student, tmp_path / "export", ExportConfig(
        formats=("tflite",), precisions=("w8", "int8"), calibration=8, parity_samples=4, gate=lenient))
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    assert artifacts["int8"]["status"] == "ok", artifacts["int8"]["reason"]
    assert artifacts["int8"]["inputs"][0]["dtype"] == "int8" and artifacts["int8"]["parity"]["max_abs"] < 5.0
    # Still open: the dynamic-range converter quantizes the word table with a non-zero zero point.
    assert artifacts["w8"]["status"] == "failed" and "EMBEDDING_LOOKUP" in artifacts["w8"]["reason"]


def test_vslnet_param_groups_slow_down_only_a_finetuned_minilm(nlq_data):
    light = _light(nlq_data)
    (group,) = light.param_groups()
    assert len(group["params"]) == len(list(light.parameters())) and "lr_scale" not in group
    frozen = build_for("vslnet", nlq_data, text="minilm", dim=16, heads=2)
    assert len(frozen.param_groups()) == 1  # the frozen encoder is not optimised at all
    tuned = build_for("vslnet", nlq_data, text="minilm", text_trainable=True, dim=16, heads=2)
    head, bert = tuned.param_groups()
    assert bert["lr_scale"] == 0.05 and len(bert["params"]) == len(list(tuned.text.bert.parameters()))
    assert len(head["params"]) + len(bert["params"]) == len(list(tuned.parameters()))


def test_cli_quantize_and_cbkd_on_an_nlq_checkpoint(student, tmp_path):
    from typer.testing import CliRunner

    from egoedge.cli import app

    r = CliRunner().invoke(app, ["quantize", str(student), "--calib", "8", "--val-samples", "8", "--max-fallback",
                                 "0", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "R1@0.3" in r.output and "top-1 window" in r.output and (tmp_path / "light_int8.pt2").is_file()
    out = tmp_path / "light_cbkd.pt"
    # One cbkd command whatever the task: the checkpoint says it is an NLQ model.
    r = CliRunner().invoke(app, ["train", "cbkd", str(student), "--finetune-epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "val R1@0.3 %" in r.output and "MACs cut" in r.output and out.is_file()
    assert json.loads((out.parent / "log.jsonl").read_text().splitlines()[0])["event"] == "train_cbkd"
    r = CliRunner().invoke(app, ["train", "cbkd", str(student), "--max-ratio", "1.5"])
    assert r.exit_code == 1 and "[0, 1)" in r.output
    r = CliRunner().invoke(app, ["train", "cbkd", str(student), "--finetune-epochs", "-1"])
    assert_one_line_error(r, "--finetune-epochs must be >= 0, got -1")
    r = CliRunner().invoke(app, ["train", "cbkd", str(student), "--data", "synthetic"])
    assert_one_line_error(r, "--data does not apply to nlq checkpoints")
    # The old spelling still answers, says where it moved, and is out of the help.
    r = CliRunner().invoke(app, ["nlq", "cbkd", str(student), "--finetune-epochs", "-1"])
    assert r.exit_code == 1 and "`egoedge nlq cbkd` moved to `egoedge train cbkd`" in " ".join(r.output.split())
    assert "--finetune-epochs must be >= 0, got -1" in " ".join(r.output.split())
    help_text = CliRunner().invoke(app, ["nlq", "--help"]).output
    assert " cbkd " not in help_text and " export " not in help_text and " train " in help_text
