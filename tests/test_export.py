import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from egoedge.edge.export import ExportConfig, export_checkpoint, plan
from egoedge.edge.exporters import EXPORTERS, ExportError
from egoedge.edge.parity import ParityGate
from egoedge.trainer.common.io import EgoedgeError, path_bytes, sha256_path
from egoedge.trainer.data import preprocess_spec
from egoedge.trainer.data.calibration import MIN_CALIBRATION, calibration_inputs, load_calibration_file
from egoedge.trainer.models import build_model
from egoedge.trainer.tasks.clips import logit_parity, tie_agreement, undecided_note

ALL = tuple((fmt, p) for fmt in EXPORTERS.keys() for p in EXPORTERS.get(fmt).float_precisions
            + EXPORTERS.get(fmt).int8_precisions)
LENIENT = ParityGate(int8_min_agreement=0.0, int8_max_accuracy_drop=100.0)


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory, mini_data_cfg):
    from conftest import make_ckpt

    return make_ckpt(tmp_path_factory.mktemp("run") / "student.pt", mini_data_cfg)


def artifact(manifest, fmt, precision):
    """The clip artifact of ``fmt`` x ``precision`` (the shared export also holds streaming pairs)."""
    (a,) = [a for a in manifest["artifacts"] if a["format"] == fmt and a["precision"] == precision
            and a.get("role", "clip") == "clip"]
    return a


def test_plan_defaults_and_int8():
    assert plan(ExportConfig(formats=("executorch", "coreml"))) == [("executorch", "fp32"), ("coreml", "fp16")]
    assert plan(ExportConfig(formats=("tflite",), int8=True)) == [("tflite", "fp32"), ("tflite", "w8"),
                                                                  ("tflite", "int8")]
    assert plan(ExportConfig(formats=("onnx", "coreml"), precisions=("int8",))) == [("onnx", "int8")]
    with pytest.raises(EgoedgeError, match="onnx cannot produce precision 'w8a8'"):
        plan(ExportConfig(formats=("onnx",), precisions=("w8a8",)))
    with pytest.raises(KeyError, match="valid: "):
        plan(ExportConfig(formats=("tensorrt",)))


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "precision"), ALL, ids=[f"{f}-{p}" for f, p in ALL])
def test_every_backend_and_precision(full_export, fmt, precision):
    out, manifest = full_export
    a = artifact(manifest, fmt, precision)
    assert a["status"] == "ok", a["reason"]
    path = out / a["file"]
    assert a["file"] == f"student_{fmt}_{precision}.{EXPORTERS.get(fmt).ext}"
    assert a["sha256"] == sha256_path(path) and a["bytes"] == path_bytes(path) > 0
    assert set(a["preprocess"]) == {"size", "mean", "std", "frames", "layout"} and len(a["labels"]) == 16
    assert a["inputs"][0]["name"] == "clip" and a["inputs"][0]["shape"] == [1, 2, 3, 32, 32]
    assert a["outputs"][0]["name"] == "logits" and a["outputs"][0]["shape"] == [1, 16]
    if EXPORTERS.get(fmt).unavailable():
        assert a["verified"].startswith("spec only") and a["parity"] is None
        return
    assert a["verified"] == "runtime" and set(a["accuracy"]) == {"top1", "top5"}
    if precision == "fp32":
        assert a["parity"]["max_abs"] <= 1e-4 and a["parity"]["top1_agreement"] == 100.0
    else:
        # Even an untrained model (logits close together) keeps most argmaxes through int8.
        assert 0 < a["parity"]["max_abs"] < 1.0 and a["parity"]["top1_agreement"] >= 50.0


