"""Streaming: the fused step and the pair, the ring buffer, export + parity frame by frame, the per-frame bench,
bad input."""

import json

import numpy as np
import pytest
import torch

from egoedge.edge.export import ExportConfig, export_checkpoint, keep_float
from egoedge.edge.exporters import EXPORTERS
from egoedge.edge.parity import ParityGate
from egoedge.edge.schema import validate
from egoedge.edge.streaming import RingBuffer, StepRunner, StreamRunner, sliding_accuracy, stream_of
from egoedge.trainer.common.complexity import count_macs
from egoedge.trainer.common.io import EgoedgeError
from egoedge.trainer.models import TemporalAttentionPool, build_model
from egoedge.trainer.models.exportable import export_ready
from egoedge.trainer.models.streaming import split_streaming, stream_step, window_logits
from egoedge.trainer.models.video import FoldedAttentionPool

LENIENT = ParityGate(int8_min_agreement=0.0, int8_max_accuracy_drop=100.0)
# One test-sized entry per clip-model family of the registry (the per-frame trunk differs, the split does not).
CLIP_MODELS = [("mobilevit", "micro", 32), ("resnet", "r10_16", 32), ("mobilenet", "v4_small_035", 32),
               ("clip_vit", "test", 32)]


@pytest.mark.parametrize(("arch", "variant", "size"), CLIP_MODELS, ids=[a for a, *_ in CLIP_MODELS])
def test_full_windows_are_the_clip_model_at_every_position(arch, variant, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, frames=3, size=size, variant=variant).eval()
    encoder, head = split_streaming(model)
    frames = torch.randn(7, 3, size, size)
    steps = window_logits(encoder, head, frames)
    with torch.no_grad():
        clips = model(torch.stack([frames[s - 2:s + 1] for s in range(2, 7)]))
    assert torch.allclose(steps[2:], clips, atol=1e-5)


@pytest.mark.parametrize(("arch", "variant", "size"), CLIP_MODELS, ids=[a for a, *_ in CLIP_MODELS])
def test_the_fused_step_fed_its_own_state_is_the_pair_at_every_step(arch, variant, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, frames=3, size=size, variant=variant).eval()
    step = stream_step(model)
    frames = torch.randn(7, 3, size, size)
    window, valid = step.empty_state()
    got = []
    with torch.no_grad():
        for f in frames:
            logits, window, valid = step(f[None], window, valid)
            got.append(logits)
    assert torch.allclose(torch.cat(got), window_logits(*split_streaming(model), frames), atol=1e-5)
    assert valid.tolist() == [[1.0, 1.0, 1.0]]


def _trained_looking_pool(model: torch.nn.Module) -> None:
    """Give the pool's query and layer norms values away from their init, so every folded term is exercised."""
    with torch.no_grad():
        for t in (model.pool.query, model.pool.norm.weight, model.pool.norm.bias, model.pool.qkv.bias,
                  model.pool.proj.bias, model.pool.out_norm.weight, model.pool.out_norm.bias):
            t.copy_(torch.randn_like(t))


