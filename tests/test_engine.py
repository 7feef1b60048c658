"""The training engine: resume equivalence, EMA, DDP over gloo, and the distillation recipes' plumbing."""

import datetime
import json

import pytest
import torch
import torch.multiprocessing as mp

from egoedge.trainer.data import DataConfig, load_split, preprocess_spec
from egoedge.trainer.engine import TrainConfig, epoch_batches, lr_at
from egoedge.trainer.models import build_model
from egoedge.trainer.train import KDConfig, default_hint_pair, distill_student, train_teacher

DATA = DataConfig(frames=2, size=32, train=32, val=16, test=16, seed=0)


def _micro():
    return build_model("mobilevit", num_classes=16, frames=DATA.frames, size=DATA.size, variant="micro")


def _tiny_teacher():
    return build_model("clip_vit", num_classes=16, frames=DATA.frames, size=DATA.size, variant="test")


def _train(cfg, resume=None, progress=None):
    torch.manual_seed(0)
    model = _micro()
    history = train_teacher(model, load_split(DATA, "train"), preprocess_spec(DATA), cfg,
                            progress or (lambda *a: None), resume=resume)
    return model, history


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, ema_decay=0.9)
    reference, ref_hist = _train(cfg)

    def die_in_epoch_three(stage, done, total, info):
        if info["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(cfg, tmp_path / "r.pt", die_in_epoch_three)
    resumed, hist = _train(cfg, tmp_path / "r.pt")
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in ref_hist], rel=1e-6)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_ema_weights_are_the_result():
    plain, _ = _train(TrainConfig(epochs=2, batch_size=8))
    ema, _ = _train(TrainConfig(epochs=2, batch_size=8, ema_decay=0.5))
    assert not torch.equal(plain.head[1].weight, ema.head[1].weight)


def test_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig(lr=1.0, warmup_frac=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] < 1e-3


def test_single_process_epoch_covers_every_sample_once():
    idx = sorted(i for b in epoch_batches(10, 3, epoch=0, seed=0) for i in b)
    assert idx == list(range(10))
    assert [list(b) for b in epoch_batches(10, 3, 1, 0)] != [list(b) for b in epoch_batches(10, 3, 0, 0)]


def _ddp_worker(rank: int, world_size: int, rdv: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world_size,
                                         timeout=datetime.timedelta(seconds=120))
    torch.set_num_threads(1)
    seen = [int(i) for b in epoch_batches(DATA.train, 8, 0, 0) for i in b]
    model, history = _train(TrainConfig(epochs=2, batch_size=8))
    torch.save({"state": model.state_dict(), "seen": seen, "loss": [h["loss"] for h in history]},
               f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    import time

    context = mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rdv"), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300  # a hang in a gloo collective must fail the test, not stall CI
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail("the 2 gloo processes did not finish within 300 s")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert sorted(r0["seen"] + r1["seen"]) == list(range(DATA.train))  # disjoint shards, all samples
    assert not set(r0["seen"]) & set(r1["seen"])
    for name, a in r0["state"].items():
        if "running_" in name or "num_batches" in name:
            continue  # BatchNorm statistics are per process (no SyncBN)
        assert torch.allclose(a, r1["state"][name]), name  # averaged gradients keep the replicas identical
    assert r0["loss"] != r1["loss"]  # but each saw its own half of the data


def test_distill_recipes_run(tmp_path):
    train, pp = load_split(DATA, "train"), preprocess_spec(DATA)
    torch.manual_seed(0)
    teachers = [_tiny_teacher(), _tiny_teacher()]
    cfg = TrainConfig(epochs=1, batch_size=8)
    log = []
    for kd in (KDConfig(response="topk_kl", top_k=3, feature="feature_cosine"),
               KDConfig(hints=(("auto", "auto"),), delta=2.0),
               KDConfig(hints=(("encoder.stages.1", "encoder.vit.patch_embed"),))):
        history = distill_student(_micro(), teachers[0], train, pp, cfg, kd, log=log.append)
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
        assert ("hint" in history[0]) == bool(kd.hints)
    history = distill_student(_micro(), teachers, train, pp, cfg, KDConfig(ensemble="learned"))
    assert len(history[0]["teacher_weights"]) == 2 and sum(history[0]["teacher_weights"]) == pytest.approx(1, abs=1e-3)
    assert len(log) == 3 and json.dumps(log)  # one JSON-able record per epoch


def test_default_hint_pair_and_bad_hint_name():
    assert default_hint_pair(_micro(), _tiny_teacher()) == ("encoder.stages.1", "encoder.vit.blocks.0")
    with pytest.raises(KeyError, match="did you mean encoder.stages.1"):
        distill_student(_micro(), _tiny_teacher(), load_split(DATA, "train"), preprocess_spec(DATA),
                        TrainConfig(epochs=1), KDConfig(hints=(("encoder.stages.11", "encoder.vit.blocks.0"),)))