@pytest.mark.slow
def test_each_lowered_int8_artifact_says_how_much_of_it_is_stored_8_bit(full_export):
    """ONNX and LiteRT int8/w8 artifacts record the share of their weights stored 8-bit, read back from the file."""
    _, manifest = full_export
    measured = {a["name"]: (a.get("backend") or {}).get("int8_weights_pct") for a in manifest["artifacts"]
                if a["status"] == "ok" and a.get("role", "clip") == "clip"}
    for name, share in measured.items():
        if ("_onnx_" in name and name.endswith("_int8")) or ("_tflite_" in name and name.endswith(("_int8", "_w8"))):
            assert share is not None and 80.0 < share <= 100.0, (name, share)
        elif name.endswith("_fp32"):
            assert share is None, name


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [f for f in EXPORTERS.keys() if not EXPORTERS.get(f).unavailable()])
def test_saved_sample_reproduces_reference(full_export, fmt):
    out, manifest = full_export
    a = artifact(manifest, fmt, "fp32")
    x, y = np.load(out / "sample_input.npy"), np.load(out / "sample_output.npy")
    np.testing.assert_allclose(EXPORTERS.get(fmt).load(out / a["file"], threads=1)([x])[0], y, atol=1e-4)


@pytest.mark.slow
def test_int8_artifacts_are_smaller(full_export):
    _, manifest = full_export
    size = {(a["format"], a["precision"]): a["bytes"] for a in manifest["artifacts"]}
    for fmt, reduced, base in (("executorch", "int8", "fp32"), ("onnx", "int8", "fp32"), ("tflite", "w8", "fp32"),
                               ("tflite", "int8", "fp32"), ("coreml", "w8", "fp16")):
        assert size[fmt, reduced] < size[fmt, base], (fmt, reduced)


@pytest.mark.slow
def test_backend_details(full_export):
    out, manifest = full_export
    for precision in ("fp32", "int8"):
        et = artifact(manifest, "executorch", precision)["backend"]
        assert et["delegate"] == "xnnpack" and et["delegated_nodes"] > 0 and isinstance(et["portable_ops"], list)
        # MobileViT's layer norms and attention rewritten into ops XNNPACK runs: the whole graph is one delegate call.
        assert et["delegated_subgraphs"] == 1 and et["portable_ops"] == []
        assert "aten.layer_norm.default" in et["rewritten_ops"]
    static = artifact(manifest, "tflite", "int8")  # float in (the stem's rearrangement runs float), int8 out
    assert static["inputs"][0]["dtype"] == "float32" and static["outputs"][0]["dtype"] == "int8"
    assert isinstance(static["outputs"][0]["zero_point"], int) and static["outputs"][0]["scale"] > 0
    head = next(a for a in manifest["artifacts"] if a["name"] == "student_temporal_head_tflite_int8")
    assert head["inputs"][0]["dtype"] == "int8" and head["inputs"][0]["scale"] > 0  # a full-integer model
    assert artifact(manifest, "tflite", "w8")["inputs"][0]["dtype"] == "float32"
    tfl_ops = artifact(manifest, "tflite", "fp32")["backend"]["ops"]
    assert "CONV_2D" in tfl_ops and "DELEGATE" not in tfl_ops  # the model's ops, not the delegate's
    w8a8 = artifact(manifest, "coreml", "w8a8")["backend"]["spec"]
    assert w8a8["ops"]["quantize"] > 0 and w8a8["weight_elements"]["int8"] > 0
    assert artifact(manifest, "coreml", "fp16")["backend"]["spec"]["weight_elements"].get("int8", 0) == 0
    assert "QuantizeLinear" in artifact(manifest, "onnx", "int8")["backend"]["ops"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["calibration"] == {"source": "synthetic/train", "samples": 16, "seed": 0}
    assert on_disk["int8"]["program"] == "student_int8.pt2" and (out / "student_int8.pt2").is_file()


def test_calibration_is_deterministic_from_train(mini_data_cfg):
    pre = preprocess_spec(mini_data_cfg)
    a, b = calibration_inputs(mini_data_cfg, pre, 12), calibration_inputs(mini_data_cfg, pre, 12)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 2, 3, 32, 32) and a.dtype == np.float32
    assert not np.array_equal(a, calibration_inputs(mini_data_cfg, pre, 12, seed=1))