@pytest.mark.parametrize(("arch", "variant", "size"), CLIP_MODELS, ids=[a for a, *_ in CLIP_MODELS])
def test_the_export_form_folds_each_pool_into_the_same_function_at_a_fraction_of_the_work(arch, variant, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, frames=3, size=size, variant=variant).eval()
    _trained_looking_pool(model)
    ready = export_ready(model)
    assert isinstance(ready.pool, FoldedAttentionPool)
    clips = torch.randn(4, 3, 3, size, size)
    frames = torch.randn(6, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(ready(clips), model(clips), atol=1e-4)
        step, (window, valid), got = stream_step(ready), stream_step(ready).empty_state(), []
        for f in frames:  # the first two steps have empty slots: the mask folds too
            logits, window, valid = step(f[None], window, valid)
            got.append(logits)
    assert torch.allclose(torch.cat(got), window_logits(*split_streaming(model), frames), atol=1e-4)
    embeddings = (torch.randn(1, 3, model.embed_dim), torch.ones(1, 3))
    assert count_macs(ready.pool, embeddings) * 2 < count_macs(model.pool, embeddings)


def test_a_pool_with_a_part_kept_fp32_is_left_unfolded():
    model = build_model("resnet", num_classes=4, frames=3, size=32, variant="r10_16").eval()
    keep_float(model, ("pool.qkv",))
    assert type(export_ready(model).pool) is TemporalAttentionPool
    model.float_modules = ("pool",)  # the whole pool fp32: the folded one is kept fp32 as a whole
    assert isinstance(export_ready(model).pool, FoldedAttentionPool)


def test_a_step_with_the_wrong_outputs_is_one_line():
    def session(inputs):  # a head exported for another window: logits plus a (1, 3, 8) window
        return [np.zeros((1, 5), np.float32), np.zeros((1, 3, 8), np.float32), np.zeros((1, 3), np.float32)]

    runner = StepRunner(session, window=2, dim=8, runtime="onnxruntime-cpu")
    with pytest.raises(EgoedgeError, match=r"^onnxruntime-cpu: the stream step gave outputs of shapes "
                                           r"\[\(1, 5\), \(1, 3, 8\), \(1, 3\)\]; expected logits, a \(2, 8\) window"):
        runner.step(np.zeros((1, 3, 4, 4), np.float32))


def test_empty_slots_do_not_reach_the_logits():
    torch.manual_seed(0)
    _, head = split_streaming(build_model("resnet", num_classes=4, frames=4, size=32, variant="r10_16").eval())
    window = torch.randn(1, 4, head.embed_dim)
    valid = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    other = window.clone()
    other[:, :2] = torch.randn(1, 2, head.embed_dim) * 100  # garbage where no frame is yet
    with torch.no_grad():
        assert torch.allclose(head(window, valid), head(other, valid), atol=1e-5)
        assert not torch.allclose(head(window, torch.ones(1, 4)), head(other, torch.ones(1, 4)), atol=1e-3)


def test_models_that_cannot_stream_say_which_module():
    with pytest.raises(EgoedgeError, match=r"cannot stream .*TextClassifier is not a per-frame encoder.*modules: "):
        split_streaming(build_model("text_transformer", num_classes=3, max_len=8, variant="small"))
    model = build_model("resnet", num_classes=4, frames=2, size=32, variant="r10_16")
    model.pool = torch.nn.Identity()
    with pytest.raises(EgoedgeError, match="its module 'pool' is a Identity, not a TemporalAttentionPool"):
        split_streaming(model)


def test_ring_buffer_fills_from_the_end_and_slides():
    buf = RingBuffer(3, 2)
    for v in (1.0, 2.0):
        buf.push(np.array([v, -v]))
    window, valid = buf.view()
    assert valid.tolist() == [[0.0, 1.0, 1.0]]
    assert window.tolist() == [[[0.0, 0.0], [1.0, -1.0], [2.0, -2.0]]]
    buf.push(np.array([3.0, -3.0]))
    buf.push(np.array([4.0, -4.0]))
    window, valid = buf.view()
    assert window[0, :, 0].tolist() == [2.0, 3.0, 4.0] and valid.tolist() == [[1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="embedding of width 3 pushed into a buffer of width 2"):
        buf.push(np.zeros(3))


def test_sliding_accuracy_counts_steps_and_lag():
    labels = np.array([0, 0, 1, 2])
    t = 2
    pred = np.array([9, 0, 0, 0, 0, 1, 1, 2])  # step 0 is before the first full window
    logits = np.eye(10)[pred]
    s = sliding_accuracy(logits, labels, t)
    assert s["steps"] == 7 and s["top1"] == pytest.approx(100 * 5 / 7, abs=0.01)  # wrong at steps 4 and 6
    # 0 -> 1 at frame 4: named at its 2nd frame; 1 -> 2 at frame 6: named at its 2nd frame.
    assert (s["changes"], s["followed"], s["missed"], s["lag_frames_median"]) == (2, 2, 0, 2.0)
    assert sliding_accuracy(np.eye(10)[np.zeros(8, int)], labels, t)["missed"] == 2


@pytest.fixture(scope="module")
def stream_export(full_export):
    """Every backend and precision with streaming pairs, from one untrained micro student (shared, read-only)."""
    out, manifest = full_export
    return out.parent / "student.pt", out, manifest


@pytest.mark.slow
def test_streaming_pairs_pass_parity_for_every_precision_of_the_apps_runtimes(stream_export):
    _, out, manifest = stream_export
    validate(manifest, "manifest", "test")
    s = manifest["streaming"]
    assert (s["window"], s["buffer_input"], s["valid_input"], s["order"]) == (2, "embeddings", "valid", "oldest_first")
    assert s["frame_macs"] > 0
    clips = [a for a in manifest["artifacts"] if a["role"] == "clip" and a["format"] in ("executorch", "tflite")]
    encoders = [a for a in manifest["artifacts"] if a["role"] == "frame_encoder"]
    heads = {a["name"]: a for a in manifest["artifacts"] if a["role"] == "temporal_head"}
    assert len(encoders) == len(heads) == len(clips)  # a pair for every precision of the app's runtimes
    assert {(e["format"], e["precision"]) for e in encoders} == {(c["format"], c["precision"]) for c in clips}
    for enc in encoders:
        head = heads[enc["pair"]]
        assert head["pair"] == enc["name"] and enc["status"] == head["status"] == "ok", enc["reason"]
        assert enc["inputs"][0]["shape"] == [1, 3, 32, 32]  # one frame: 4-D, what mobile GPU delegates take
        assert [t["name"] for t in head["inputs"]] == ["embeddings", "valid"]
        if enc["format"] == "executorch":
            assert head["backend"]["delegated_subgraphs"] == 1 and head["backend"]["portable_ops"] == []
        if EXPORTERS.get(enc["format"]).unavailable():  # Core ML off macOS: converted, spec checked
            assert enc["verified"].startswith("spec only")
            continue
        assert enc["verified"] == "runtime (frame by frame)"
        if enc["precision"] == "fp32":
            assert enc["parity"]["max_abs"] <= 1e-4 and enc["parity"]["stream_max_abs"] <= 1e-4
            assert enc["parity"]["top1_agreement"] == 100.0
        assert enc["file"] == enc["name"] + "." + EXPORTERS.get(enc["format"]).ext
        assert enc["name"].startswith("student_frame_encoder_") and head["name"].startswith("student_temporal_head_")


@pytest.mark.slow
def test_fused_steps_pass_parity_for_every_backend_and_precision(stream_export):
    _, out, manifest = stream_export
    clips = {(a["format"], a["precision"]) for a in manifest["artifacts"] if a["role"] == "clip"}
    steps = {(a["format"], a["precision"]): a for a in manifest["artifacts"] if a["role"] == "stream_step"}
    assert set(steps) == clips  # a step for every backend and precision
    use = manifest["streaming"]["use"]
    for (fmt, precision), a in steps.items():
        assert a["name"] == f"student_step_{fmt}_{precision}"
        assert a["status"] == "ok", a["reason"]
        assert [t["name"] for t in a["inputs"]] == ["frame", "embeddings", "valid"]
        assert [t["name"] for t in a["outputs"]] == ["logits", "next_embeddings", "next_valid"]
        assert use[f"{fmt}/{precision}"] == a["name"]  # the step is the form an app should use where it passes
        if fmt == "executorch":  # one call into XNNPACK per frame: the state update and the mask cut nothing
            assert a["backend"]["delegated_subgraphs"] == 1 and a["backend"]["portable_ops"] == [], a["backend"]
        if EXPORTERS.get(fmt).unavailable():
            assert a["verified"].startswith("spec only")
            continue
        assert a["verified"] == "runtime (frame by frame)"
        if precision == "fp32":
            assert a["parity"]["max_abs"] <= 1e-4 and a["parity"]["stream_max_abs"] <= 1e-4
        if precision in ("int8", "w8a8"):  # static int8: its layers' gap beside it
            assert (out / a["gap"]).is_file()
            if precision == "int8" and fmt != "onnx":  # a lowered program: its encoder is the clip program's
                clip = json.loads((out / f"student_{fmt}_int8.gap.json").read_text())
                layers = lambda gap: [x["layer"] for x in gap["layers"] if x["layer"].startswith("encoder.")]  # noqa: E731
                assert layers(json.loads((out / a["gap"]).read_text())) == layers(clip)
                assert layers(clip)[:2] == ["encoder.stem.conv.unshuffle", "encoder.stem.conv.conv"]  # space to depth


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["executorch", "tflite", "onnx"])
def test_sample_stream_replays_frame_by_frame(stream_export, fmt):
    _, out, manifest = stream_export
    s = manifest["streaming"]
    frames, expected = np.load(out / s["sample_stream"]), np.load(out / s["sample_stream_logits"])
    assert len(frames) > s["window"] and expected.shape == (len(frames), 16)
    by = {a["name"]: a for a in manifest["artifacts"]}
    exporter = EXPORTERS.get(fmt)
    runners = [StepRunner(exporter.load(out / by[f"student_step_{fmt}_fp32"]["file"]), s["window"],
                          s["embedding_dim"])]
    if (enc := by.get(f"student_frame_encoder_{fmt}_fp32")) is not None:
        runners.append(StreamRunner(exporter.load(out / enc["file"]), exporter.load(out / by[enc["pair"]]["file"]),
                                    s["window"], s["embedding_dim"]))
    assert len(runners) == (2 if fmt in ("executorch", "tflite") else 1)
    full = s["full_from_step"]
    for runner in runners:
        got = runner.frames(frames)
        assert np.abs(got[full:] - expected[full:]).max() <= 1e-4
        assert np.abs(got[:full] - expected[:full]).max() <= 1e-4  # the partial window matches the masked head


@pytest.mark.slow
def test_bench_times_pairs_per_frame_next_to_their_clip_artifact(stream_export, tmp_path):
    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig

    _, out, _ = stream_export
    report, paths = bench_export(out, tmp_path, cfg=BenchConfig(warmup=1, iterations=3))
    rows = {r["name"]: r for r in report["results"]}
    for fmt in ("executorch", "tflite", "onnx"):
        for precision in ("fp32", "int8"):
            forms = [(f"student_step_{fmt}_{precision}", "step")]
            if fmt != "onnx":  # pairs for the app's runtimes
                forms.append((f"student_stream_{fmt}_{precision}", "pair"))
            for name, form in forms:
                row = rows[name]
                assert row["status"] == "ok", row["error"]
                s = row["streaming"]
                assert s["clip"] == f"student_{fmt}_{precision}" and s["form"] == form
                # In process: the clip artifact's own row (a fresh process times the two in turns, below).
                assert s["timed"] == "apart" and s["clip_ms"] == rows[s["clip"]]["latency_ms"]["median"]
                assert s["ratio"] == pytest.approx(s["frame_ms"]["median"] / s["clip_ms"], rel=1e-3)
                assert s["frame_ms"]["iterations"] == 3 and s["sliding"]["steps"] == 16 * 2 - 1
                if precision == "fp32":  # played frame by frame, each test clip gives the clip model's prediction
                    assert row["top1_agreement"] == 100.0 and row["parity_max_abs"] <= 1e-4
    md = paths["report.md"].read_text()
    assert "## Streaming" in md and "| student_stream_tflite_int8 | pair |" in md.split("## Streaming")[1]
    assert "| student_step_onnx_int8 | step |" in md.split("## Streaming")[1]
    assert "| student_stream_" not in md.split("## Streaming")[0]  # per-frame rows stay out of the clip table
    assert "| student_step_" not in md.split("## Streaming")[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["student_step_onnx_int8", "student_step_executorch_fp32",
                                  "student_stream_tflite_int8"])
def test_a_stream_and_its_clip_artifact_are_timed_in_turns_in_a_fresh_process(stream_export, tmp_path, name):
    """ONNX Runtime's two sessions on one shared pool, ExecuTorch's process-wide pool, LiteRT's pair and its clip."""
    from egoedge.bench.host_bench import BenchConfig, manifest_targets, stream_fields, stream_turns
    from egoedge.bench.measure import TURN_CALLS

    _, out, manifest = stream_export
    target = next(t for t in manifest_targets(out, manifest, None, None) if t.name == name)
    np.savez(tmp_path / "inputs.npz", np.load(out / "sample_input.npy"))
    turns = stream_turns(target, tmp_path / "inputs.npz", BenchConfig(warmup=1, iterations=3, isolate=True))
    assert "error" not in turns, turns
    assert turns["frame_ms"]["iterations"] == turns["clip_ms"]["iterations"] == TURN_CALLS
    block = stream_fields(target.stream, None, None, _NoLabels(), turns)
    assert block["timed"] == "in turns" and block["frame_ms"] is turns["frame_ms"]
    assert block["ratio"] == pytest.approx(turns["frame_ms"]["median"] / turns["clip_ms"]["median"], rel=1e-3)


class _NoLabels:
    def labels(self):
        return None


def test_onnx_runtime_shares_a_pool_only_in_a_process_that_made_no_session(tmp_path):
    """ONNX Runtime builds its global pool with its first session, and one asked for later would silently run
    every session on one thread: refused in one line."""
    import onnx
    from onnx import TensorProto, helper

    from egoedge.edge.exporters.onnx import ort_session, ort_shared_sessions

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "relu.onnx")
    ort_session(tmp_path / "relu.onnx", 2)
    with pytest.raises(EgoedgeError, match=r"^onnx: sessions share one thread pool only in a process that has made "
                                           r"no ONNX Runtime session yet \(this one has; asked for 2 threads\)$"):
        ort_shared_sessions([tmp_path / "relu.onnx"], 2)


