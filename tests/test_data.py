import numpy as np
import pytest

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.data import (
    LABELS,
    ClipSpec,
    DataConfig,
    generate_split,
    load_split,
    preprocess_spec,
    to_model_input,
)


def test_shapes_and_dtype():
    clips, labels = generate_split("train", 20, ClipSpec(frames=3, size=32), seed=1)
    assert clips.shape == (20, 3, 32, 32, 3) and clips.dtype == np.uint8
    assert labels.shape == (20,) and labels.dtype == np.int64
    assert set(labels) <= set(range(len(LABELS)))


def test_deterministic_by_seed_and_split():
    spec = ClipSpec(frames=2, size=32)
    a, la = generate_split("val", 8, spec, seed=3)
    b, lb = generate_split("val", 8, spec, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    c, _ = generate_split("val", 8, spec, seed=4)
    d, _ = generate_split("test", 8, spec, seed=3)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_labels_are_balanced():
    _, labels = generate_split("train", 3 * len(LABELS), ClipSpec(frames=2, size=32))
    assert np.all(np.bincount(labels, minlength=len(LABELS)) == 3)


def test_frames_change_over_time_and_clips_differ():
    clips, _ = generate_split("train", 4, ClipSpec(frames=4, size=32))
    # Motion: first and last frame of a clip differ; the views are not constant images.
    assert np.abs(clips[:, 0].astype(int) - clips[:, -1].astype(int)).mean() > 2
    assert clips.std() > 20


def test_verb_pairs_are_time_reversals():
    """put is pick played backwards, and the part's opening in close is open's reversed."""
    from egoedge.trainer.data.synthetic import action_timeline

    t = np.linspace(0, 1, 11)
    pick, put = action_timeline("pick", t), action_timeline("put", t)
    for a, b in zip(pick, put, strict=True):
        np.testing.assert_allclose(a[::-1], b, atol=1e-12)
    np.testing.assert_allclose(action_timeline("close", t)[1], 1 - action_timeline("open", t)[1])
    with pytest.raises(ValueError, match="unknown verb"):
        action_timeline("throw", t)


def test_same_scene_different_verb_differs_only_by_action():
    from egoedge.trainer.data.synthetic import label_of, render_clip

    spec = ClipSpec(frames=4, size=48)
    opened = render_clip(label_of("open", "drawer"), np.random.default_rng(0), spec).astype(float)
    closed = render_clip(label_of("close", "drawer"), np.random.default_rng(0), spec).astype(float)
    assert np.abs(opened - closed).mean() > 0.5  # the action is visible
    assert np.abs(opened[:, :4] - closed[:, :4]).mean() < np.abs(opened - closed).mean()  # the backdrop is shared


def test_bad_split_and_size():
    with pytest.raises(ValueError, match="unknown split"):
        generate_split("holdout", 4, ClipSpec())
    with pytest.raises(ValueError, match="positive"):
        generate_split("train", 0, ClipSpec())


def test_preprocess_roundtrip_and_errors(mini_data_cfg):
    split = load_split(mini_data_cfg, "val")
    pp = preprocess_spec(mini_data_cfg)
    x = to_model_input(split.clips, pp)
    assert tuple(x.shape) == (16, 2, 3, 32, 32)
    assert abs(float(x.mean())) < 2.5
    with pytest.raises(EgoedgeError, match="expects 2 frames of 32x32"):
        to_model_input(split.clips[:, :1], pp)
    with pytest.raises(EgoedgeError, match=r"\(N, T, H, W, 3\)"):
        to_model_input(split.clips[0], pp)


def test_unknown_task():
    with pytest.raises(EgoedgeError, match="unknown clip task 'forecast'; valid: anticipation, recognition"):
        load_split(DataConfig(task="forecast", train=4), "train")


def test_unknown_dataset():
    with pytest.raises(EgoedgeError, match="unknown data source .kinetics.; use one of: .*folder:clips"):
        load_split(DataConfig(name="kinetics"), "train")


def test_a_split_is_rendered_once_per_process_and_read_only(monkeypatch, mini_data_cfg):
    """The run's exports and bench read the splits its training read: no second rendering, no shared writes."""
    from dataclasses import replace

    import egoedge.trainer.data.synthetic as synthetic

    cfg = replace(mini_data_cfg, seed=11)  # a split no other test has loaded in this process
    monkeypatch.delenv("EGOEDGE_CACHE", raising=False)
    rendered = []
    real = synthetic.generate_split
    monkeypatch.setattr(synthetic, "generate_split", lambda *a, **k: rendered.append(a[0]) or real(*a, **k))
    a, b = load_split(cfg, "val"), load_split(cfg, "val")
    assert rendered == ["val"] and a is b
    with pytest.raises(ValueError, match="read-only"):
        a.clips[0, 0, 0, 0, 0] = 1
    load_split(replace(cfg, seed=12), "val")
    assert rendered == ["val", "val"]  # another dataset is rendered


def test_cache_roundtrip(tmp_path, monkeypatch, mini_data_cfg):
    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path))
    a = load_split(mini_data_cfg, "test")
    assert list((tmp_path / "data").glob("*.npz"))
    b = load_split(mini_data_cfg, "test")
    np.testing.assert_array_equal(a.clips, b.clips)