@pytest.mark.parametrize(("count", "message"), [(MIN_CALIBRATION - 1, "too small"), (10_000, "exceeds the 32")])
def test_calibration_count_errors(mini_data_cfg, count, message):
    with pytest.raises(EgoedgeError, match=message):
        calibration_inputs(mini_data_cfg, preprocess_spec(mini_data_cfg), count)


def test_preprocess_mismatch_is_clear(mini_data_cfg, tmp_path, micro_ckpt):
    bad = {**preprocess_spec(mini_data_cfg), "mean": [0.5, 0.5, 0.5]}
    with pytest.raises(EgoedgeError, match="preprocess does not match its dataset 'synthetic' \\(mean differ"):
        calibration_inputs(mini_data_cfg, bad, 16)
    ckpt = micro_ckpt(tmp_path / "student.pt", mini_data_cfg, preprocess=bad)
    with pytest.raises(EgoedgeError, match="preprocess does not match"):
        export_checkpoint(ckpt, tmp_path / "export", ExportConfig(formats=("onnx",)))


@pytest.mark.parametrize(("shape", "message"), [((16, 2, 3, 16, 16), "has shape"), ((4, 2, 3, 32, 32), "holds 4")])
def test_calibration_file_errors(tmp_path, shape, message):
    path = tmp_path / "calib.npy"
    np.save(path, np.zeros(shape, np.float32))
    with pytest.raises(EgoedgeError, match=message):
        load_calibration_file(path, (2, 3, 32, 32))


def test_calibration_file_is_used(student_ckpt, tmp_path, mini_data_cfg):
    x = calibration_inputs(mini_data_cfg, preprocess_spec(mini_data_cfg), 8)
    np.save(tmp_path / "calib.npy", x)
    cfg = ExportConfig(formats=("onnx",), precisions=("int8",), calibration_file=str(tmp_path / "calib.npy"),
                       parity_samples=8, gate=LENIENT)
    manifest = export_checkpoint(student_ckpt, tmp_path / "export", cfg)
    assert manifest["calibration"] == {"source": str(tmp_path / "calib.npy"), "samples": 8}
    assert manifest["artifacts"][0]["status"] == "ok"


def test_failed_gate_is_recorded_not_shipped(student_ckpt, tmp_path):
    cfg = ExportConfig(formats=("onnx",), parity_samples=8, gate=replace(ParityGate(), fp32_max_abs=1e-12))
    (a,) = export_checkpoint(student_ckpt, tmp_path, cfg)["artifacts"]
    assert a["status"] == "failed" and "max |logit diff|" in a["reason"] and a["parity"]["max_abs"] > 1e-12
    assert a["accuracy"] is not None  # the measured numbers are kept beside the verdict


def test_one_backend_failing_leaves_the_others(student_ckpt, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ExportError("tflite: cannot lower op aten.erfinv in module 'block.0': boom")

    monkeypatch.setattr(EXPORTERS.get("tflite"), "export", broken)
    (tfl, onnx) = export_checkpoint(student_ckpt, tmp_path, ExportConfig(formats=("tflite", "onnx"),
                                                                         parity_samples=8))["artifacts"]
    assert tfl["status"] == "failed" and "aten.erfinv" in tfl["reason"] and tfl["file"] is None
    assert onnx["status"] == "ok"
    assert not list(tmp_path.glob("*.tflite*"))


def test_corrupt_or_foreign_checkpoint_is_one_line(tmp_path, student_ckpt):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(student_ckpt.read_bytes()[:1000])
    with pytest.raises(EgoedgeError, match="not a readable checkpoint"):
        export_checkpoint(truncated, tmp_path / "a", ExportConfig(formats=("onnx",)))
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(1)}, foreign)
    with pytest.raises(EgoedgeError, match="not an egoedge checkpoint"):
        export_checkpoint(foreign, tmp_path / "b", ExportConfig(formats=("onnx",)))