@pytest.mark.slow
def test_a_head_fed_the_wrong_buffer_names_the_runtime(stream_export, tmp_path):
    from egoedge.bench.bench_export import bench_export
    from egoedge.bench.host_bench import BenchConfig

    _, out, manifest = stream_export
    copy = tmp_path / "export"
    import shutil

    shutil.copytree(out, copy)
    shutil.copy(out.parent / "student.pt", tmp_path / "student.pt")
    bad = json.loads((copy / "manifest.json").read_text())
    bad["source"]["checkpoint"] = "../student.pt"
    bad["streaming"]["window"] = 3  # the head was exported for 2
    (copy / "manifest.json").write_text(json.dumps(bad))
    report, _ = bench_export(copy, tmp_path / "bench", cfg=BenchConfig(warmup=1, iterations=2))
    row = next(r for r in report["results"] if r["name"] == "student_stream_tflite_fp32")
    assert row["status"] == "failed"
    assert row["error"].startswith("litert-interpreter: the temporal head refused a buffer of shape (1, 3, ")


def test_streaming_export_of_an_nlq_model_is_one_line(tmp_path, nlq_data):
    from egoedge.trainer.nlq.train import build_for, save_nlq_checkpoint

    torch.manual_seed(0)
    model = build_for("lightvslnet", nlq_data, dim=16, heads=2, word_dim=8).eval()
    ckpt = save_nlq_checkpoint(tmp_path / "nlq.pt", "lightvslnet", model, nlq_data, {})
    with pytest.raises(EgoedgeError, match=r"cannot stream .*nlq\.pt \(lightvslnet\): .* is not a per-frame encoder"):
        export_checkpoint(ckpt, tmp_path / "export", ExportConfig(formats=("onnx",), streaming=True))
    assert [p.name for p in (tmp_path / "export").iterdir()] == [".egoedge.lock"]  # refused before any artifact


