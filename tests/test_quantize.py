import numpy as np
import pytest
import torch

from egoedge.trainer.quantize import QUANTIZERS, quantize_pt2e


class FixedBatch(torch.nn.Module):
    """Reshapes with a literal batch of 1, so it cannot be exported with a symbolic batch."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).reshape(1, -1))


class AnyBatch(FixedBatch):
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("model_cls", [AnyBatch, FixedBatch])
@pytest.mark.parametrize("quantizer", QUANTIZERS.keys())
def test_quantized_graph_tracks_float_model(model_cls, quantizer):
    torch.manual_seed(0)
    model = model_cls().eval()
    example = (torch.randn(1, 3, 8, 8),)
    calib = [(torch.randn(1, 3, 8, 8),) for _ in range(40)]  # two batches: 32 + 8
    q = quantize_pt2e(model, example, calib, QUANTIZERS.get(quantizer)())
    assert any("quantize_per" in str(n.target) for n in q.graph.nodes)
    assert not any(m.training for m in q.modules())
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3


class _TwoSoftmaxes(torch.nn.Module):
    """Softmax over the last axis after a linear, and over axis 1 after a broadcast add (as CQ attention)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        s = h @ h.transpose(1, 2) + h.sum(-1, keepdim=True)
        return torch.softmax(h, -1).sum(-1) + torch.softmax(s, 1).sum(-1)


def test_litert_quantizer_gives_every_softmax_the_fixed_int8_output_scale():
    """TFLite's int8 SOFTMAX refuses any output scale but 1/256 (it once failed NLQ exports)."""
    from egoedge.trainer.quantize.pt2e import softmax_as_core_op

    model = _TwoSoftmaxes().eval()
    x = (torch.randn(2, 5, 8),)
    graph = torch.export.export(model, x, strict=False).module()
    assert sum(n.target == torch.ops.aten.softmax.int for n in graph.graph.nodes) == 2
    softmax_as_core_op(graph)
    assert sum(n.target == torch.ops.aten._softmax.default for n in graph.graph.nodes) == 2
    torch.testing.assert_close(graph(*x), model(*x))  # same maths

    quantizer = QUANTIZERS.get("litert")()
    annotated = quantizer.annotate(quantizer.transform_for_annotation(
        torch.export.export(model, x, strict=False).module()))
    softmaxes = [n for n in annotated.graph.nodes if n.target == torch.ops.aten._softmax.default]
    assert len(softmaxes) == 2
    for node in softmaxes:
        spec = node.meta["quantization_annotation"].output_qspec
        assert spec.scale == pytest.approx(1 / 256) and spec.zero_point == -128
    q = quantize_pt2e(model, x, [x], QUANTIZERS.get("litert")(), fold=False)
    assert torch.isfinite(q(*x)).all()


def test_each_match_pattern_is_traced_once_and_handed_out_as_a_copy(monkeypatch):
    """The quantizers' pattern tracer runs torch.export once per distinct pattern (code, closure, input shapes)."""
    import torchao.quantization.pt2e.utils as pt2e_utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    from egoedge.trainer.quantize.pattern_cache import memoize_pattern_tracing

    name = "_get_aten_graph_module_for_pattern"
    original = getattr(pt2e_utils, name)
    monkeypatch.setattr(pt2e_utils, name, getattr(original, "__wrapped__", original))  # a fresh, empty cache
    memoize_pattern_tracing()
    traced = getattr(pt2e_utils, name)
    exports = []
    real_export = torch.export.export
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: exports.append(1) or real_export(*a, **k))

    def pattern(inplace: bool):
        def relu(x):
            return torch.nn.functional.relu(x, inplace=inplace)
        return WrapperModule(relu)

    x = (torch.randn(1, 3),)
    first, again = traced(pattern(False), x), traced(pattern(False), x)
    assert len(exports) == 1 and first is not again  # one trace; each caller may edit its own copy
    assert [n.target for n in first.graph.nodes] == [n.target for n in again.graph.nodes]
    traced(pattern(True), x)  # another closure value: another pattern
    traced(pattern(False), (torch.randn(2, 3, 4),))  # another input rank: another pattern
    assert len(exports) == 3
    memoize_pattern_tracing()  # idempotent: the cache is not wrapped twice
    assert getattr(pt2e_utils, name) is traced