def test_unsupported_precision_is_export_error(tmp_path):
    model = build_model("mobilevit", num_classes=2, frames=1, size=32, variant="micro")
    with pytest.raises(ExportError, match="executorch: precision 'int4'"):
        EXPORTERS.get("executorch").export(model, model.example_inputs(), tmp_path / "m.pte", "int4", [])


def test_parity_batch_larger_than_val_is_clear(student_ckpt, tmp_path):
    with pytest.raises(EgoedgeError, match="parity batch of 999"):
        export_checkpoint(student_ckpt, tmp_path, ExportConfig(formats=("onnx",), parity_samples=999))


def test_parity_gate():
    gate = ParityGate()
    ref = {"top1": 80.0}
    assert gate.check("fp32", {"max_abs": 5e-5, "top1_agreement": 100.0}, ref, ref) is None
    assert "max |logit diff|" in gate.check("fp32", {"max_abs": 1e-2, "top1_agreement": 100.0}, ref, ref)
    assert "agreement" in gate.check("int8", {"max_abs": 1.0, "top1_agreement": 97.0}, ref, ref)
    assert "drop" in gate.check("int8", {"max_abs": 1.0, "top1_agreement": 99.5}, {"top1": 78.0}, ref)
    a = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert logit_parity(a, a + [[0, 0], [0, 4.0]]) == {"max_abs": 4.0, "top1_agreement": 50.0, "tie_flips": 0}


def test_a_flip_between_classes_fp32_ties_is_not_a_disagreement():
    from egoedge.trainer.tasks.model import output_parity

    # Row 0: fp32 rates class 1 0.5 % below class 0 (a tie); row 1: 10 % below (decided); row 2: no flip.
    ref = np.array([[2.0, 2.0 - np.log(1.005), 0.0], [2.0, 2.0 - np.log(1.1), 0.0], [0.0, 0.0, 3.0]])
    flip_both = ref + [[0, 0.5, 0], [0, 0.5, 0], [0, 0, 0]]
    assert logit_parity(ref, flip_both)["tie_flips"] == 1
    assert logit_parity(ref, flip_both)["top1_agreement"] == pytest.approx(200 / 3)
    assert logit_parity(ref, flip_both, tie=0.0)["top1_agreement"] == pytest.approx(100 / 3)
    assert tie_agreement(ref, flip_both) == pytest.approx(200 / 3)  # what the PTQ search aims at
    # A third class, far below the top, is no tie even when the candidate is sure of it.
    assert logit_parity(ref, ref + [[0, 0, 5.0], [0, 0, 0], [0, 0, 0]])["top1_agreement"] == pytest.approx(200 / 3)
    # A model of your own may output anything: its argmax must match exactly.
    assert output_parity((ref,), (flip_both,))["top1_agreement"] == pytest.approx(100 / 3)
    assert "(1 of them ties, not counted)" in undecided_note(ref, flip_both)


class _Inner(torch.nn.Module):
    def forward(self, x):
        return torch.erfinv(x.clamp(-0.5, 0.5))  # no Core ML, ONNX or TFLite lowering exists


class _Unsupported(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Linear(8, 8), _Inner())
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.block(x))


@pytest.mark.parametrize("fmt", ["coreml", "onnx", "tflite"])
def test_unsupported_op_names_op_backend_and_module(fmt, tmp_path):
    exporter = EXPORTERS.get(fmt)
    path = tmp_path / f"m.{exporter.ext}"
    with pytest.raises(ExportError) as info:
        exporter.export(_Unsupported().eval(), (torch.randn(1, 8),), path, "fp32", [])
    message = str(info.value)
    assert message.startswith(f"{fmt}: cannot lower op ") and "\n" not in message
    assert "erfinv" in message.replace("_", "") and "in module 'block.1'" in message
    assert not path.exists()