def test_stream_of_concatenates_clips_in_order():
    clips = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert stream_of(clips, 2).shape == (6, 4) and stream_of(clips, 2)[3].tolist() == clips[1, 0].tolist()


def test_embed_takes_both_halves_of_a_pair():
    from egoedge.edge.embed import select

    def art(name, role="clip", pair=None, fmt="executorch"):
        return {"name": name, "format": fmt, "status": "ok", "reason": None, "role": role,
                **({"pair": pair} if pair else {})}

    manifest = {"artifacts": [art("student_executorch_fp32"),
                              art("student_frame_encoder_executorch_fp32", "frame_encoder",
                                  "student_temporal_head_executorch_fp32"),
                              art("student_temporal_head_executorch_fp32", "temporal_head",
                                  "student_frame_encoder_executorch_fp32")]}
    names = [a["name"] for a in select(manifest, ("student_frame_encoder_*",))]
    assert names == ["student_frame_encoder_executorch_fp32", "student_temporal_head_executorch_fp32"]
    manifest["artifacts"].pop()
    with pytest.raises(EgoedgeError, match="half of a streaming pair whose other half"):
        select(manifest, ("student_frame_encoder_*",))


def test_embed_takes_a_fused_step_alone():
    """The app runs a step in one call: no other half to take, and embedded by default like a clip artifact."""
    from egoedge.edge.embed import select

    manifest = {"artifacts": [{"name": n, "format": "executorch", "status": "ok", "reason": None, "role": r}
                              for n, r in (("student_executorch_fp32", "clip"),
                                           ("student_step_executorch_fp32", "stream_step"))]}
    assert [a["name"] for a in select(manifest, None)] == ["student_executorch_fp32", "student_step_executorch_fp32"]
    assert [a["name"] for a in select(manifest, ("student_step_*",))] == ["student_step_executorch_fp32"]


