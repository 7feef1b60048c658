"""Configs round-trip through YAML/JSON, and `egoedge train` runs each stage from files."""

import json

import pytest
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.cli import app
from egoedge.pipeline.clips import PRESETS, resolve_config
from egoedge.trainer.checkpoint import read_checkpoint
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.config import from_dict, merge, to_dict, write_config_file
from egoedge.trainer.engine import TrainConfig
from egoedge.trainer.train import KDConfig

runner = CliRunner()


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_run_config_round_trips(tmp_path, suffix, preset):
    path = write_config_file(PRESETS[preset], tmp_path / f"run{suffix}")
    # Loaded onto another preset, so that every field must come from the file (an empty file would fail).
    other = "full" if preset != "full" else "mini"
    assert PRESETS[other] != PRESETS[preset]
    assert resolve_config(other, path) == PRESETS[preset]


def test_partial_overrides_and_nested_tuples(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("student_train: {epochs: 2}\nkd: {response: topk_kl, top_k: 3, hints: [[auto, auto]]}\n"
                    "cbkd: {max_ratio: 0.7}\n")
    cfg = resolve_config("mini", path)
    assert cfg.student_train.epochs == 2 and cfg.student_train.lr == PRESETS["mini"].student_train.lr
    assert cfg.kd == KDConfig(response="topk_kl", top_k=3, hints=(("auto", "auto"),))
    assert cfg.cbkd.max_ratio == 0.7 and cfg.cbkd.recover == PRESETS["mini"].cbkd.recover
    assert from_dict(TrainConfig, {"lr": 1}).lr == 1.0  # YAML's 1 is a float here
    assert merge(TrainConfig(), {"epochs": 9}) == TrainConfig(epochs=9)
    assert to_dict(KDConfig(hints=(("a", "b"),)))["hints"] == [["a", "b"]]


@pytest.mark.parametrize("text, message", [
    ("student_train: {epoch: 2}", "unknown key(s) epoch; valid: amp, batch_size"),
    ("student_train: {epochs: many}", "student_train.epochs: expected int"),
    ("kd: {hints: [[a]]}", "expected 2 items"),
    ("[1, 2]", "top level must be a mapping"),
    ("a: [", "not valid YAML"),
])
def test_bad_config_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(EgoedgeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        resolve_config("mini", path)


def test_missing_or_unknown_kind_of_config_file(tmp_path):
    with pytest.raises(EgoedgeError, match="config file not found"):
        resolve_config("mini", tmp_path / "nope.yaml")
    (tmp_path / "c.toml").write_text("")
    with pytest.raises(EgoedgeError, match=r"\.yaml, \.yml or \.json"):
        resolve_config("mini", tmp_path / "c.toml")
    with pytest.raises(EgoedgeError, match="unknown recipe 'kd9'; valid: ce, clip_kd"):
        resolve_config("mini", recipe="kd9")


@pytest.mark.slow
def test_train_commands_chain_through_files(tmp_path):
    out = tmp_path / "exp"
    result = runner.invoke(app, ["train", "teacher", "--preset", "mini", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "teacher.pt").is_file() and "teacher" in result.output

    cfg = tmp_path / "kd.yaml"
    cfg.write_text("kd: {response: topk_kl, top_k: 3, alpha: 0.0, beta: 1.0, gamma: 0.5}\n")
    result = runner.invoke(app, ["train", "student", "--teacher", str(out / "teacher.pt"), "--recipe", "topk",
                                 "--preset", "mini", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    ckpt = read_checkpoint(out / "student_topk.pt")
    assert ckpt["config"]["recipe"] == "topk" and ckpt["config"]["kd"]["top_k"] == 3
    assert ckpt["config"]["teachers"] == ["teacher.pt"] and ckpt["metrics"]["params"] > 0

    result = runner.invoke(app, ["train", "student", "--recipe", "ce", "--preset", "mini", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_checkpoint(out / "student_ce.pt")["config"]["teachers"] == []

    result = runner.invoke(app, ["train", "cbkd", str(out / "student_topk.pt"), "--preset", "mini"])
    assert result.exit_code == 0, result.output
    ckpt = read_checkpoint(out / "student_topk_cbkd.pt")
    assert ckpt["config"]["pruning"]["steps"] and "MACs cut" in result.output
    assert ckpt["metrics"]["macs"] < read_checkpoint(out / "student_topk.pt")["metrics"]["macs"]
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"train_teacher", "train_student", "train_cbkd", "epoch"} <= {e["event"] for e in events}


def test_train_student_needs_a_teacher_for_kd(tmp_path):
    result = runner.invoke(app, ["train", "student", "--recipe", "response", "--preset", "mini", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 1 and "distils from a teacher; pass --teacher" in result.output
    result = runner.invoke(app, ["train", "cbkd", str(tmp_path / "missing.pt"), "--preset", "mini"])
    assert_one_line_error(result, "checkpoint not found")