def test_undecided_note_blames_small_margins():

    ref = np.array([[1.0, 0.99, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    cand = ref + np.array([[0.0, 0.02, 0.0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    note = undecided_note(ref, cand)
    assert note.startswith("1 of 4 test clips flipped (1 of them ties, not counted); on 25.0% of clips")


def test_int8_keep_float_reaches_the_pt2e_quantizer(student_ckpt, tmp_path, monkeypatch):
    import egoedge.trainer.quantize.pt2e as pt2e

    seen = []
    real = pt2e.SkipBlocks

    def spy(quantizer, blocks):
        seen.append(tuple(blocks))
        return real(quantizer, blocks)

    monkeypatch.setattr(pt2e, "SkipBlocks", spy)
    cfg = ExportConfig(formats=("executorch",), precisions=("int8",), calibration=8, parity_samples=8,
                       gate=LENIENT, int8_keep_float=("pool", "head"))
    manifest = export_checkpoint(student_ckpt, tmp_path / "export", cfg)
    assert manifest["artifacts"][0]["status"] == "ok"
    assert manifest["calibration"]["keep_float"] == ["pool", "head"] and manifest["int8"]["chosen_by"] == "user"
    assert seen and set(seen) == {("pool", "head", "encoder.stem.conv.unshuffle")}  # + the stem's rearrangement


def test_int8_keep_float_names_an_existing_module(student_ckpt, tmp_path):
    cfg = ExportConfig(formats=("executorch",), precisions=("int8",), int8_keep_float=("pool", "neck"))
    with pytest.raises(EgoedgeError, match="no module named 'neck'.*top-level modules are encoder, pool, head"):
        export_checkpoint(student_ckpt, tmp_path / "export", cfg)


@pytest.mark.parametrize("keep", [(), ("pool", "head")])
def test_onnx_int8_keep_float_leaves_those_modules_unquantized(student_ckpt, tmp_path, keep):
    import onnx

    cfg = ExportConfig(formats=("onnx",), precisions=("int8",), calibration=8, parity_samples=8, gate=LENIENT,
                       int8_keep_float=keep)
    artifact = export_checkpoint(student_ckpt, tmp_path / "export", cfg)["artifacts"][0]
    assert artifact["status"] == "ok"
    graph = onnx.load(str(tmp_path / "export" / artifact["file"])).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    head = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")][-1]  # the classifier
    head_quantized = any(producer.get(i) == "DequantizeLinear" for i in head.input)
    assert head_quantized == (not keep)
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)  # the encoder stays int8
    # Without a list, only the space-to-depth stem's 0/1 rearrangement (one convolution) and the folded pool's
    # logits layer (one Gemm between the two reshapes ONNX Runtime's pre-processing adds) stay float.
    assert artifact["backend"]["float_nodes"] > 4 if keep else artifact["backend"]["float_nodes"] == 4
    # What the PT2E program keeps float stays float here too: softmax and attention products give float outputs.
    weights = {i.name for i in graph.initializer}
    weights |= {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    attention = [n for n in graph.node if n.op_type in ("MatMul", "Softmax") and not weights.intersection(n.input)]
    quantizes = {i for n in graph.node if n.op_type == "QuantizeLinear" for i in n.input}
    assert len(attention) >= 4 and not [n.name for n in attention if quantizes.intersection(n.output)]


# The CPUs simulated: how far each candidate's kernels stray from what its QDQ model computes exactly, each
# candidate's time against fp32's where it is not the same (100x: slower; 1.2x: within the timing's noise), and the
# weights kept.
SATURATING = {
    "vnni": ({}, {}, "8-bit int8 weights"),
    "avx2": ({"int8.onnx": 0.5, "int8_7bit.onnx": 0.5, "int8_u8u8.onnx": 0.5}, {},
             "int8 weights (7-bit in dense layers)"),
    "avx2, depthwise too": ({"int8.onnx": 0.5, "int8_7bit_dense.onnx": 0.5, "int8_u8u8.onnx": 0.5}, {},
                            "7-bit int8 weights"),
    "avx2, 7-bit too": ({"int8.onnx": 0.5, "int8_7bit_dense.onnx": 0.5, "int8_7bit.onnx": 0.5}, {}, "uint8 weights"),
    "avx2, uint8 slow": ({"int8.onnx": 0.5, "int8_7bit_dense.onnx": 0.4, "int8_7bit.onnx": 0.3},
                         {"int8_u8u8.onnx": 100.0}, "7-bit int8 weights"),
    "avx2, uint8 timed a little slow": ({"int8.onnx": 0.5, "int8_7bit_dense.onnx": 0.4, "int8_7bit.onnx": 0.3},
                                        {"int8_u8u8.onnx": 1.2}, "uint8 weights")}


@pytest.mark.parametrize("cpu", list(SATURATING))
def test_onnx_int8_takes_other_weights_where_this_cpus_kernels_saturate(student_ckpt, tmp_path, monkeypatch, cpu):
    """Without VNNI, ONNX Runtime's u8*s8 kernels add two products in int16 and saturate with full-range weights:
    when its kernels stray from the exactly computed QDQ model, 7-bit weights (255 * 2 * 64 fits int16) and uint8
    ones (U8U8, no int16 sums) are made too, and the closest to fp32 that runs no slower than fp32 (within the timing's
    noise) is kept."""
    import onnx

    from egoedge.edge.exporters import onnx as ox

    measured, real = [], ox.qdq_outputs
    strays, seconds, kept = SATURATING[cpu]

    def outputs(path, samples, input_names, exact=False):
        assert len(samples) == ox.SATURATION_SAMPLES
        name = Path(path).name
        if name == "pre.onnx":  # the fp32 reference
            return real(path, samples, input_names)
        measured.append((name, exact))
        got = real(path, samples, input_names, exact=True)
        return [g + strays.get(name, 0.0) * (not exact) for g in got]

    def ratio(path, reference, samples, input_names):
        assert Path(reference).name == "pre.onnx" and len(samples) == ox.SATURATION_SAMPLES
        return seconds.get(Path(path).name, 1.0)

    monkeypatch.setattr(ox, "qdq_outputs", outputs)
    monkeypatch.setattr(ox, "time_ratio", ratio)
    cfg = ExportConfig(formats=("onnx",), precisions=("int8",), calibration=ox.SATURATION_SAMPLES, parity_samples=8,
                       gate=LENIENT)
    artifact = export_checkpoint(student_ckpt, tmp_path / "export", cfg)["artifacts"][0]
    tried = [("int8.onnx", False), ("int8.onnx", True), ("int8_7bit_dense.onnx", False), ("int8_7bit.onnx", False),
             ("int8_u8u8.onnx", False)]  # the micro-MobileViT student has depthwise convs
    assert measured == (tried if strays else tried[:2])
    graph = onnx.load(str(tmp_path / "export" / artifact["file"])).graph
    weights = ox.quantized_weights(graph)
    stored = np.dtype(np.uint8 if kept == "uint8 weights" else np.int8)
    assert len(weights) >= 3 and {w.dtype for w in weights} == {stored}

    def widest(weights):
        return max(int(np.abs(w.astype(np.int32)).max()) for w in weights)

    assert (widest(weights) <= 64) == (kept == "7-bit int8 weights") and 255 * 2 * 64 <= np.iinfo(np.int16).max
    assert (widest(ox.quantized_weights(graph, dense=True)) <= 64) == ("7-bit" in kept)
    assert f"per-channel {kept}," in artifact["backend"]["quantization"]
    assert artifact["status"] == "ok"  # the kept model runs and was verified against fp32


def test_time_ratio_says_how_many_times_longer_a_model_runs_than_its_reference(tmp_path):
    """The weight choice's speed check: a model doing 24 times the work of another is many times slower, timed in
    turns with it, and the other many times faster (bounds far from 24x: this is a ratio of two timings)."""
    import onnx
    from onnx import TensorProto, helper

    from egoedge.edge.exporters import onnx as ox

    def chain(n: int, path: Path) -> Path:
        w = helper.make_tensor("w", TensorProto.FLOAT, [384, 384], np.eye(384, dtype=np.float32).ravel())
        nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}" if i < n - 1 else "y"])
                 for i in range(n)]
        graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 384])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 384])], [w])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
        return path

    short, long = chain(1, tmp_path / "short.onnx"), chain(24, tmp_path / "long.onnx")
    samples = [(np.random.default_rng(i).standard_normal((64, 384)).astype(np.float32),) for i in range(8)]
    assert ox.time_ratio(long, short, samples, ("x",)) > 4 > 1 / 4 > ox.time_ratio(short, long, samples, ("x",))


