import pytest
import torch

from egoedge.trainer.models import MODELS, build_model, model_modality


@pytest.mark.parametrize("arch", [a for a in MODELS.keys() if hasattr(MODELS.get(a), "variants")])
def test_every_registered_model_builds_and_runs(arch):
    """Each model builds for its modality, takes its example input and back-propagates."""
    from egoedge.trainer.data import DataConfig
    from egoedge.trainer.stages import ModelChoice, build

    variant = "test" if "test" in MODELS.get(arch).variants else MODELS.get(arch).variants[0]
    task = "anticipation" if model_modality(arch) == "text" else "recognition"
    model, _ = build(ModelChoice(arch, variant), DataConfig(frames=3, size=32, task=task), 5)
    (x,) = model.example_inputs(batch=2)
    if model_modality(arch) == "rgb":
        assert tuple(x.shape) == (2, 3, 3, 32, 32)
    logits = model(x)
    assert tuple(logits.shape) == (2, 5)
    assert tuple(model.forward_features(x).shape) == (2, model.embed_dim)
    logits.sum().backward()


def test_temporal_order_matters():
    """Reversing the frames must change the output: the pool has temporal positions."""
    torch.manual_seed(0)
    model = build_model("mobilevit", num_classes=4, frames=4, size=32, variant="micro").eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.pool.pos, std=1.0)
        (x,) = model.example_inputs()
        assert not torch.allclose(model(x), model(x.flip(1)), atol=1e-4)


def test_unknown_model_and_variant():
    with pytest.raises(KeyError, match="clip_vit, deepvslnet, flow_cnn, hf, lightvslnet, minilm, mobilenet, mobilevit"):
        build_model("vgg", num_classes=2, frames=1, size=32)
    with pytest.raises(ValueError, match="valid: micro, tiny, xxs, xs, s"):
        build_model("mobilevit", num_classes=2, frames=1, size=32, variant="huge")
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model("mobilevit", num_classes=2, frames=1, size=40, variant="micro")
    with pytest.raises(ValueError, match="valid: v4_small_035, v4_small_050, v4_small, v2_050, lite0"):
        build_model("mobilenet", num_classes=2, frames=1, size=32, variant="v5")
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model("mobilenet", num_classes=2, frames=1, size=48, variant="v4_small_035")
    with pytest.raises(ValueError, match="valid: r10_16, r10_16_e128, r10_32, r10_48, r10_64, r18_32"):
        build_model("resnet", num_classes=2, frames=1, size=32, variant="r50")


@pytest.mark.parametrize("arch,variant,low,high", [("mobilevit", "tiny", 0.3e6, 1.0e6),
                                                   ("mobilevit", "xxs", 0.9e6, 1.6e6),
                                                   ("mobilenet", "v4_small", 1.5e6, 2.0e6),
                                                   ("resnet", "r10_32", 1.4e6, 1.8e6),
                                                   ("resnet", "r10_48", 2.9e6, 3.4e6),
                                                   # 1/50 of the 22.7 M MiniLM teacher is 0.45 M
                                                   ("resnet", "r10_16_e128", 0.3e6, 0.45e6)])
def test_student_sizes(arch, variant, low, high):
    model = build_model(arch, num_classes=16, frames=4, size=64, variant=variant)
    assert low < sum(p.numel() for p in model.parameters()) < high


def test_a_resnet_variant_may_fix_its_embedding_width():
    assert build_model("resnet", num_classes=16, frames=4, size=64, variant="r10_16_e128").embed_dim == 128
    assert build_model("resnet", num_classes=16, frames=4, size=64, variant="r10_16", embed_dim=96).embed_dim == 96


def test_mobilenet_student_is_a_conv_trunk_with_numbered_stages():
    """CBKD prunes ``encoder.stages.N``; the trunk's head is a narrow projection, not timm's 1280-wide one."""
    from egoedge.trainer.prune.cbkd import CBKDConfig, block_names

    model = build_model("mobilenet", num_classes=16, frames=4, size=64, variant="v4_small", embed_dim=128)
    assert block_names(model, CBKDConfig()) == [f"stages.{i}" for i in range(5)]
    assert model.encoder.proj.in_features == 960 and model.embed_dim == 128
    assert not any(isinstance(m, torch.nn.MultiheadAttention | torch.nn.LayerNorm) for m in model.encoder.modules())


def test_resnet_student_is_dense_convs_with_four_stages():
    """Basic blocks only: no depthwise or grouped conv (those are what int8 does not speed up on x86)."""
    from egoedge.trainer.prune.cbkd import CBKDConfig, block_names

    model = build_model("resnet", num_classes=16, frames=4, size=64, variant="r10_32")
    assert block_names(model, CBKDConfig()) == [f"stages.{i}" for i in range(4)]
    assert model.encoder.proj.in_features == 256
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.groups == 1 for c in convs)
    assert tuple(model(model.example_inputs()[0]).shape) == (1, 16)


def test_macs_count_transformer_encoders_in_eval_mode():
    """nn.TransformerEncoder's fused inference path must not hide its matmuls from the MAC count."""
    from egoedge.trainer.common.complexity import count_macs

    model = build_model("text_transformer", num_classes=4, max_len=8, variant="test")
    # Per token and layer at least the q/k/v/out projections and the 4x MLP: 12 * width^2.
    assert count_macs(model, model.example_inputs()) >= 8 * 12 * 32 * 32
