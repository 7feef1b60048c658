"""Ego4D NLQ: the official metrics on hand-built cases, the annotation/feature loader, the VSLNet family
(every FiLM mode), the training objective and decoding, export parity, and the CLI's error paths."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.models import MODELS, build_model
from egoedge.trainer.models.vslnet import FILM_MODES, masked_softmax
from egoedge.trainer.nlq import metrics as M
from egoedge.trainer.nlq.data import (
    build_vocab,
    index_to_time,
    load_glove,
    load_split,
    read_annotations,
    sample_features,
    time_to_index,
    word_ids,
)

FIXTURE = Path(__file__).parent / "fixtures" / "nlq_sample.json"


def _truth(windows: list[list[tuple[float, float]]]) -> dict:
    """An annotation dict: one clip per entry, one annotation per clip, its queries' windows."""
    videos = []
    for c, queries in enumerate(windows):
        lq = [{"clip_start_sec": s, "clip_end_sec": e, "query": f"q{c}{i}"} for i, (s, e) in enumerate(queries)]
        videos.append({"video_uid": f"v{c}", "clips": [{"clip_uid": f"c{c}", "clip_start_sec": 0.0,
                                                         "clip_end_sec": 100.0,
                                                         "annotations": [{"annotation_uid": f"a{c}",
                                                                          "language_queries": lq}]}]})
    return {"videos": videos}


def _pred(c: int, q: int, times: list[list[float]]) -> dict:
    return {"clip_uid": f"c{c}", "annotation_uid": f"a{c}", "query_idx": q, "predicted_times": times}


# --- the official metrics ---------------------------------------------------------------------------------

def test_iou_hand_cases():
    got = M.compute_iou(np.array([[0, 10], [5, 15], [20, 30], [10, 12], [0, 20]]), (5.0, 15.0))
    np.testing.assert_allclose(got, [5 / 15, 1.0, 0.0, 0.2, 0.5])