def test_weight_choices_put_the_fastest_first_and_the_closest_to_fp32_next():
    """Candidates on the same kernels (within SAME_SPEED of the quickest) count as equally fast: the closest to fp32
    among them goes first; the closest of all follows where it is another one."""
    from egoedge.edge.exporters.onnx import weight_choices

    dense, seven, u8u8 = Path("int8_7bit_dense.onnx"), Path("int8_7bit.onnx"), Path("int8_u8u8.onnx")
    assert weight_choices([]) == []
    assert weight_choices([(seven, 0.004, 0.6), (u8u8, 0.001, 0.9)]) == [seven, u8u8]
    assert weight_choices([(dense, 0.003, 0.62), (seven, 0.004, 0.6), (u8u8, 0.001, 0.9)]) == [dense, u8u8]
    assert weight_choices([(seven, 0.004, 0.9), (u8u8, 0.001, 0.95)]) == [u8u8]  # as fast: the closer alone
    assert weight_choices([(seven, 0.001, 0.6), (u8u8, 0.004, 0.9)]) == [seven]


@pytest.mark.parametrize("fast_passes", [False, True])
def test_an_int8_whose_fastest_weights_miss_the_gate_is_made_again_with_the_next(tmp_path, monkeypatch, fast_passes):
    """ONNX Runtime's int8 on a CPU whose kernels saturate: the fastest weights (7-bit) are made first; where the gate
    refuses them the artifact is made again with the weights closest to fp32 (U8U8), and the manifest keeps why."""
    import onnx

    from egoedge.edge.artifact import export_artifact
    from egoedge.edge.exporters import onnx as ox

    real = ox.qdq_outputs
    strays = {"int8.onnx": 0.5, "int8_7bit.onnx": 0.2}  # full range saturates; 7-bit strays more than U8U8

    def outputs(path, samples, input_names, exact=False):
        got = real(path, samples, input_names, exact=True)
        return [g + strays.get(Path(path).name, 0.0) * (not exact) for g in got]

    monkeypatch.setattr(ox, "qdq_outputs", outputs)
    monkeypatch.setattr(ox, "time_ratio", lambda path, *a: 0.6 if "7bit" in Path(path).name else 0.9)
    seen = []

    def verify(exporter, path, precision, name):
        seen.append(kind := ox._weight_kind(onnx.load(str(path)).graph))
        ok = fast_passes or kind == "uint8 weights"
        return {"status": "ok" if ok else "failed", "verified": "runtime", "accuracy": None,
                "parity": {"top1_agreement": 100.0 if ok else 97.0}, "reason": None if ok else "agreement 97.0 %"}

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 14 * 14, 4)).eval()
    calibration = [(torch.rand(1, 3, 16, 16),) for _ in range(ox.SATURATION_SAMPLES)]
    entry = export_artifact("onnx", "int8", model, calibration[0], tmp_path, "m", calibration,
                            {"inputs": [], "outputs": []}, verify)
    backend = entry["backend"]
    assert entry["status"] == "ok" and backend["int8_choices"] == 2
    if fast_passes:
        assert seen == ["7-bit int8 weights"] and backend["int8_choice"] == 0 and "refused_choices" not in backend
    else:
        assert seen == ["7-bit int8 weights", "uint8 weights"] and backend["int8_choice"] == 1
        assert backend["refused_choices"] == ["agreement 97.0 %"] and entry["reason"] is None
        assert "uint8 weights" in backend["quantization"]


