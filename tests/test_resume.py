"""Resume: a killed distillation continues where it stopped, a whole `egoedge run` skips its finished stages,
and a resume file or run folder of other settings is refused in one line instead of being mixed in."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import assert_one_line_error
from typer.testing import CliRunner

from egoedge.cli import app
from egoedge.pipeline.common import RunState
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data import load_split, preprocess_spec
from egoedge.trainer.models import build_model
from egoedge.trainer.train import KDConfig, TrainConfig, distill_student, train_teacher

runner = CliRunner()


def _model(cfg):
    return build_model("mobilevit", num_classes=16, frames=cfg.frames, size=cfg.size, variant="micro")


def _die_in_epoch_two(stage, done, total, info):
    if info.get("epoch") == 2:
        raise KeyboardInterrupt  # what a kill looks like from inside: the epoch never finishes


def test_killed_student_distillation_resumes_and_equals_an_uninterrupted_one(tmp_path, mini_data_cfg):
    train, pp = load_split(mini_data_cfg, "train"), preprocess_spec(mini_data_cfg)
    torch.manual_seed(0)
    teacher = _model(mini_data_cfg)
    cfg, kd = TrainConfig(epochs=3, batch_size=16), KDConfig(alpha=1.0, beta=1.0, gamma=0.5)

    def student():
        torch.manual_seed(1)
        return _model(mini_data_cfg)

    reference = student()
    distill_student(reference, teacher, train, pp, cfg, kd)
    resume = tmp_path / "student.resume.pt"
    with pytest.raises(KeyboardInterrupt):
        distill_student(student(), teacher, train, pp, cfg, kd, _die_in_epoch_two, resume=resume)
    assert torch.load(resume, weights_only=True)["epoch"] == 0  # epoch 1 finished and was saved
    epochs = []
    resumed = student()
    history = distill_student(resumed, teacher, train, pp, cfg, kd, lambda s, d, t, i: epochs.append(i["epoch"]),
                              resume=resume)
    assert set(epochs) == {2, 3} and [h["epoch"] for h in history] == [1, 2, 3]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not resume.exists()


def test_resume_file_of_other_settings_is_refused(tmp_path, mini_data_cfg):
    train, pp = load_split(mini_data_cfg, "train"), preprocess_spec(mini_data_cfg)
    resume = tmp_path / "teacher.resume.pt"
    with pytest.raises(KeyboardInterrupt):
        train_teacher(_model(mini_data_cfg), train, pp, TrainConfig(epochs=3, batch_size=16), _die_in_epoch_two,
                      resume=resume)
    with pytest.raises(EgoedgeError, match=r"teacher.resume.pt: resume file of other training settings \(epochs 3 vs "
                                           r"4\); delete it to train this teacher stage from the start"):
        train_teacher(_model(mini_data_cfg), train, pp, TrainConfig(epochs=4, batch_size=16), resume=resume)


def test_run_state_records_refuses_and_detects_changed_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    state = RunState(out, {"teacher": {"arch": "clip_vit"}, "recipe": "clip_kd"})
    (out / "teacher.pt").write_bytes(b"weights")
    assert not state.finished("teacher", out / "teacher.pt")
    state.mark("teacher", out / "teacher.pt", top1=50.0)
    again = RunState(out, {"teacher": {"arch": "clip_vit"}, "recipe": "clip_kd"})
    assert again.finished("teacher", out / "teacher.pt") and again.info("teacher")["top1"] == 50.0
    (out / "teacher.pt").write_bytes(b"other weights")  # changed after it was recorded: train again
    assert not again.finished("teacher", out / "teacher.pt")
    with pytest.raises(EgoedgeError, match=r"holds a run of other settings \(recipe differ\); use another --out"):
        RunState(out, {"teacher": {"arch": "clip_vit"}, "recipe": "ce"})
    (out / RunState.NAME).write_text("{not json")
    with pytest.raises(EgoedgeError, match="run_state.json: unreadable .*delete it"):
        RunState(out, {})


@pytest.mark.slow
def test_a_killed_run_continues_from_its_last_finished_stage(tmp_path, mini_run):
    out = tmp_path / "mini"
    shutil.copytree(mini_run[0], out)
    report = json.loads((out / "report.json").read_text())
    # as if killed while pruning: CBKD and everything after it never finished
    state = json.loads((out / RunState.NAME).read_text())
    # mini: no linear probe; each student's export makes its int8 program
    # (in the order they finished: the two exports run side by side)
    assert set(state["done"]) == {"teacher", "student", "cbkd", "export", "export student_cbkd"}
    for stage in ("cbkd", "export", "export student_cbkd"):
        del state["done"][stage]
    (out / RunState.NAME).write_text(json.dumps(state))
    (out / "student_cbkd.pt").unlink()
    teacher_mtime = (out / "teacher.pt").stat().st_mtime_ns
    student_mtime = (out / "student.pt").stat().st_mtime_ns
    (out / "log.jsonl").unlink()
    second = runner.invoke(app, ["run", "--preset", "mini", "--out", str(out)])
    assert second.exit_code == 0, second.output
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["stage"] for e in events if e["event"] == "reused"] == ["teacher", "student"]
    stages = json.loads((out / "report.json").read_text())["stages"]
    assert [(s["name"], s.get("reused", False)) for s in stages][1:4] == [("teacher", True), ("student", True),
                                                                          ("cbkd", False)]
    assert not any(e["event"] == "epoch" and e.get("stage") == "teacher" for e in events)
    assert (out / "teacher.pt").stat().st_mtime_ns == teacher_mtime
    assert (out / "student.pt").stat().st_mtime_ns == student_mtime
    again = json.loads((out / "report.json").read_text())
    by = lambda r: {x["name"]: (x["status"], x.get("top1")) for x in r["results"]}  # noqa: E731
    assert by(again) == by(report)  # seeded: the redone stages give the same results
    refused = runner.invoke(app, ["run", "--preset", "mini", "--recipe", "ce", "--out", str(out)])
    assert_one_line_error(refused, "holds a run of other settings (recipe differ)")
