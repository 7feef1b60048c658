"""The clip's other modalities: boxes, audio and flow rendered or computed consistently with the frames."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data import BOX_CLASSES, LABELS, ClipSpec, generate_split, load_split, model_input
from egoedge.trainer.data.audio import AUDIO_BANDS, AUDIO_STEPS, render_audio
from egoedge.trainer.data.modalities import MODALITIES, modality_preprocess
from egoedge.trainer.data.optical_flow import clip_flow, horn_schunck
from egoedge.trainer.data.synthetic import BOX_SLOTS, label_of, render_clip

SPEC = ClipSpec(frames=4, size=48)


def _truth(label: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    note: dict = {}
    clip = render_clip(label, np.random.default_rng(seed), SPEC, note)
    return clip, note


def test_annotating_changes_no_frame():
    clip, _ = _truth(label_of("open", "box"), 5)
    np.testing.assert_array_equal(clip, render_clip(label_of("open", "box"), np.random.default_rng(5), SPEC))


def test_boxes_name_the_hand_and_the_acted_on_noun():
    for noun in ("drawer", "cup", "knife", "box"):
        _, note = _truth(label_of("pick", noun), 1)
        assert note["classes"][0] == BOX_CLASSES.index("hand")
        assert note["classes"][1] == BOX_CLASSES.index(noun)
        assert note["present"][:, :2].all()
        b = note["boxes"][note["present"]]
        assert (b >= 0).all() and (b <= 1).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


@pytest.mark.parametrize("seed", range(4))
def test_object_box_follows_the_action(seed):
    """A picked object rises in the image (its box centre moves up), a put one comes down."""
    _, pick = _truth(label_of("pick", "cup"), seed)
    _, put = _truth(label_of("put", "cup"), seed)
    cy = lambda n: (n["boxes"][:, 1, 1] + n["boxes"][:, 1, 3]) / 2  # noqa: E731
    assert cy(pick)[-1] < cy(pick)[0] - 0.05
    assert cy(put)[-1] > cy(put)[0] + 0.05


def test_box_covers_the_drawn_object_pixels():
    """Painting the object's box region differs from the clip with the action removed mostly inside the box."""
    a, note = _truth(label_of("open", "drawer"), 2)
    b, _ = _truth(label_of("close", "drawer"), 2)
    diff = np.abs(a.astype(int) - b.astype(int)).sum(-1) > 30  # where the moving part differs
    for t in (0, SPEC.frames - 1):
        x1, y1, x2, y2 = (note["boxes"][t, 1] * SPEC.size).round().astype(int)
        inside = diff[t, max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2].sum()
        assert inside >= 0.8 * diff[t].sum()


def test_mirrored_clip_mirrors_its_boxes():
    for seed in range(12):  # find one mirrored and one plain view of the same scene
        _, note = _truth(label_of("put", "knife"), seed)
        clip = render_clip(label_of("put", "knife"), np.random.default_rng(seed), SPEC)
        x1, y1, x2, y2 = (note["boxes"][0, 0] * SPEC.size).round().astype(int)
        skin = clip[0, y1:y2, x1:x2].reshape(-1, 3).astype(float)
        # The hand box holds the hand: skin tones have red above blue.
        assert (skin[:, 0] > skin[:, 2]).mean() > 0.4