def test_depthwise_convs_keep_full_range_weights_in_the_first_7_bit_candidate(tmp_path):
    """Depthwise convs hold few weights per channel and lose most to 7 bits: the first candidate narrows only the
    dense layers' weights, and the next every layer's."""
    import onnx
    from onnxruntime.quantization import QuantType

    from egoedge.edge.exporters import onnx as ox

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.Conv2d(8, 4, 1),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 2)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), path, dynamo=True, external_data=False)
    graph = onnx.load(str(path)).graph
    assert len(ox.weight_names(graph)) == 4 and len(dense := ox.weight_names(graph, dense=True)) == 3
    depthwise = [n.input[1] for n in graph.node if n.op_type == "Conv"][1]
    assert depthwise not in dense
    assert ox._unsaturated(graph) == [("int8_7bit_dense.onnx", {"seven_bit": tuple(dense)}),
                                     ("int8_7bit.onnx", {"seven_bit": tuple(ox.weight_names(graph))}),
                                     ("int8_u8u8.onnx", {"weights": QuantType.QUInt8})]


_RUN_A_PTE = """
import sys, numpy as np
from egoedge.edge.exporters import EXPORTERS
run = EXPORTERS.get("executorch").load(sys.argv[1], threads=1)
np.save(sys.argv[3], run([np.load(sys.argv[2])])[0])
print("executorch.exir" in sys.modules)
"""


