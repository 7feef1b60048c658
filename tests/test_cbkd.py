"""CBKD: block pruning keeps block interfaces, plans replay into loadable checkpoints, stages resume."""

import json

import pytest
import torch

from egoedge.trainer.checkpoint import load_model, save_checkpoint
from egoedge.trainer.common.complexity import count_params
from egoedge.trainer.data import DataConfig, label_names, load_split, preprocess_spec
from egoedge.trainer.engine import TrainConfig
from egoedge.trainer.models import build_model
from egoedge.trainer.prune import prune_block
from egoedge.trainer.prune.cbkd import (
    CBKDConfig,
    ClipCBKDTask,
    apply_pruning_config,
    block_names,
    run_cbkd,
    stage_plan,
    stage_table,
)

DATA = DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)
KW = {"num_classes": 16, "frames": DATA.frames, "size": DATA.size, "variant": "micro"}


STUDENTS = {"mobilevit": "micro", "mobilenet": "v4_small_035", "resnet": "r10_16"}


def _model(arch="mobilevit"):
    torch.manual_seed(0)
    return build_model(arch, **{**KW, "variant": STUDENTS[arch]})


def _save(model, pruning, path, arch="mobilevit"):
    save_checkpoint(path, arch=arch, model_kwargs={**KW, "variant": STUDENTS[arch]}, model=model, metrics={},
                    label_names=label_names(DATA), preprocess=preprocess_spec(DATA), config={"pruning": pruning})


def test_stage_plan_runs_deepest_first_with_rising_rates():
    cfg = CBKDConfig(min_ratio=0.2, max_ratio=0.6)
    plan = stage_plan(["stages.0", "stages.1", "stages.2"], cfg)
    assert plan == [("stages.2", 0.6), ("stages.1", pytest.approx(0.4)), ("stages.0", 0.2)]
    assert [b for b, _ in stage_plan(["a", "b"], CBKDConfig(order="shallow_first"))] == ["a", "b"]
    with pytest.raises(ValueError, match="valid: deep_first, shallow_first"):
        CBKDConfig(order="clockwise").validate()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        CBKDConfig(max_ratio=1.0).validate()
    with pytest.raises(KeyError, match="valid: fpgm, l1, l2"):
        CBKDConfig(importance="taylor").validate()


@pytest.mark.parametrize("arch", STUDENTS)
def test_prune_block_keeps_the_block_interface_and_replays(tmp_path, arch):
    model = _model(arch).eval()
    x = model.example_inputs(2)[0]
    block = model.encoder.stages[1]
    frames = x.flatten(0, 1)
    before_in = model.encoder.stages[0](model.encoder.stem(frames))
    out_shape = block(before_in).shape
    params = count_params(model)
    steps = prune_block(model.encoder, "stages.1", 0.5, (torch.zeros(2, 3, 32, 32),))
    assert steps and all(s["module"].startswith("stages.1.") for s in steps)
    assert count_params(model) < params
    assert block(before_in).shape == out_shape  # neighbours and the teacher block still fit
    assert model(x).shape == (2, 16)
    path = tmp_path / "pruned.pt"
    _save(model, {"scope": "encoder", "input": [2, 3, 32, 32], "steps": steps}, path, arch)
    loaded, _ = load_model(path)  # rebuild + replay + weights_only load
    assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_block_names_default_to_encoder_stages_and_reject_unknown():
    assert block_names(_model(), CBKDConfig()) == ["stages.0", "stages.1"]
    assert block_names(_model(), CBKDConfig(blocks=("stem+stages.0", "stages.1"))) == ["stem+stages.0", "stages.1"]
    with pytest.raises(Exception, match="no block 'stages.7'"):
        block_names(_model(), CBKDConfig(blocks=("stages.7",)))
    with pytest.raises(Exception, match="no block 'stem2'"):
        block_names(_model(), CBKDConfig(blocks=("stem2+stages.0",)))


