import copy
import json

import pytest

from egoedge.bench.measure import PeakRSS, latency_stats, time_calls
from egoedge.bench.report import ratio_cell, render_markdown, validate_report
from egoedge.bench.report_files import write_report
from egoedge.trainer.common.complexity import count_macs
from egoedge.trainer.models import build_model

ROW = {"name": "student", "format": "pytorch", "precision": "fp32", "device": "host", "runtime": "torch-eager",
       "size_bytes": 4_000_000, "params": 1_000_000, "macs": 300_000_000, "load_ms": 3.0,
       "latency_ms": {"mean": 10.0, "median": 9.5, "p90": 12.0, "p99": 13.0, "std": 1.0, "iterations": 30,
                      "warmup": 5},
       "peak_rss_mb": 500.0, "accuracy": {"top1": 70.0, "top5": 95.0}, "top1_agreement": 100.0,
       "parity_max_abs": 0.0, "status": "ok", "error": None}
REPORT = {"machine": {"cpu": "Test CPU", "cores": 2, "threads": 2, "os": "Linux", "python": "3.11", "torch": "2.14"},
          "results": [ROW, {**ROW, "name": "student_executorch_fp32", "format": "executorch", "size_bytes": 3_900_000,
                            "latency_ms": {**ROW["latency_ms"], "median": 5.0}, "parity_max_abs": 2e-6}]}


def test_write_report_files(tmp_path):
    paths = write_report(REPORT, tmp_path)
    assert json.loads(paths["report.json"].read_text()) == REPORT
    md = paths["report.md"].read_text()
    assert "| student_executorch_fp32 | executorch | fp32 |" in md and "Test CPU" in md
    assert paths["pareto.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("breaker,match", [
    (lambda r: r["machine"].pop("cpu"), "machine lacks 'cpu'"),
    (lambda r: r["results"][0].pop("latency_ms"), r"results\[0\] lacks 'latency_ms'"),
    (lambda r: r["results"][1]["latency_ms"].pop("p99"), "latency_ms lacks 'p99'"),
    (lambda r: r["results"][0].update(status="maybe"), "not ok|failed"),
])
def test_schema_violations_are_named(breaker, match):
    report = copy.deepcopy(REPORT)
    breaker(report)
    with pytest.raises(ValueError, match=match):
        validate_report(report)


def test_failed_rows_render():
    report = copy.deepcopy(REPORT)
    report["results"][1].update(status="failed", error="RuntimeError: device gone", latency_ms=None, accuracy=None)
    validate_report(report)
    assert "failed: RuntimeError: device gone" in render_markdown(report)


def test_a_streaming_ratio_from_two_rows_says_so():
    assert ratio_cell({"ratio": 0.2912, "timed": "in turns"}) == "0.29"
    assert ratio_cell({"ratio": 0.2912, "timed": "apart"}) == "0.29 apart"
    assert ratio_cell({"ratio": None, "timed": "apart"}) == ratio_cell({}) == "–"


def test_latency_stats():
    s = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0], warmup=2)
    assert s["median"] == 3.0 and s["mean"] == 22.0 and s["iterations"] == 5 and s["warmup"] == 2
    assert s["p90"] > s["median"]
    calls = []
    stats = time_calls(lambda: calls.append(1), warmup=2, iterations=4)
    assert len(calls) == 6 and stats["iterations"] == 4
    with pytest.raises(ValueError):
        time_calls(lambda: None, 0, 0)