def test_recall_counts_first_k_windows_and_strict_threshold():
    truth = _truth([[(10.0, 20.0), (50.0, 60.0)], [(0.0, 10.0)]])
    preds = [
        _pred(0, 0, [[10, 20], [0, 1]]),  # top-1 exact: IoU 1
        # duplicates tie; the hit is at rank 3; rank 6 is beyond top-5
        _pred(0, 1, [[0, 5], [0, 5], [52, 60], [1, 2], [3, 4], [50, 60]]),
        _pred(1, 0, [[0, 5], [90, 100]]),  # IoU exactly 0.5: not > 0.5
    ]
    m = M.evaluate(preds, truth)
    assert m["recall"]["1"] == {"0.3": pytest.approx(200 / 3), "0.5": pytest.approx(100 / 3)}
    assert m["recall"]["5"] == {"0.3": pytest.approx(100.0), "0.5": pytest.approx(200 / 3)}
    assert m["mIoU"] == pytest.approx(100 * (1.0 + 0.0 + 0.5) / 3)  # the IoU of each top-1 window
    assert (m["evaluated"], m["queries"]) == (3, 3)
    assert M.metrics_row(m)["R5@0.5"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("pred, message", [
    (_pred(7, 0, [[0, 1]]), "has no ground truth"),
    (_pred(0, 5, [[0, 1]]), "out of range"),
    (_pred(0, 0, []), "has no windows"),
])
def test_evaluate_refuses_bad_predictions(pred, message):
    with pytest.raises(EgoedgeError, match=message):
        M.evaluate([pred], _truth([[(0.0, 1.0)]]))


def test_submission_round_trip(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(M.submission([_pred(0, 0, [[0, 1]])])))
    assert M.read_submission(path)[0]["clip_uid"] == "c0"
    path.write_text(json.dumps({"results": [{"clip_uid": "c0"}]}))
    with pytest.raises(EgoedgeError, match="lacks annotation_uid"):
        M.read_submission(path)


# --- data ---------------------------------------------------------------------------------------------------

def test_reads_the_official_annotation_layout():
    queries, skipped = read_annotations(FIXTURE)
    assert skipped == 1  # the query with "query": null
    assert [q.query_idx for q in queries] == [0, 2, 0]
    q = queries[0]
    assert (q.clip_uid, q.start, q.end, q.duration) == ("5c3e7f58-2222-4a0e-8c55-3a6b9d0c0001", 30.5, 36.0, 480.0)
    assert q.template.startswith("Objects: Where is object X")


@pytest.mark.parametrize("text, message", [
    ("{", "not readable JSON"), ('{"clips": []}', "no 'videos' list"),
    ('{"videos": [{"clips": [{"clip_uid": "x"}]}]}', "malformed NLQ annotation"),
])
def test_bad_annotation_files(tmp_path, text, message):
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(EgoedgeError, match=message):
        read_annotations(path)


def _features(folder: Path, lengths: dict[str, int], dim: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for uid, t in lengths.items():
        torch.save(torch.arange(t * dim, dtype=torch.float32).reshape(t, dim), folder / f"{uid}.pt")


def test_load_split_resamples_long_clips_and_maps_answers_to_steps(tmp_path):
    uids = [v["clips"][0]["clip_uid"] for v in json.loads(FIXTURE.read_text())["videos"]]
    _features(tmp_path / "features", {uids[0]: 900, uids[1]: 20})  # 480 s at 1.875/s; a short one
    split = load_split(FIXTURE, tmp_path / "features", max_pos_len=64)
    assert split.video.shape == (3, 64, 8)
    assert split.num_units.tolist() == [64, 64, 20]
    assert not split.video[2, 20:].any()  # zero padding
    assert split.video_mask[2, :20].all() and not split.video_mask[2, 20:].any()
    # 30.5-36.0 s of 480 s over 64 steps of 7.5 s: steps 4 (30-37.5)
    assert (split.start_idx[0], split.end_idx[0]) == (4, 4)
    assert (split.start_idx[2], split.end_idx[2]) == (0, 0)  # 12-15.2 s of 300 s in 20 steps of 15 s: step 0


def test_feature_file_errors(tmp_path):
    uid = json.loads(FIXTURE.read_text())["videos"][0]["clips"][0]["clip_uid"]
    with pytest.raises(EgoedgeError, match="missing features for clip"):
        load_split(FIXTURE, tmp_path, 16)
    torch.save(torch.zeros(4), tmp_path / f"{uid}.pt")
    with pytest.raises(EgoedgeError, match=r"must hold a \(T, D\) tensor"):
        load_split(FIXTURE, tmp_path, 16)
    torch.save(torch.full((4, 3), float("nan")), tmp_path / f"{uid}.pt")
    with pytest.raises(EgoedgeError, match="NaN"):
        load_split(FIXTURE, tmp_path, 16)
    (tmp_path / f"{uid}.pt").write_bytes(b"not a tensor")
    with pytest.raises(EgoedgeError, match="not a readable feature tensor"):
        load_split(FIXTURE, tmp_path, 16)


def test_sampling_averages_uniform_spans():
    x = np.arange(10, dtype=np.float32)[:, None]
    # As the VSLNet reference: span edges are clipped to T-1, so the last span is step 8 alone.
    np.testing.assert_allclose(sample_features(x, 5)[:, 0], [0.5, 2.5, 4.5, 6.5, 8.0])
    assert sample_features(x, 16) is x


def test_time_index_round_trip():
    assert time_to_index(2.0, 5.0, 10, 10.0) == (2, 4)
    assert index_to_time(2, 4, 10, 10.0) == (2.0, 5.0)
    assert time_to_index(2.4, 2.6, 10, 10.0) == (2, 2)
    assert time_to_index(0.0, 10.0, 10, 10.0) == (0, 9)


def test_word_tokenizer_and_vocab():
    vocab = build_vocab(["Where did I put the knife?", "where is the cup"])
    assert vocab[:2] == ["<pad>", "<unk>"] and vocab[2:5] == ["the", "where", "?"]
    ids = word_ids(["where is the spoon?", "the " * 10], vocab, 6)
    assert ids[0].tolist() == [vocab.index("where"), vocab.index("is"), vocab.index("the"), 1, vocab.index("?"), 0]
    assert (ids[1] == vocab.index("the")).all()  # cut at max_len


def test_glove_file(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 1 2 3\nzebra 4 5 6\n")
    table, found = load_glove(path, ["<pad>", "<unk>", "the"], 3)
    assert found == 1 and table[2].tolist() == [1, 2, 3] and not table[0].any()
    with pytest.raises(EgoedgeError, match="expected 4-d"):
        load_glove(path, ["<pad>", "<unk>", "the"], 4)


# --- models -----------------------------------------------------------------------------------------------

def _tiny(arch="vslnet", **kw):
    sizes = {"feature_dim": 8, "vocab_size": 20, "dim": 16, "heads": 2, "word_dim": 8, "conv_layers": 1,
             "max_pos_len": 12, "max_query_len": 5}
    return build_model(arch, **{**sizes, **kw})


@pytest.mark.parametrize("film", FILM_MODES)
def test_every_film_mode_gives_span_logits_and_starts_as_identity(film):
    torch.manual_seed(0)
    base = _tiny(film="off").eval()
    model = base
    if film != "off":
        model = _tiny(film=film).eval()
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
        assert not unexpected and all("film" in k for k in missing)
    x = base.example_inputs(3)
    start, end = model(*x)
    assert start.shape == end.shape == (3, 12)
    torch.testing.assert_close(start, base(*x)[0])  # FiLM is zero-initialised: (1 + 0) * x + 0


def test_registry_and_bad_settings():
    assert {"vslbase", "vslnet", "deepvslnet", "lightvslnet"} <= set(MODELS.keys())
    assert _tiny("vslbase").highlighter is None and _tiny("vslnet").highlighter is not None
    with pytest.raises(ValueError, match="unknown FiLM mode 'inside'"):
        _tiny(film="inside")
    with pytest.raises(ValueError, match="not divisible"):
        _tiny(heads=3)


def test_masked_softmax_matches_minus_infinity_masking():
    s, m = torch.randn(4, 7), (torch.rand(4, 7) > 0.4).float()
    m[:, 0] = 1
    ref = torch.softmax(s.masked_fill(m == 0, float("-inf")), -1)
    torch.testing.assert_close(masked_softmax(s, m, -1), ref)


# --- training objective and decoding ---------------------------------------------------------------------

def test_generated_dataset_is_in_the_official_format(nlq_data):
    ann = nlq_data.annotation("train")
    clip = ann["videos"][0]["clips"][0]
    assert {"clip_uid", "clip_start_sec", "clip_end_sec", "annotations"} <= set(clip)
    q = clip["annotations"][0]["language_queries"][0]
    assert {"clip_start_sec", "clip_end_sec", "query", "template"} <= set(q) and q["query"].endswith("?")
    assert len(nlq_data.splits["train"]) == 24 and nlq_data.feature_dim == 8


def test_highlight_labels_widen_the_answer(nlq_data):
    from egoedge.trainer.nlq.loss import highlight_labels

    s = nlq_data.splits["train"]
    s.start_idx[0], s.end_idx[0] = 5, 14  # 10 steps: widened by 1 each side
    labels = highlight_labels(s, np.array([0]), 0.1)[0]
    assert labels[4:16].all() and labels.sum() == 12


def test_top_windows_respect_order_and_mask():
    from egoedge.trainer.nlq.windows import top_windows

    start = np.array([[0.0, 5.0, 0.0, 9.0]])
    end = np.array([[9.0, 0.0, 5.0, 0.0]])
    mask = np.array([[1.0, 1.0, 1.0, 0.0]])  # step 3 is padding: its start logit must not win
    w = top_windows(start, end, mask, 3)
    assert w[0, 0].tolist() == [1, 2]
    assert (w[0, :, 0] <= w[0, :, 1]).all() and (w < 3).all()


def test_training_step_losses_and_kd(nlq_data):
    from egoedge.trainer.nlq.loss import SpanLoss, kd_loss, span_loss
    from egoedge.trainer.nlq.train import batch_of, build_for

    model = build_for("vslnet", nlq_data, dim=16, heads=2, conv_layers=1)
    b = batch_of(nlq_data, "train", np.arange(4), "words", 0.1, torch.device("cpu"))
    out = model.forward_all(b["video"], b["video_mask"], b["ids"])
    terms = span_loss(out, b, SpanLoss())
    assert torch.isfinite(terms["loss"]) and terms["highlight"] > 0
    same = {k: v.detach() for k, v in out.items() if k in ("start", "end")}
    out = {k: v.detach() if v is not None else v for k, v in out.items()}
    assert float(kd_loss(out, same, b["video_mask"], 2.0)) == pytest.approx(0.0, abs=1e-5)


def test_train_save_load_and_predict(nlq_data, tmp_path):
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.nlq.train import (
        build_for,
        evaluate_model,
        load_nlq_model,
        logits_of,
        save_nlq_checkpoint,
        train_nlq,
    )

    torch.manual_seed(0)
    model = build_for("lightvslnet", nlq_data, dim=16, heads=2, word_dim=8)
    history = train_nlq(model, nlq_data, TrainConfig(epochs=2, batch_size=8))
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])
    preds, metrics = evaluate_model(model.eval(), nlq_data, "test")
    assert len(preds) == 8 and all(len(p["predicted_times"]) == 5 for p in preds)
    assert all(0 <= s <= e for p in preds for s, e in p["predicted_times"])
    path = save_nlq_checkpoint(tmp_path / "light.pt", "lightvslnet", model, nlq_data, {"test": metrics})
    again, ckpt = load_nlq_model(path)
    assert ckpt["preprocess"]["vocab"] == nlq_data.vocab
    np.testing.assert_array_equal(logits_of(model, nlq_data, "val", "words")[0],
                                  logits_of(again, nlq_data, "val", "words")[0])


def test_eager_runner_returns_start_and_end_logits():
    from egoedge.bench.runtimes import RUNTIMES

    model = _tiny().eval()
    x = model.example_inputs()
    session = RUNTIMES.get("pytorch").open(model, 1)
    start, end = session([t.numpy() for t in x])
    ref = model(*x)
    np.testing.assert_array_equal(start, ref[0].detach().numpy())
    np.testing.assert_array_equal(end, ref[1].detach().numpy())


def test_calibration_samples_carry_every_input():
    from egoedge.trainer.data.calibration import as_samples

    video, ids = np.zeros((3, 4, 2), np.float32), np.arange(6, dtype=np.int32).reshape(3, 2)
    samples = as_samples(video, ids)
    assert len(samples) == 3 and [t.shape for t in samples[2]] == [(1, 4, 2), (1, 2)]
    assert samples[2][1].tolist() == [[4, 5]]


def test_clip_checkpoint_is_not_an_nlq_checkpoint(tmp_path, mini_data_cfg, micro_ckpt):
    from egoedge.trainer.nlq.train import load_nlq_model

    with pytest.raises(EgoedgeError, match="not an NLQ checkpoint"):
        load_nlq_model(micro_ckpt(tmp_path / "s.pt", mini_data_cfg))


# --- export ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_export_parity_executorch_and_onnx(nlq_data, tmp_path):
    from egoedge.edge.export import ExportConfig, export_checkpoint
    from egoedge.trainer.nlq.train import build_for, save_nlq_checkpoint

    torch.manual_seed(0)
    model = build_for("lightvslnet", nlq_data, dim=16, heads=2, word_dim=8).eval()
    ckpt = save_nlq_checkpoint(tmp_path / "light.pt", "lightvslnet", model, nlq_data, {})
    manifest = export_checkpoint(ckpt, tmp_path / "export",
                                 ExportConfig(formats=("executorch", "onnx"), parity_samples=4))
    assert manifest["task"] == "nlq"
    for a in manifest["artifacts"]:
        assert a["status"] == "ok", a["reason"]
        assert a["parity"]["max_abs"] < 1e-4 and a["parity"]["top1_agreement"] == 100.0
        assert [i["name"] for i in a["inputs"]] == ["video", "video_mask", "query_ids"]
        assert a["inputs"][2]["dtype"] == "int32" and a["preprocess"]["vocab"] == nlq_data.vocab
        assert a["accuracy"] == {"top1": a["metrics"]["R1@0.3"], "top5": a["metrics"]["R5@0.3"]}
    sample = np.load(tmp_path / "export" / "sample_input.npz")
    assert sample["video"].shape == (1, 24, 8)


# --- CLI ------------------------------------------------------------------------------------------------

def test_cli_scores_a_submission_file(tmp_path):
    from typer.testing import CliRunner

    from egoedge.cli import app

    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(_truth([[(10.0, 20.0)]])))
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(M.submission([_pred(0, 0, [[10, 20]])])))
    r = CliRunner().invoke(app, ["nlq", "eval", "--predictions", str(preds), "--annotations", str(truth),
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "nlq_metrics.json").read_text())
    assert m["recall"]["1"]["0.5"] == 100.0 and m["mIoU"] == 100.0 and m["ground_truth"] == str(truth)


