"""Action anticipation: learnable transitions, text for the language teachers, text-teacher KD."""

import numpy as np
import pytest
import torch

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data import LABELS, ClipSpec, DataConfig, load_split, model_input
from egoedge.trainer.data.anticipation import (
    SUCCESSOR_PROBS,
    action_sequences,
    generate_anticipation_split,
    history_text,
    oracle_accuracy,
    transition_matrix,
)
from egoedge.trainer.data.modalities import modality_preprocess
from egoedge.trainer.data.text import WORDS, tokenize

DATA = DataConfig(frames=2, size=32, train=64, val=32, test=32, task="anticipation", history=3)


def test_transition_table_is_fixed_and_stochastic():
    table = transition_matrix()
    np.testing.assert_allclose(table.sum(1), 1.0)
    assert (np.sort(table, axis=1)[:, -3:][:, ::-1] == SUCCESSOR_PROBS).all()
    assert (np.diag(table) == 0).all()
    np.testing.assert_array_equal(table, transition_matrix())


def test_sequences_follow_the_table():
    seq = action_sequences("train", 4000, 2, seed=0)
    counts = np.zeros((len(LABELS), len(LABELS)))
    np.add.at(counts, (seq[:, 0], seq[:, 1]), 1)
    empirical = counts / counts.sum(1, keepdims=True)
    assert np.abs(empirical - transition_matrix()).max() < 0.08
    with pytest.raises(ValueError, match="length >= 2"):
        action_sequences("train", 4, 1)


def test_split_shows_the_last_past_action_and_labels_the_next():
    clips, nxt, past = generate_anticipation_split("val", 6, ClipSpec(frames=2, size=32), history=3, seed=1)
    assert clips.shape == (6, 2, 32, 32, 3) and past.shape == (6, 3) and nxt.shape == (6,)
    table = transition_matrix()
    assert all(table[p[-1], n] > 0 for p, n in zip(past, nxt, strict=True))
    assert all(table[p[k], p[k + 1]] > 0 for p in past for k in range(2))
    split = load_split(DATA, "train")
    np.testing.assert_array_equal(split.extras["history"].shape, (64, 3))


def test_oracle_is_the_table():
    past = np.array([[0, 1, 2]] * 4)
    best = int(np.argmax(transition_matrix()[2]))
    assert oracle_accuracy(past, np.array([best] * 4))["top1"] == 100.0
    assert oracle_accuracy(past, np.array([2] * 4))["top5"] == 0.0  # an action never follows itself


def test_words_and_minilm_tokenizers():
    text = history_text(np.array([0, 5]))
    assert text == f"{LABELS[0].replace('_', ' ')}, {LABELS[5].replace('_', ' ')}"
    ids = tokenize([text], "words", 8)[0]
    assert [WORDS[i] for i in ids[:6]] == ["<cls>", *LABELS[0].split("_"), ",", *LABELS[5].split("_")]
    assert (ids[6:] == 0).all()
    wp = tokenize([text], "minilm", 12)[0]
    assert wp[0] == 101 and 102 in wp and wp[-1] == 0  # [CLS] ... [SEP] then padding
    with pytest.raises(EgoedgeError, match="more than max_len"):
        tokenize([text], "words", 4)
    with pytest.raises(EgoedgeError, match="outside the action vocabulary"):
        tokenize(["open the fridge"], "words", 8)
    with pytest.raises(EgoedgeError, match="unknown tokenizer"):
        tokenize([text], "bpe", 8)


def test_text_teacher_learns_the_transitions():
    """A from-scratch transformer reading the past actions gets close to the transition table's ceiling."""
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.stages import ModelChoice, build, input_spec
    from egoedge.trainer.train import evaluate, train_teacher

    data = DataConfig(frames=2, size=32, train=1024, val=16, test=256, task="anticipation")
    train, test = load_split(data, "train"), load_split(data, "test")
    torch.manual_seed(0)
    model, _ = build(ModelChoice("text_transformer", "test"), data, len(LABELS))
    pp = input_spec(ModelChoice("text_transformer", "test"), data)
    train_teacher(model, train, pp, TrainConfig(epochs=6, batch_size=32, lr=3e-3, label_smoothing=0.0))
    oracle = oracle_accuracy(test.extras["history"], test.labels)["top1"]
    assert evaluate(model, test, pp)["top1"] > oracle - 12


def test_text_teacher_distils_into_a_video_student(tmp_path):
    from egoedge.trainer.checkpoint import load_model
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.recipes import recipe
    from egoedge.trainer.stages import ModelChoice, load_splits, student_stage, teacher_stage

    splits = load_splits(DATA)
    cfg = TrainConfig(epochs=1, batch_size=16)
    teacher = teacher_stage(ModelChoice("text_transformer", "test"), splits, cfg, tmp_path / "text.pt")
    _, tck = load_model(teacher)
    assert tck["preprocess"]["modality"] == "text" and "oracle" in tck["metrics"]
    assert model_input(splits.train, np.arange(2), tck["preprocess"]).dtype == torch.int64
    out = student_stage(ModelChoice("mobilevit", "micro"), [teacher], splits, cfg, recipe("cosine"), "cosine",
                        tmp_path / "student.pt")
    model, ck = load_model(out)
    assert ck["config"]["data"]["task"] == "anticipation" and "modality" not in ck["preprocess"]
    assert model(model.example_inputs(2)[0]).shape == (2, len(LABELS))
    # The cosine feature term projected the 64-wide student embedding onto the teacher's width.
    assert ck["metrics"]["history"][0]["feature"] > 0


def test_minilm_fine_tunes_slower_than_its_head():
    from egoedge.trainer.models import build_model

    model = build_model("minilm", num_classes=len(LABELS), max_len=16)
    groups = model.param_groups()
    assert groups[0]["lr_scale"] < 0.1 and "lr_scale" not in groups[1]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    pp = modality_preprocess("text", DATA, "minilm")
    assert pp["tokenizer"] == "minilm" and pp["max_len"] == 16