class SamePadded(torch.nn.Module):
    """TF-style "same" padding as EfficientNet writes it: an explicit zero pad before each convolution."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.ZeroPad2d(1), torch.nn.Conv2d(3, 8, 3))
        self.dw = torch.nn.Sequential(torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.Conv2d(8, 8, 3, stride=2, groups=8))
        self.pw = torch.nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return self.pw(torch.nn.functional.relu6(self.dw(torch.nn.functional.relu6(self.stem(x)))))


def _pads(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    from egoedge.trainer.quantize.pads import PADS

    return [n for n in graph.graph.nodes if n.target in PADS]


@pytest.mark.parametrize("quantizer", QUANTIZERS.keys())
def test_symmetric_pads_join_their_convolution_and_the_sums_stay(quantizer):
    torch.manual_seed(0)
    model = SamePadded().eval()
    calib = [(torch.rand(1, 3, 16, 16),) for _ in range(8)]
    q = quantize_pt2e(model, calib[0], calib, QUANTIZERS.get(quantizer)())
    pads = _pads(q)
    assert len(pads) == 1 and list(pads[0].args[1]) == [0, 1, 0, 1]  # only the stride-2 asymmetric pad is left
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    # The stride-2 pad left shares its input's quantization: exact in int8, no float island on any runtime.
    (source,), (requantize,) = pads[0].all_input_nodes, pads[0].users
    assert source.target == torch.ops.quantized_decomposed.dequantize_per_tensor.default
    assert requantize.target == torch.ops.quantized_decomposed.quantize_per_tensor.default
    assert source.args[1:] == requantize.args[1:]


def test_a_padded_int8_convolution_runs_without_float_islands_on_executorch_and_litert(tmp_path):
    from egoedge.bench.profile import profile_executorch
    from egoedge.edge.exporters import EXPORTERS

    torch.manual_seed(0)
    model = SamePadded().eval()
    calib = [(torch.rand(1, 3, 16, 16),) for _ in range(8)]
    info = EXPORTERS.get("executorch").export(model, calib[0], tmp_path / "m.pte", "int8", calib)
    assert info["rewritten_ops"] == {"requantize after a pad": 1}
    ops = {o["op"]: o["calls"] for o in profile_executorch(tmp_path / "m.pte", [calib[0][0].numpy()], 1, 2)["ops"]}
    assert ops["Convert (NC)"] == 2, ops  # the model's input and output; none around the pad
    assert not [op for op in ops if "F32" in op or "Pad" in op], ops  # the pad runs inside the int8 convolution
    # LiteRT lowers the program ExecuTorch lowers (edge.int8). Its pad runs channels-last, so the converter folds
    # it into the int8 depthwise convolution's SAME padding: no PAD, and no transposes but the model's input and
    # output ones (without the layout rule: a PAD between two more).
    program = quantize_pt2e(model, calib[0], calib, QUANTIZERS.get("xnnpack")())
    info = EXPORTERS.get("tflite").export(model, calib[0], tmp_path / "m.tflite", "int8", calib, program=program)
    assert info["float_ops"] == [] and "PAD" not in info["ops"], info
    from ai_edge_litert.interpreter import Interpreter

    ops = [op["op_name"] for op in Interpreter(model_path=str(tmp_path / "m.tflite"))._get_ops_details()]
    assert ops.count("TRANSPOSE") == 2 and ops[0] == ops[-1] == "TRANSPOSE", ops


def test_a_padded_convolution_kept_float_lowers_to_executorch_in_float(tmp_path):
    """A "same"-padded layer the gate or ``--int8-keep-float`` keeps float between int8 layers: ExecuTorch's
    XNNPACK lowering quantized its pad anyway and failed ("Weight and Input should both be quantized")."""
    from egoedge.bench.profile import profile_executorch
    from egoedge.edge.exporters import EXPORTERS

    torch.manual_seed(0)
    model = SamePadded().eval()
    model.float_modules = ("dw",)
    calib = [(torch.rand(1, 3, 16, 16),) for _ in range(8)]
    info = EXPORTERS.get("executorch").export(model, calib[0], tmp_path / "m.pte", "int8", calib)
    assert info["delegated_subgraphs"] == 1 and info["portable_ops"] == [], info
    x = calib[0][0].numpy()
    got = EXPORTERS.get("executorch").load(tmp_path / "m.pte")([x])[0]
    with torch.no_grad():
        ref = model(calib[0][0]).numpy()
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    ops = {o["op"] for o in profile_executorch(tmp_path / "m.pte", [x], 1, 2)["ops"]}
    assert any("F32" in op and "DWConv" in op for op in ops), ops  # the kept layer runs in float
    assert any("QC8" in op or "QS8" in op for op in ops), ops  # and the rest in int8


@pytest.mark.parametrize("backend", ["executorch", "tflite"])
def test_an_int8_silu_runs_in_int8_between_int8_layers(tmp_path, backend):
    """conv -> SiLU -> depthwise conv -> SiLU -> conv: each SiLU runs in int8, so nothing converts to float between
    the layers (before: a conversion each side of a float sigmoid and multiply per SiLU). XNNPACK computes the
    int8 SiLU as one elementwise op; LiteRT as an int8 LOGISTIC and MUL."""
    from egoedge.bench.profile import profile_executorch
    from egoedge.edge.exporters import EXPORTERS

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1), torch.nn.SiLU(),
                                torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.SiLU(),
                                torch.nn.Conv2d(16, 8, 1)).eval()
    calib = [(torch.randn(1, 8, 16, 16),) for _ in range(8)]
    path = tmp_path / f"m.{EXPORTERS.get(backend).ext}"
    info = EXPORTERS.get(backend).export(model, calib[0], path, "int8", calib)
    x = calib[1][0].numpy()
    got = EXPORTERS.get(backend).load(path)([x])[0]
    with torch.no_grad():
        want = model(calib[1][0]).numpy()
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    if backend == "tflite":
        assert info["float_ops"] == [] and "LOGISTIC" in info["ops"], info
        return
    assert info["delegated_subgraphs"] == 1 and info["portable_ops"] == [], info
    ops = {o["op"]: o["calls"] for o in profile_executorch(path, [x], 1, 2)["ops"]}
    assert not any(op.startswith("Sigmoid") for op in ops), ops  # a float sigmoid is XNNPACK's "Sigmoid (NC)"
    assert ops.get("Convert (NC)", 0) <= 2, ops  # the model's input and output, nothing between


class Residual(torch.nn.Module):
    """Two residual blocks in a row, as in every mobile backbone: the first sum feeds the second directly."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (torch.nn.Conv2d(8, 8, 3, padding=1) for _ in range(3))

    def forward(self, x):
        y = self.a(x) + x
        return self.c(self.b(y) + y) * x


