import math

import pytest
import torch

from egoedge.trainer.distill import (
    LOSSES,
    DistillationLoss,
    FeatureCosine,
    FeatureMSE,
    FeatureTaps,
    HintMSE,
    LogitEnsemble,
    ResponseKL,
    TopKKL,
    as_feature_map,
)


def test_response_kl_hand_checked():
    # Two classes, T=2: teacher logits [2, 0] -> p = softmax([1, 0]); student [0, 0] -> q = [.5, .5].
    p1 = math.exp(1) / (math.exp(1) + 1)
    p = [p1, 1 - p1]
    expected = 4 * sum(pi * math.log(pi / 0.5) for pi in p)  # T^2 * KL(p || q)
    out = {"teacher_logits": torch.tensor([[2.0, 0.0]]), "student_logits": torch.tensor([[0.0, 0.0]])}
    assert ResponseKL(temperature=2.0)(out).item() == pytest.approx(expected, rel=1e-6)


def test_response_kl_zero_when_equal():
    z = torch.randn(4, 7)
    assert ResponseKL(4.0)({"teacher_logits": z, "student_logits": z.clone()}).item() == pytest.approx(0, abs=1e-6)


def test_feature_mse_on_unit_vectors_is_two_minus_two_cos():
    s = torch.tensor([[3.0, 0.0]])
    t = torch.tensor([[1.0, 1.0]])
    loss = FeatureMSE(2, 2)({"student_features": s, "teacher_features": t})
    assert loss.item() == pytest.approx(2 - 2 * math.cos(math.pi / 4), rel=1e-6)


def test_feature_mse_learned_projection_when_widths_differ():
    loss = FeatureMSE(5, 3)
    assert isinstance(loss.proj, torch.nn.Linear) and loss.proj.in_features == 5 and loss.proj.out_features == 3


def test_combined_weights_and_components():
    torch.manual_seed(0)
    out = {"student_logits": torch.randn(6, 4, requires_grad=True), "teacher_logits": torch.randn(6, 4),
           "student_features": torch.randn(6, 8, requires_grad=True), "teacher_features": torch.randn(6, 8),
           "labels": torch.tensor([0, 1, 2, 3, 0, 1])}
    kd = DistillationLoss(8, 8, alpha=1.0, beta=1.0, gamma=0.5, temperature=4.0)
    terms = kd(out)
    expected = terms["feature"] + terms["response"] + 0.5 * terms["task"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    terms["loss"].backward()
    assert out["student_logits"].grad is not None and out["student_features"].grad is not None


def test_zero_weight_skips_term():
    out = {"student_logits": torch.randn(2, 3), "teacher_logits": torch.randn(2, 3), "labels": torch.tensor([0, 1])}
    terms = DistillationLoss(4, 4, alpha=0.0)(out)  # no features given: feature term must not run
    assert "feature" not in terms and "response" in terms


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="temperature"):
        ResponseKL(0.0)
    with pytest.raises(ValueError, match="alpha"):
        DistillationLoss(4, 4, alpha=-1)


def test_registry_lists_valid_names():
    assert {"response_kl", "feature_mse", "task_ce"} <= set(LOSSES.keys())
    with pytest.raises(KeyError, match="valid: feature_cosine, feature_mse, hint_mse, response_kl, task_ce, topk_kl"):
        LOSSES.get("nope")


def test_topk_kl_hand_checked():
    # K=1, T=1: teacher [2, 1, 0] keeps class 0 and lumps 1+2 into the rest bucket; student uniform.
    e = [math.exp(2), math.exp(1), 1.0]
    p0 = e[0] / sum(e)
    expected = p0 * math.log(p0 / (1 / 3)) + (1 - p0) * math.log((1 - p0) / (2 / 3))
    out = {"teacher_logits": torch.tensor([[2.0, 1.0, 0.0]]), "student_logits": torch.zeros(1, 3)}
    assert TopKKL(temperature=1.0, top_k=1)(out).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_topk_kl_with_all_classes_is_full_kd(temperature):
    torch.manual_seed(0)
    s = torch.randn(8, 10, requires_grad=True)
    out = {"teacher_logits": torch.randn(8, 10), "student_logits": s}
    full = ResponseKL(temperature)(out)
    topk = TopKKL(temperature, top_k=10)(out)
    assert topk.item() == pytest.approx(full.item(), rel=1e-5)
    (g_topk,) = torch.autograd.grad(topk, s)
    (g_full,) = torch.autograd.grad(full, s)
    assert torch.allclose(g_topk, g_full, atol=1e-6)  # the empty rest bucket adds no NaN