def test_a_pte_runs_without_executorchs_compiler(fp32_export, tmp_path):
    """Running a .pte imports ExecuTorch's bindings only (not executorch.exir, seconds and ~200 MB), same outputs."""
    import subprocess
    import sys

    from executorch.runtime import Runtime

    pte, x = fp32_export / "student_executorch_fp32.pte", fp32_export / "sample_input.npy"
    done = subprocess.run([sys.executable, "-c", _RUN_A_PTE, str(pte), str(x), str(tmp_path / "y.npy")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "False", done.stdout + done.stderr
    public = Runtime.get().load_program(pte).load_method("forward").execute([torch.from_numpy(np.load(x))])
    assert np.array_equal(np.load(tmp_path / "y.npy"), public[0].numpy())


def test_a_pte_runs_through_the_public_module_where_the_bindings_are_named_otherwise(fp32_export, monkeypatch):
    from egoedge.edge.exporters import executorch as et

    real = et.importlib.import_module

    def missing(name, *args):
        if name == et._BINDINGS:
            raise ModuleNotFoundError(name)
        return real(name, *args)

    monkeypatch.setattr(et.importlib, "import_module", missing)
    run = EXPORTERS.get("executorch").load(fp32_export / "student_executorch_fp32.pte", threads=1)
    out = run([np.load(fp32_export / "sample_input.npy")])[0]
    assert out.shape == np.load(fp32_export / "sample_output.npy").shape and np.isfinite(out).all()


def test_onnx_gap_counts_a_layer_kept_float_between_int8_layers_as_float(tmp_path):
    """ONNX Runtime's gap rows: a convolution kept float reads its int8 neighbour's dequantized output, and is float."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 4, 1)).eval()
    model.float_modules = ("2",)
    calib = [(torch.rand(1, 3, 16, 16),) for _ in range(8)]
    info = EXPORTERS.get("onnx").export(model, calib[0], tmp_path / "m.onnx", "int8", calib)
    convs = [(r["layer"], r["int8"]) for r in info["layer_gap"] if r["op"] == "Conv"]
    assert convs == [("0", True), ("2", False), ("4", True)], convs  # the last one too: its output is the model's