def test_litert_w8_takes_the_recipes_bias_correction(tmp_path):
    """Weight-only int8 rounds the same weights as the static program: the recipe's bias correction (the model's
    ``int8_bias_correction``, which the export sets) takes their mean shift back in w8 too (EfficientNet-Lite0's w8
    agreed 94.1 % without it and missed the gate)."""
    from conftest import rounds_with_a_bias

    from egoedge.edge.exporters import EXPORTERS

    torch.manual_seed(0)
    model = rounds_with_a_bias()
    x = torch.rand(48, 16, 12, 12) + 0.5
    calib, held = [(x[i:i + 1],) for i in range(32)], x[32:]
    with torch.no_grad():
        exact = model(held).numpy()
    shift = {}
    for correct in (False, True):
        model.int8_bias_correction = correct
        path = tmp_path / f"w8_{correct}.tflite"
        EXPORTERS.get("tflite").export(model, calib[0], path, "w8", calib)
        run = EXPORTERS.get("tflite").load(path)
        got = np.concatenate([run([held[i:i + 1].numpy()])[0] for i in range(len(held))])
        shift[correct] = float(np.abs((got - exact).mean(0)).mean())
    assert shift[True] < 0.5 * shift[False], shift


def test_litert_int8_adds_and_multiplies_run_in_int8(tmp_path):
    """LiteRT's annotators miss them under non-strict export: each was a float island in the .tflite."""
    from egoedge.edge.exporters import EXPORTERS

    torch.manual_seed(0)
    calib = [(torch.rand(1, 8, 8, 8),) for _ in range(8)]
    info = EXPORTERS.get("tflite").export(Residual().eval(), calib[0], tmp_path / "m.tflite", "int8", calib)
    assert info["float_ops"] == [] and {"ADD", "MUL"} <= set(info["ops"]) and "DEQUANTIZE" not in info["ops"], info