def test_step_roles_name_each_tensor_for_the_app():
    from egoedge.edge.streaming import step_roles

    block = {"frame_input": "frame", "buffer_input": "embeddings", "valid_input": "valid",
             "next_buffer_output": "next_embeddings", "next_valid_output": "next_valid"}
    assert step_roles(block, ["valid", "frame", "embeddings"], ["next_valid", "logits", "next_embeddings"]) == (
        ("valid", "frame", "buffer"), ("next_valid", "logits", "next_buffer"))
    assert step_roles({}, ["frame", "embeddings", "valid"], ["logits", "next_embeddings", "next_valid"])[0] == (
        "frame", "buffer", "valid")  # manifests from before the block named them
    with pytest.raises(EgoedgeError, match=r"^a streaming step takes frame, embeddings, valid .* this one takes "
                                           r"frame, window, valid"):
        step_roles(block, ["frame", "window", "valid"], ["logits", "next_embeddings", "next_valid"])
    with pytest.raises(EgoedgeError, match="gives logits, next_embeddings"):
        step_roles(block, ["frame", "embeddings", "valid"], ["logits", "next_valid"])


def test_pair_formats_limits_the_pairs_and_every_backend_keeps_its_step(tmp_path, mini_data_cfg):
    from conftest import make_ckpt

    make_ckpt(tmp_path / "student.pt", mini_data_cfg)
    cfg = ExportConfig(formats=("onnx",), precisions=("fp32",), parity_samples=4, streaming=True, pair_formats=())
    manifest = export_checkpoint(tmp_path / "student.pt", tmp_path / "export", cfg)
    assert [(a["name"], a["role"], a["status"]) for a in manifest["artifacts"]] == [
        ("student_onnx_fp32", "clip", "ok"), ("student_step_onnx_fp32", "stream_step", "ok")]
    assert manifest["streaming"]["use"] == {"onnx/fp32": "student_step_onnx_fp32"}