def test_macs_and_peak_rss():
    import torch

    lin = torch.nn.Linear(10, 20, bias=False)
    assert count_macs(lin, (torch.randn(3, 10),)) == 3 * 10 * 20
    model = build_model("mobilevit", num_classes=4, frames=2, size=32, variant="micro")
    assert count_macs(model, model.example_inputs()) > 1e5
    import mmap

    with PeakRSS() as before:
        pass
    # Fresh pages from the kernel, written: 80 MB more resident whatever the allocator kept from earlier tests
    # (a tensor could reuse memory an earlier test freed but the process still holds, and add nothing).
    with PeakRSS() as rss:
        block = mmap.mmap(-1, 80 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
    assert rss.peak_mb - before.peak_mb > 40
    block.close()


def test_summary_has_int8_vs_fp32_ratios():
    from egoedge.bench.report import summarize

    et = REPORT["results"][1]
    int8 = {**et, "name": "student_executorch_int8", "precision": "int8", "size_bytes": 1_000_000,
            "latency_ms": {**et["latency_ms"], "median": 2.5}, "accuracy": {"top1": 69.0, "top5": 95.0}}
    s = summarize({**REPORT, "results": REPORT["results"] + [int8]})
    assert s["student_executorch_int8 vs fp32"] == "size 0.26x, 2.00x faster, top-1 -1.0 points"
    # an int8 slower than its fp32 twin says so, not "0.80x faster"
    slow = {**int8, "latency_ms": {**et["latency_ms"], "median": 6.25}}
    s = summarize({**REPORT, "results": REPORT["results"] + [slow]})
    assert s["student_executorch_int8 vs fp32"] == "size 0.26x, 1.25x slower, top-1 -1.0 points"


def test_the_flips_an_agreement_lets_pass_as_ties_are_shown_beside_it():
    from egoedge.bench.html_report import render_html
    from egoedge.bench.report import agreement_cell

    assert agreement_cell(99.6875, 5, "%") == "99.7% (5 ties)" and agreement_cell(100.0, 0) == "100.0"
    assert agreement_cell(99.0, 1) == "99.0 (1 tie)" and agreement_cell(None, None) == "–"
    int8 = {**REPORT["results"][1], "name": "student_executorch_int8", "precision": "int8",
            "top1_agreement": 99.6875, "tie_flips": 5}
    report = {**REPORT, "results": REPORT["results"] + [int8]}
    assert "| 99.7 (5 ties) |" in render_markdown(report)
    assert "99.7 (5 ties)" in render_html(report)


def test_summary_marks_gate_refused_artifacts():
    from egoedge.bench.report import summarize

    et = REPORT["results"][1]
    refused = {**et, "name": "student_executorch_int8", "precision": "int8", "size_bytes": 975_000,
               "latency_ms": {**et["latency_ms"], "median": 2.0}, "status": "failed",
               "error": "refused by the parity gate: top-1 agreement 95.00% < 99.0%"}
    s = summarize({**REPORT, "results": REPORT["results"] + [refused]})
    assert s["student_executorch_int8 vs fp32"] == \
        "size 0.25x, 2.50x faster, top-1 +0.0 points, refused by the parity gate"
    assert "student_executorch_int8 vs eager student" not in s


def _swept() -> dict:
    """REPORT plus int8 artifacts, measured at 2 threads and again at 1 thread."""
    def row(name, fmt, precision, ms, threads, top1=70.0, **kw):
        runtime = {"pytorch": "torch-eager", "executorch": "executorch-xnnpack", "onnx": "onnxruntime-cpu"}[fmt]
        return {**ROW, "name": name, "format": fmt, "precision": precision, "threads": threads, "runtime": runtime,
                "latency_ms": {**ROW["latency_ms"], "median": ms}, "accuracy": {"top1": top1, "top5": 95.0}, **kw}
    rows = []
    for threads, scale in ((2, 1.0), (1, 1.8)):
        rows += [row("student", "pytorch", "fp32", 9.5 * scale, threads),
                 row("student_executorch_fp32", "executorch", "fp32", 4.0 * scale, threads,
                     delegation={"delegated_subgraphs": 6, "portable_nodes": 24}, peak_pct=40.0),
                 row("student_executorch_int8", "executorch", "int8", 1.6 * scale, threads, top1=69.5,
                     delegation={"delegated_subgraphs": 6, "portable_nodes": 23}, peak_pct=30.0),
                 row("student_onnx_fp32", "onnx", "fp32", 3.0 * scale, threads),
                 row("student_onnx_int8", "onnx", "int8", 2.0 * scale, threads, status="failed", error="gate")]
    machine = {**REPORT["machine"], "thread_counts": [2, 1],
               "peak_gmacs_by_threads": {"2": {"fp32": 170.0, "int8": 640.0}, "1": {"fp32": 90.0, "int8": 330.0}},
               "peak_gmacs": {"fp32": 170.0, "int8": 640.0}}
    return {"machine": machine, "results": rows}


def test_speedups_pair_each_int8_with_its_runtimes_fp32_at_the_same_threads():
    from egoedge.bench.report import best_vs_eager, speedups

    rows = speedups(_swept())
    assert [(r["threads"], r["format"], r["precision"]) for r in rows] == [
        (2, "executorch", "int8"), (2, "onnx", "int8"), (1, "executorch", "int8"), (1, "onnx", "int8")]
    et = rows[0]
    assert et["speedup"] == pytest.approx(2.5) and et["top1_delta"] == pytest.approx(-0.5)
    assert et["delegation"] == ["6 / 24", "6 / 23"] and et["peak_pct"] == [40.0, 30.0]
    assert rows[1]["status"] == "failed" and rows[1]["speedup"] == pytest.approx(1.5)
    best = best_vs_eager(_swept())
    assert [(b["threads"], b["name"]) for b in best] == [(2, "student_executorch_int8"), (1, "student_executorch_int8")]
    assert best[1]["speedup"] == pytest.approx(9.5 / 1.6)


def test_terminal_speedup_table_degrades_to_the_fastest_line_without_int8_rows():
    from rich.table import Table

    from egoedge.cli import speedup_table

    report = _swept()
    assert isinstance(speedup_table(report), Table)
    fp32_only = {**report, "results": [r for r in report["results"] if r["precision"] == "fp32"]}
    line = speedup_table(fp32_only)
    assert line == ("fastest at 2t: student_onnx_fp32 3.000 ms = 3.17x eager; "
                    "fastest at 1t: student_onnx_fp32 5.400 ms = 3.17x eager")
    eager_only = {**report, "results": [r for r in report["results"] if r["format"] == "pytorch"]}
    assert speedup_table(eager_only) is None


def test_a_swept_report_renders_threads_and_summarizes_its_main_count():
    from egoedge.bench.compare import compare_reports
    from egoedge.bench.report import summarize, table_rows

    report = _swept()
    validate_report(report)
    header, rows = table_rows(report)
    assert header[4] == "threads" and [r[4] for r in rows] == ["2"] * 5 + ["1"] * 5
    md = render_markdown(report)
    assert "Measured GEMM peak at 1 thread: fp32 90.0" in md and "## Speed-ups" in md
    assert "| executorch-xnnpack | 1 | int8 | 7.200 | 2.880 | 2.50x | -0.5 | 6 / 24 → 6 / 23 | 40 / 30 | ok |" in md
    # The summary speaks of the main thread count only (the 2-thread eager student is 9.5 ms).
    assert summarize(report)["student_executorch_fp32 vs eager student"].startswith("2.38x faster")
    # Compared with itself at 1 thread only, the 2-thread rows find no counterpart.
    one = {**report, "results": [r for r in report["results"] if r["threads"] == 1]}
    assert {r["threads"] for r in compare_reports(report, one)} == {1}
    assert "threads" not in table_rows(REPORT)[0]  # one thread count: no column


def test_parse_threads():
    import os

    from egoedge.bench.host_bench import parse_threads
    from egoedge.trainer.common.io import EgoedgeError

    assert parse_threads("2") == (2,) and parse_threads("2, 1,2") == (2, 1)
    assert parse_threads("1,all") == (1, os.cpu_count()) or os.cpu_count() == 1
    for bad in ("0", "", "1,x", "-1"):
        with pytest.raises(EgoedgeError, match="--threads takes"):
            parse_threads(bad)


def test_pareto_labels_do_not_overlap():
    """Ten crowded points (the quick run's artifacts sit within 1 ms and 1 point of each other)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from egoedge.bench.report import place_labels

    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(0.9 + 0.05 * i, 65.0 + 0.1 * (i % 3)) for i in range(10)]
    ax.scatter(*zip(*points, strict=True))
    ax.set_xscale("log")
    ax.set_xlim(0.5, 2.5)
    ax.set_ylim(55, 102)
    fig.tight_layout()
    texts = place_labels(ax, points, [f"student_artifact_{i}\n3.8 MB" for i in range(10)])
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    for t in texts:
        t.update_positions(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text itself, without its leader line
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert min(a.x1, b.x1) <= max(a.x0, b.x0) or min(a.y1, b.y1) <= max(a.y0, b.y0), (a, b)
    plt.close(fig)


def test_module_macs_count_the_members_of_a_list_the_model_loops_over_once():
    """A ModuleList is never called, so it has no count of its own: its members are still taken out of the model's
    own share (EfficientNet's ``_blocks`` were counted twice, once in the root, before)."""
    import torch

    from egoedge.trainer.quantize.ptq import int8_mac_share, module_macs

    class Looped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Linear(8, 8)
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = block(x)
            return x

    macs = module_macs(Looped(), (torch.zeros(1, 8),))
    assert macs == pytest.approx({"stem": 0.25, "blocks.0": 0.25, "blocks.1": 0.25, "blocks.2": 0.25})
    assert int8_mac_share(macs, ["blocks.2"]) == 75.0


def test_int8_mac_share_counts_a_kept_module_with_everything_inside_it():
    from egoedge.trainer.quantize.ptq import int8_mac_share

    shares = {"encoder.stem": 0.5, "encoder.stages.0": 0.3, "encoder.stages.1": 0.15, "head": 0.05}
    assert int8_mac_share(shares, []) == 100.0
    assert int8_mac_share(shares, ["head"]) == 95.0
    assert int8_mac_share(shares, ["encoder.stages"]) == 55.0  # a parent kept: both stages in it
    assert int8_mac_share(shares, ["encoder"]) == 5.0
    assert int8_mac_share({}, ["head"]) is None  # not measured: no figure rather than a made-up one


def test_an_int8_artifact_mostly_in_float_is_labelled_so_and_not_shipped():
    from egoedge.bench.host_bench import int8_recipe
    from egoedge.bench.report import ship_choice, table_rows

    manifest = {"int8": {"keep_float": ["encoder"], "chosen_by": "gate",
                         "macs": {"encoder.stem": 0.6, "encoder.blocks": 0.35, "head": 0.05}}}
    honest = int8_recipe(manifest, "int8")
    assert honest["macs_int8_pct"] == 5.0 and honest["mostly_float"] is True
    assert int8_recipe(manifest, "fp32") is None
    lat = {**ROW["latency_ms"]}
    fast = {**ROW, "name": "student_onnx_int8", "format": "onnx", "precision": "int8", "int8": honest,
            "latency_ms": {**lat, "median": 1.0}}
    slow = {**ROW, "name": "student_onnx_fp32", "format": "onnx", "latency_ms": {**lat, "median": 3.0}}
    report = {**REPORT, "results": [ROW, fast, slow]}
    assert ship_choice(report, {"student": "export"})["name"] == "student_onnx_fp32"  # the fast one is not int8
    header, rows = table_rows(report)
    cells = dict(zip(header, rows[1], strict=True))
    assert cells["precision"] == "int8 (mostly float)" and cells["int8 MACs %"] == "5.0 (mostly float)"
    real = {**fast, "int8": {**honest, "macs_int8_pct": 99.0, "mostly_float": False}}
    assert ship_choice({**REPORT, "results": [ROW, real, slow]}, {"student": "export"})["name"] == "student_onnx_int8"
    # The program was int8, but the backend stored most weights float: what it lowered decides.
    manifest["int8"]["keep_float"] = []
    lowered = int8_recipe(manifest, "int8", weights_pct=12.5)
    assert lowered["macs_int8_pct"] == 100.0 and lowered["weights_int8_pct"] == 12.5 and lowered["mostly_float"]
    # Modules kept fp32 on purpose (EfficientNet-Lite0's 1.28 M-weight classifier: 0.3 % of its MACs) can hold
    # half the weights: 93 % of the MACs in int8 is int8.
    manifest["int8"] = {"keep_float": ["head"], "macs": {"encoder": 0.93, "head": 0.07}}
    assert not int8_recipe(manifest, "int8", weights_pct=48.9)["mostly_float"]
    row = {**fast, "int8": lowered}
    assert dict(zip(header, table_rows({**REPORT, "results": [ROW, row]})[1][1], strict=True))["int8 MACs %"] == \
        "100.0 · weights 12.5 (mostly float)"


def test_the_int8_weight_share_counts_stored_8_bit_elements():
    from egoedge.edge.exporters.base import int8_weight_share

    assert int8_weight_share({"int8": 900, "float": 100}) == 90.0
    assert int8_weight_share({"float": 64}) == 0.0
    assert int8_weight_share({}) is None
