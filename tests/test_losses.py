import math

import pytest
import torch

from trainer.distill import LOSSES, DistillationLoss, FeatureMSE, ResponseKL


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
    with pytest.raises(KeyError, match="valid: feature_mse, response_kl, task_ce"):
        LOSSES.get("nope")