@pytest.mark.parametrize("arch", ["resnet", "mobilenet"])
def test_the_stem_is_pruned_with_the_first_stage(tmp_path, arch):
    """A stem's channels reach only the first stage: pruned as one block, the pair's output width stays."""
    model = _model(arch).eval()
    x = model.example_inputs(2)[0]
    frames = x.flatten(0, 1)
    stem = next(m for m in model.encoder.stem.modules() if isinstance(m, torch.nn.Conv2d))
    width, out_shape = stem.out_channels, model.encoder.stages[0](model.encoder.stem(frames)).shape
    alone = prune_block(model.encoder, "stem", 0.5, (torch.zeros(2, 3, 32, 32),))
    assert alone == [] and stem.out_channels == width  # its channels leave the stem: nothing to cut alone
    steps = prune_block(model.encoder, "stem+stages.0", 0.5, (torch.zeros(2, 3, 32, 32),), round_to=4)
    assert stem.out_channels < width and any(s["module"].startswith("stem.") for s in steps)
    assert model.encoder.stages[0](model.encoder.stem(frames)).shape == out_shape
    path = tmp_path / "pruned.pt"
    _save(model, {"scope": "encoder", "input": [2, 3, 32, 32], "steps": steps}, path, arch)
    loaded, _ = load_model(path)
    assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_a_joined_block_recovers_all_its_parts_against_the_last_ones_output():
    from egoedge.trainer.prune.cbkd import recover_block

    teacher = _model("resnet").eval()
    student = _model("resnet")
    prune_block(student.encoder, "stem+stages.0", 0.5, (torch.zeros(2, 3, 32, 32),), round_to=4)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    task = ClipCBKDTask(load_split(DATA, "train"), load_split(DATA, "val"), preprocess_spec(DATA))
    history = recover_block(student, teacher, "stem+stages.0", task, TrainConfig(epochs=1, batch_size=16),
                            lambda *a: None, None, None, "cbkd 1/1 stem+stages.0")
    moved = {k.split(".")[1] for k, v in student.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before[k])}
    assert history and moved == {"stem", "stages"}  # both parts learn; nothing outside the block does
    assert not any(k.startswith("encoder.stages.1") and not torch.equal(v, before[k])
                   for k, v in student.state_dict().items())


@pytest.mark.slow
def test_cbkd_stages_bookkeeping_and_resume(tmp_path):
    task = ClipCBKDTask(load_split(DATA, "train"), load_split(DATA, "val"), preprocess_spec(DATA))
    cfg = CBKDConfig(min_ratio=0.3, max_ratio=0.5, recover=TrainConfig(epochs=1, batch_size=16),
                     finetune=TrainConfig(epochs=1, batch_size=16))
    ref, ref_summary = run_cbkd(_model(), task, cfg, tmp_path / "ref", _save)
    stages = ref_summary["stages"]
    assert [s["block"] for s in stages] == ["stages.1", "stages.0"]  # deepest first
    assert stages[0]["macs"] >= stages[1]["macs"] and stages[1]["params"] < ref_summary["start"]["params"]
    assert ref_summary["macs_cut"] > 0 and [r["stage"] for r in stage_table(ref_summary)] == ["start", "1", "2",
                                                                                             "finetune"]
    state = json.loads((tmp_path / "ref" / "cbkd_state.json").read_text())
    assert len(state["stages"]) == 2 and (tmp_path / "ref" / "cbkd_stage2.pt").exists()

    def die_in_stage_two(stage, done, total, info):
        if stage.startswith("cbkd 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cbkd(_model(), task, cfg, tmp_path / "run", _save, die_in_stage_two)
    seen = set()
    student, summary = run_cbkd(_model(), task, cfg, tmp_path / "run", _save,
                                lambda stage, d, t, i: seen.add(stage.split(" ")[1] if " " in stage else stage))
    assert "1/2" not in seen and "2/2" in seen  # stage 1 was not redone
    drop = lambda recs: [{k: v for k, v in r.items() if k != "seconds"} for r in recs]  # noqa: E731
    assert drop(summary["stages"]) == drop(stages)
    for (name, a), b in zip(ref.state_dict().items(), student.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    fresh = _model()
    apply_pruning_config(fresh, summary["pruning"])
    fresh.load_state_dict(student.state_dict())