@pytest.mark.parametrize("args, message", [
    (["nlq", "eval", "--predictions", "p.json"], "needs --annotations"),
    (["nlq", "eval"], "give a checkpoint"),
    (["nlq", "train", "--out", "x.pt", "--film", "sideways"], "unknown FiLM mode 'sideways'"),
    (["nlq", "train", "--out", "x.pt", "--arch", "bignet"], "unknown NLQ model 'bignet'"),
    (["nlq", "train", "--out", "x.pt", "--data", "/nonexistent"], "unknown data source '/nonexistent'; use one of:"),
    (["run", "--task", "nlq", "--data", "ego4d"], "runs on the generated queries; train on your own Ego4D features "
                                                  "step by step: egoedge nlq train --data ego4d"),
    (["run", "--task", "nlq", "--threads", "0"], "--threads must be >= 1, got 0"),
    (["run", "--task", "nlq", "--iterations", "0"], "--iterations must be >= 1, got 0"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from egoedge.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EGOEDGE_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1
    assert message in " ".join(r.output.split()), r.output


def test_egoedge_export_takes_an_nlq_checkpoint(nlq_data, tmp_path):
    """One export command for every task: the NLQ student goes through `egoedge export` with its task's gate."""
    import json

    from typer.testing import CliRunner

    from egoedge.cli import app
    from egoedge.trainer.nlq.train import build_for, save_nlq_checkpoint

    torch.manual_seed(0)
    model = build_for("lightvslnet", nlq_data, dim=16, heads=2, word_dim=8).eval()
    ckpt = save_nlq_checkpoint(tmp_path / "light.pt", "lightvslnet", model, nlq_data, {})
    r = CliRunner().invoke(app, ["export", str(ckpt), "--to", "onnx", "--parity-samples", "4",
                                 "--out", str(tmp_path / "export")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["task"] == "nlq" and manifest["gate"]["int8_min_agreement"] == 80.0
    assert [a["status"] for a in manifest["artifacts"]] == ["ok"] and "R1@0.3" in r.output
    # ... and the same bench as every task: eager and artifact timed side by side, scored with R1@0.3.
    r = CliRunner().invoke(app, ["bench", str(tmp_path / "export"), "--iterations", "2", "--warmup", "0",
                                 "--in-process", "--out", str(tmp_path / "bench")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert report["task"] == "nlq" and [row["status"] for row in report["results"]] == ["ok", "ok"]
    eager, onnx = report["results"]
    assert onnx["top1_agreement"] == 100.0 and onnx["nlq"] == eager["nlq"] and "mIoU" in onnx["nlq"]
    assert "R1@0.3 %" in (tmp_path / "bench" / "report.md").read_text()


def test_embed_refuses_nlq_exports(tmp_path):
    from egoedge.edge.embed import embed

    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    (export / "manifest.json").write_text(json.dumps({"task": "nlq", "source": {"checkpoint": "x.pt",
                                                                                "sha256": "0" * 64},
                                                      "artifacts": []}))
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).parents[1] / "android_demo", app, ignore=shutil.ignore_patterns("build"))
    with pytest.raises(EgoedgeError, match="holds nlq models; the Android demo does not run that task"):
        embed(tmp_path / "run", app)




def test_any_unreadable_annotation_feature_or_submission_file_is_one_egoedge_error(tmp_path):
    """NLQ's loaders turn any bytes into one EgoedgeError: random bytes, cuts, JSON of the wrong shape."""
    from egoedge.trainer.nlq import metrics as nlq_metrics
    from egoedge.trainer.nlq.dataset import NLQDataSpec, load_data
    from egoedge.trainer.nlq.synthetic import NLQDataConfig, generate

    rng = np.random.default_rng(0)
    root = generate(NLQDataConfig(train_clips=4, val_clips=2, test_clips=2, queries=1, dim=8, min_seconds=10,
                                  max_seconds=30), tmp_path / "nlq")
    noise = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 100, 3000)]
    shapes = [b"[1, 2]", b'{"videos": 3}', b'{"videos": [{"clips": 5}]}']
    ann = root / "annotations" / "nlq_train.json"
    feature = next((root / "features").glob("*.pt"))
    cases = [(ann, noise + shapes + [ann.read_bytes()[:c] for c in (10, 100, ann.stat().st_size // 2)]),
             (feature, noise + [feature.read_bytes()[:feature.stat().st_size // 2]])]
    for path, blobs in cases:
        valid = path.read_bytes()
        for blob in blobs:
            path.write_bytes(blob)
            with pytest.raises(EgoedgeError):
                load_data(NLQDataSpec(str(root), 24, 10))
        path.write_bytes(valid)
    submission = tmp_path / "sub.json"
    for blob in noise + shapes:
        submission.write_bytes(blob)
        with pytest.raises(EgoedgeError):
            nlq_metrics.read_submission(submission)
