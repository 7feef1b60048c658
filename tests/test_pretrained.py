"""int8 on real pretrained weights and real photos: EfficientNet-Lite0 (weights from a registry package) and
photos that ship inside scikit-image, scikit-learn and matplotlib. Nothing is downloaded."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "pretrained"))

from models import efficientnet_lite0  # noqa: E402
from photos import write  # noqa: E402

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


def test_too_few_photos_is_one_line(tmp_path, monkeypatch):
    import photos

    monkeypatch.setattr(photos, "HELD_OUT", (("skimage", "data/no_such_photo.png"),))
    with pytest.raises(SystemExit, match="^too few photos found; pip install scikit-image scikit-learn matplotlib$"):
        photos.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before writing anything