def _activation_scales(program: torch.fx.GraphModule) -> list[float]:
    """Every activation scale of an int8 program (the clip program also quantizes its reshapes, at the same scale)."""
    return sorted({float(n.args[1]) for n in program.graph.nodes if "quantize_per_tensor" in str(n.target)})


def test_the_int8_step_and_pair_encoder_repeat_the_clip_programs_int8():
    """With the pool and head fp32 (as the gate leaves the CBKD student), the streaming programs' int8 is the clip
    program's: the same activation scales, because their encoders' observers see the same frames in the same
    batches (a histogram observer's range depends on the batching)."""
    from egoedge.edge.stream_export import (
        embed_clips,
        pair_programs,
        step_calibration,
        step_program,
        stream_calibration,
    )
    from egoedge.trainer.quantize import quantize_pt2e
    from egoedge.trainer.quantize.ptq import quantizer_for

    torch.manual_seed(0)
    model = build_model("resnet", num_classes=4, frames=3, size=32, variant="r10_16").eval()
    clips = np.random.default_rng(0).normal(size=(40, 3, 3, 32, 32)).astype(np.float32)  # two clip batches
    model.float_modules = ("pool", "head")
    calib = [(torch.from_numpy(clips[i:i + 1]),) for i in range(len(clips))]
    clip_program = quantize_pt2e(model, calib[0], calib, quantizer_for("xnnpack", "histogram"))
    encoder, head = split_streaming(model)
    emb = embed_clips(encoder, clips)
    step = step_program(stream_step(model), step_calibration(clips, emb))
    pair_encoder, _ = pair_programs(encoder, head, stream_calibration(clips, emb))
    want = _activation_scales(clip_program)
    assert len(want) > 8 and _activation_scales(step) == want
    assert _activation_scales(pair_encoder) == want