def test_a_model_is_traced_once_per_state_and_a_changed_one_again(monkeypatch):
    """A PTQ search quantizes one model several times: one trace serves them while its weights stay the same."""
    from egoedge.trainer.quantize import pt2e

    monkeypatch.setattr(pt2e, "_EXPORTS", type(pt2e._EXPORTS)())
    exports = []
    real_export = torch.export.export
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: exports.append(1) or real_export(*a, **k))
    torch.manual_seed(0)
    model = AnyBatch().eval()
    example, x = (torch.randn(1, 3, 8, 8),), torch.randn(1, 3, 8, 8)
    calib = [(torch.randn(1, 3, 8, 8),) for _ in range(8)]
    first = quantize_pt2e(model, example, calib, QUANTIZERS.get("xnnpack")())
    calls = len(exports)  # the model's trace, and the quantizer's patterns the first time in this process
    again = quantize_pt2e(model, example, calib, QUANTIZERS.get("xnnpack")())
    assert len(exports) == calls and torch.equal(first(x), again(x))
    with torch.no_grad():
        model.fc.weight.mul_(-1)  # an in-place update, as a training step makes
    changed = quantize_pt2e(model, example, calib, QUANTIZERS.get("xnnpack")())
    assert len(exports) > calls  # traced again
    with torch.no_grad():
        assert (changed(x) - model(x)).abs().max() < 0.1 * model(x).abs().max() + 1e-3
    assert not torch.equal(changed(x), first(x))


@pytest.mark.parametrize("kind", ["normal", "cubed", "relu", "outlier", "student_t", "constant", "levels", "lognormal"])
def test_the_histogram_range_search_matches_torchao_step_for_step(kind):
    """The numpy search picks exactly the range torchao's own loop picks."""
    from torchao.quantization.pt2e import HistogramObserver

    from egoedge.trainer.quantize.observers import _histogram_range, fast_histograms

    torch.manual_seed(0)
    n = 5000
    data = {"normal": lambda: torch.randn(n), "cubed": lambda: torch.randn(n) ** 3,
            "relu": lambda: torch.relu(torch.randn(n)) * 6,
            "outlier": lambda: torch.cat([torch.randn(n), torch.tensor([80.0])]),
            "student_t": lambda: torch.distributions.StudentT(2.0).sample((n,)),
            "constant": lambda: torch.zeros(n), "levels": lambda: torch.randint(0, 3, (n,)).float(),
            "lognormal": lambda: torch.exp(torch.randn(n) * 2)}[kind]
    obs = HistogramObserver(eps=2**-12)
    for _ in range(3):
        obs(data())
    expected = obs._non_linear_param_search()
    assert all(torch.equal(a, b) for a, b in zip(_histogram_range(obs), expected, strict=True))
    holder = torch.nn.Sequential(obs)
    assert fast_histograms(holder) == 1 and holder[0].calculate_qparams() is not None
    assert all(torch.equal(a, b) for a, b in zip(holder[0]._non_linear_param_search(), expected, strict=True))
