import numpy as np
import pytest
import torch

from egoedge.trainer.data import load_split, preprocess_spec
from egoedge.trainer.models import build_model
from egoedge.trainer.train import KDConfig, TrainConfig, distill_student, evaluate, topk_accuracy, train_teacher


def _model(cfg):
    return build_model("mobilevit", num_classes=16, frames=cfg.frames, size=cfg.size, variant="micro")


def test_killed_training_resumes_from_last_epoch(tmp_path, mini_data_cfg):
    train, pp = load_split(mini_data_cfg, "train"), preprocess_spec(mini_data_cfg)
    cfg = TrainConfig(epochs=2, batch_size=16)
    resume = tmp_path / "teacher.resume.pt"

    def die_in_epoch_two(stage, done, total, info):
        if info.get("epoch") == 2:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(_model(mini_data_cfg), train, pp, cfg, die_in_epoch_two, resume=resume)
    assert resume.exists()

    seen_epochs = []
    torch.manual_seed(0)
    history = train_teacher(_model(mini_data_cfg), train, pp, cfg,
                            lambda s, d, t, info: seen_epochs.append(info["epoch"]), resume=resume)
    assert set(seen_epochs) == {2}  # epoch 1 was not trained again
    assert [h["epoch"] for h in history] == [1, 2]
    assert not resume.exists()


def test_teacher_and_student_learn_on_tiny_data(mini_data_cfg):
    """A few steps must lower the loss: the loops really optimise."""
    train, pp = load_split(mini_data_cfg, "train"), preprocess_spec(mini_data_cfg)
    torch.manual_seed(0)
    teacher = _model(mini_data_cfg)
    hist = train_teacher(teacher, train, pp, TrainConfig(epochs=4, batch_size=8, lr=3e-3, warmup_frac=0.0))
    assert hist[-1]["loss"] < hist[0]["loss"]
    student = _model(mini_data_cfg)
    hist = distill_student(student, teacher, train, pp, TrainConfig(epochs=3, batch_size=8, lr=3e-3),
                           KDConfig(alpha=1.0, beta=1.0, gamma=0.5, temperature=4.0))
    assert {"feature", "response", "task", "loss"} <= set(hist[0])
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert set(evaluate(student, train, pp)) == {"top1", "top5"}


def test_topk_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(logits, np.array([1, 2, 0]))
    assert acc["top1"] == pytest.approx(100 / 3) and acc["top5"] == 100.0


class _LookupTeacher(torch.nn.Module):
    """A stand-in teacher that knows the label of every clip it has seen (by the clip's pixel sum).

    ``right`` maps a clip key to whether it answers correctly; unknown clips get a wrong answer.
    """

    def __init__(self, known: dict[float, int], right: dict[float, bool], classes: int = 16) -> None:
        super().__init__()
        self.known, self.right, self.classes = known, right, classes
        self.embed_dim = 4
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, return_features=False):
        keys = x.flatten(1).sum(1).round(decimals=2).tolist()
        labels = [self.known.get(k, 0) if self.right.get(k, False) else (self.known.get(k, 0) + 1) % self.classes
                  for k in keys]
        logits = 8.0 * torch.nn.functional.one_hot(torch.tensor(labels), self.classes).float()
        return (logits, torch.zeros(len(keys), 4)) if return_features else logits


def test_learned_ensemble_weights_come_from_held_out_data(mini_data_cfg):
    """A teacher that memorised the training clips must not win the ensemble: weights are fitted on held-out clips."""
    from egoedge.trainer.data import model_input

    pp = preprocess_spec(mini_data_cfg)
    train, val = load_split(mini_data_cfg, "train"), load_split(mini_data_cfg, "val")
    key = lambda split: model_input(split, np.arange(len(split)), pp).flatten(1).sum(1).round(decimals=2).tolist()  # noqa: E731
    known = {k: int(y) for split in (train, val) for k, y in zip(key(split), split.labels, strict=True)}
    rng = np.random.default_rng(0)
    memoriser = _LookupTeacher(known, dict.fromkeys(key(train), True))  # perfect on train, wrong on val
    honest = _LookupTeacher(known, {k: bool(rng.random() < 0.75) for k in known})  # 75 % everywhere
    kd = KDConfig(alpha=0.0, beta=1.0, gamma=0.5, ensemble="learned")
    cfg = TrainConfig(epochs=1, batch_size=16)
    on_train = distill_student(_model(mini_data_cfg), [memoriser, honest], train, pp, cfg, kd)
    on_val = distill_student(_model(mini_data_cfg), [memoriser, honest], train, pp, cfg, kd, held_out=val)
    assert on_train[0]["teacher_weights"][0] > 0.5  # the trap: fitted on train, memorisation wins
    assert on_val[0]["teacher_weights"][1] > 0.8