def test_the_int8_step_carries_its_state_in_float():
    """An int8 step quantizes the encoder, never the window and mask it hands back: the mask must stay exactly 0/1
    (the pool turns it into a large additive bias) and the carried embeddings exactly what was fed in."""
    from egoedge.edge.stream_export import embed_clips, step_calibration, step_program

    torch.manual_seed(0)
    model = build_model("resnet", num_classes=4, frames=3, size=32, variant="r10_16").eval()
    step = stream_step(model)
    encoder, _ = split_streaming(model)
    clips = np.random.default_rng(0).normal(size=(8, 3, 3, 32, 32)).astype(np.float32)
    calibration = step_calibration(clips, embed_clips(encoder, clips))
    assert len(calibration) == 8 * 3 and calibration[0][2].tolist() == [[0.0, 0.0, 0.0]]  # an empty window first
    program = step_program(step, calibration)
    window, valid = step.empty_state()
    window[:, 1:] = torch.randn(1, 2, step.embed_dim)
    with torch.no_grad():
        _, next_window, next_valid = program(torch.randn(1, 3, 32, 32), window, valid)
    assert next_valid.tolist() == [[0.0, 0.0, 1.0]]
    assert torch.equal(next_window[:, :2], window[:, 1:])


def test_an_int8_temporal_head_masks_empty_slots_in_float():
    """With the pool int8 (a folded pool quantizes well), the mask's add stays float: quantized, its output range
    spans the -1e4 bias and the real logits are lost (int8 steps agreed with fp32 on 27 % of a quick run's clips)."""
    from egoedge.edge.stream_export import embed_clips, pair_programs, stream_calibration

    torch.manual_seed(0)
    model = export_ready(build_model("resnet", num_classes=4, frames=3, size=32, variant="r10_16").eval())
    encoder, head = split_streaming(model)
    assert head.float_modules == ("pool.logits", "pool.mask")  # the folded pool's logits: tests/test_ptq.py
    assert stream_step(model).float_modules == ("shift", "pool", "head")
    clips = np.random.default_rng(0).normal(size=(8, 3, 3, 32, 32)).astype(np.float32)
    calibration = stream_calibration(clips, embed_clips(encoder, clips))
    _, program = pair_programs(encoder, head, calibration)
    errors = []
    with torch.no_grad():
        for window, _ in calibration[1][:8]:
            for valid in ([[0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0]]):  # a camera's first frames
                x = (window, torch.tensor(valid))
                errors.append(((program(*x) - head(*x)).abs().max() / head(*x).abs().max()).item())
    assert max(errors) < 0.75  # with the mask quantized: up to 1.6
    model.float_modules = ("head", "encoder.stem")  # each fp32 module is named once, a part of pool or head not
    assert stream_step(model).float_modules == ("encoder.stem", "shift", "pool", "head")