def test_detector_noise_is_seeded_and_bounded():
    a, b = {}, {}
    generate_split("val", 16, SPEC, seed=3, annotations=a)
    generate_split("val", 16, SPEC, seed=3, annotations=b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["boxes"].shape == (16, SPEC.frames, BOX_SLOTS, 4) and a["audio"].shape == (16, AUDIO_BANDS, AUDIO_STEPS)
    assert 0.7 < a["present"][:, :, :2].mean() < 1.0  # some detections are missed, most are not


def _energy_early(label: str, seeds=range(12)) -> float:
    fractions = []
    for s in seeds:
        power = np.exp(render_audio(LABELS.index(label), np.random.default_rng(s))).sum(0)
        fractions.append(power[:AUDIO_STEPS // 2].sum() / power.sum())
    return float(np.median(fractions))


def test_sound_happens_when_the_frames_show_it():
    """open/pick make their sound as the action starts, close/put as it ends (the impact)."""
    assert _energy_early("open_cup") > 0.5 > _energy_early("close_cup")
    assert _energy_early("pick_knife") > 0.5 > _energy_early("put_knife")


def test_materials_ring_at_their_own_pitch():
    def centroid(label):  # spectral centroid (in bands), median over clips
        values = []
        for s in range(15):
            spec = np.exp(render_audio(LABELS.index(label), np.random.default_rng(s)))
            values.append((spec.sum(1) * np.arange(AUDIO_BANDS)).sum() / spec.sum())
        return float(np.median(values))

    assert centroid("put_knife") > centroid("put_cup") > centroid("put_box")


@pytest.mark.parametrize("dx,dy", [(1, 0), (2, 1), (3, -2), (0, 0)])
def test_horn_schunck_recovers_a_translation(dx, dy):
    torch.manual_seed(0)
    base = F.interpolate(torch.rand(2, 1, 12, 12), size=(96, 96), mode="bicubic", align_corners=False)
    a = base[:, :, 16:80, 16:80]
    b = base[:, :, 16 - dy:80 - dy, 16 - dx:80 - dx]  # content moved by (dx, dy)
    flow = horn_schunck(a, b)[:, :, 8:-8, 8:-8]
    assert abs(flow[:, 0].mean().item() - dx) < 0.15 and abs(flow[:, 1].mean().item() - dy) < 0.15


def test_flow_of_clips_and_bad_input():
    clips, _ = generate_split("train", 3, ClipSpec(frames=3, size=32))
    flow = clip_flow(clips)
    assert flow.shape == (3, 2, 2, 32, 32) and flow.dtype == np.float16
    still = np.repeat(clips[:, :1], 3, axis=1)
    assert np.abs(clip_flow(still).astype(np.float32)).max() < 1e-3
    with pytest.raises(ValueError, match="T>=2"):
        clip_flow(clips[:, :1])
    with pytest.raises(ValueError, match="of one shape"):
        horn_schunck(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))


@pytest.mark.parametrize("modality,shape", [
    ("rgb", (5, 2, 3, 32, 32)), ("flow", (5, 1, 2, 32, 32)), ("audio", (5, 1, 1, AUDIO_BANDS, AUDIO_STEPS)),
    ("objects", (5, 2, BOX_SLOTS, 5 + len(BOX_CLASSES))),
])
def test_model_input_of_every_modality(mini_data_cfg, modality, shape):
    split = load_split(mini_data_cfg, "train")
    pp = modality_preprocess(modality, mini_data_cfg)
    x = model_input(split, np.arange(5), pp)
    assert tuple(x.shape) == shape and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_flow_is_cached_beside_the_split(tmp_path, monkeypatch, mini_data_cfg):
    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path))
    split = load_split(mini_data_cfg, "val")
    first = model_input(split, np.arange(4), modality_preprocess("flow", mini_data_cfg))
    assert list(tmp_path.rglob("*.flow.npy"))
    again = model_input(load_split(mini_data_cfg, "val"), np.arange(4), modality_preprocess("flow", mini_data_cfg))
    torch.testing.assert_close(first, again)


def test_unknown_modality_and_text_without_history(mini_data_cfg):
    split = load_split(mini_data_cfg, "train")
    with pytest.raises(EgoedgeError, match="unknown modality 'smell'"):
        model_input(split, np.arange(2), {"modality": "smell"})
    with pytest.raises(EgoedgeError, match="--task anticipation"):
        modality_preprocess("text", mini_data_cfg)
    with pytest.raises(EgoedgeError, match="--task anticipation"):
        model_input(split, np.arange(2), {"modality": "text", "tokenizer": "words", "max_len": 8})
    assert set(MODALITIES.keys()) == {"rgb", "flow", "audio", "objects", "text"}


@pytest.mark.parametrize("arch", ["flow_cnn", "audio_cnn", "box_transformer"])
def test_modality_teachers_forward_their_input(mini_data_cfg, arch):
    from egoedge.trainer.stages import ModelChoice, build, input_spec

    model, _ = build(ModelChoice(arch, "test"), mini_data_cfg, len(LABELS))
    pp = input_spec(ModelChoice(arch, "test"), mini_data_cfg)
    x = model_input(load_split(mini_data_cfg, "train"), np.arange(3), pp)
    logits, feats = model(x, return_features=True)
    assert logits.shape == (3, len(LABELS)) and feats.shape == (3, model.embed_dim)
    assert model.example_inputs(2)[0].shape[1:] == x.shape[1:]


def test_multimodal_teachers_teach_an_rgb_student(tmp_path, mini_data_cfg):
    """Flow and box teachers, each on its modality, distil into one RGB student through a learned ensemble."""
    from egoedge.trainer.checkpoint import load_model
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.recipes import recipe
    from egoedge.trainer.stages import ModelChoice, load_splits, student_stage, teacher_stage

    splits = load_splits(mini_data_cfg)
    cfg = TrainConfig(epochs=1, batch_size=16)
    teachers = [teacher_stage(ModelChoice(a, "test"), splits, cfg, tmp_path / f"{a}.pt")
                for a in ("flow_cnn", "box_transformer")]
    assert load_model(teachers[0])[1]["preprocess"]["modality"] == "flow"
    out = student_stage(ModelChoice("mobilevit", "micro"), teachers, splits, cfg, recipe("multi_teacher"),
                        "multi_teacher", tmp_path / "student.pt")
    model, ckpt = load_model(out)
    assert ckpt["config"]["teachers"] == ["flow_cnn.pt", "box_transformer.pt"]
    assert "modality" not in ckpt["preprocess"]  # the student reads RGB, as every exporter expects
    weights = ckpt["metrics"]["history"][-1]["teacher_weights"]
    assert len(weights) == 2 and abs(sum(weights) - 1) < 1e-3