def test_topk_kl_ignores_the_tail_order():
    # Two students that differ only in how they spread the rest bucket get the same loss.
    t = torch.tensor([[5.0, 4.0, 0.0, 0.0, 0.0]])
    a = torch.tensor([[3.0, 2.0, 1.0, 0.0, 0.0]])
    b = torch.tensor([[3.0, 2.0, 0.0, 0.0, 1.0]])
    loss = TopKKL(2.0, top_k=2)
    assert loss({"teacher_logits": t, "student_logits": a}).item() == pytest.approx(
        loss({"teacher_logits": t, "student_logits": b}).item(), rel=1e-6)


def test_feature_cosine_hand_checked():
    out = {"student_features": torch.tensor([[3.0, 0.0]]), "teacher_features": torch.tensor([[1.0, 1.0]])}
    assert FeatureCosine(2, 2)(out).item() == pytest.approx(1 - math.cos(math.pi / 4), rel=1e-6)


def test_hint_mse_hand_checked():
    hint = HintMSE([(1, 1)])
    with torch.no_grad():
        hint.regressors[0].weight.fill_(1.0)
        hint.regressors[0].bias.zero_()
    student = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # pools to 1 and 3
    teacher = torch.tensor([0.0, 2.0]).view(2, 1, 1, 1)  # standardised: -1/sqrt2, +1/sqrt2
    r = 1 / math.sqrt(2)
    expected = ((1 + r) ** 2 + (3 - r) ** 2) / 2
    out = {"student_hints": [student], "teacher_hints": [teacher]}
    assert hint(out).item() == pytest.approx(expected, rel=1e-5)


def test_as_feature_map_folds_vit_tokens():
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).view(2, 17, 3)  # class token + 4x4 grid
    grid = as_feature_map(tokens)
    assert grid.shape == (2, 3, 4, 4)
    assert torch.equal(grid[0, :, 0, 0], tokens[0, 1])  # the class token is dropped
    with pytest.raises(ValueError, match="square"):
        as_feature_map(torch.zeros(1, 30, 3))


def test_distillation_loss_options_and_bad_names():
    out = {"student_logits": torch.randn(4, 6), "teacher_logits": torch.randn(4, 6),
           "student_features": torch.randn(4, 5), "teacher_features": torch.randn(4, 3), "labels": torch.arange(4)}
    terms = DistillationLoss(5, 3, response="topk_kl", top_k=2, feature="feature_cosine")(out)
    assert {"feature", "response", "task", "loss"} == set(terms)
    with pytest.raises(ValueError, match="valid: response_kl, topk_kl"):
        DistillationLoss(5, 3, response="kl")
    with pytest.raises(ValueError, match="valid: feature_mse, feature_cosine"):
        DistillationLoss(5, 3, feature="l1")
    with pytest.raises(ValueError, match="top_k"):
        TopKKL(top_k=0)


def test_logit_ensemble_mean_and_learned():
    good = torch.eye(4).repeat(8, 1) * 5  # always right
    labels = torch.arange(4).repeat(8)
    bad = torch.roll(good, 1, dims=1)  # always wrong
    logits = torch.stack([good, bad])
    mean = LogitEnsemble(2, "mean")
    assert mean.fit(logits, labels) == [0.5, 0.5]
    assert torch.allclose(mean(logits), (good + bad) / 2)
    learned = LogitEnsemble(2, "learned")
    w = learned.fit(logits, labels)
    assert w[0] > 0.9 and sum(w) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="valid: mean, learned"):
        LogitEnsemble(2, "max")


def test_feature_taps_capture_and_name_errors():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with FeatureTaps(model, ["0", "2"]) as taps:
        y = model(torch.ones(1, 3))
    assert taps.outputs[1] is y and taps.outputs[0].shape == (1, 4)
    assert not model[0]._forward_hooks  # hooks removed on exit
    with pytest.raises(KeyError, match="no module '3'"):
        FeatureTaps(model, ["3"])
