import copy
import json

import pytest

from bench.measure import PeakRSS, latency_stats, time_calls
from bench.report import render_markdown, validate_report, write_report
from trainer.common.complexity import count_macs
from trainer.models import build_model

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
    with PeakRSS() as before:
        pass
    with PeakRSS() as rss:
        big = torch.ones(20_000_000)  # 80 MB resident until the block ends
    assert rss.peak_mb - before.peak_mb > 40
    del big


def test_summary_has_int8_vs_fp32_ratios():
    from bench.report import summarize

    et = REPORT["results"][1]
    int8 = {**et, "name": "student_executorch_int8", "precision": "int8", "size_bytes": 1_000_000,
            "latency_ms": {**et["latency_ms"], "median": 2.5}, "accuracy": {"top1": 69.0, "top5": 95.0}}
    s = summarize({**REPORT, "results": REPORT["results"] + [int8]})
    assert s["executorch int8 vs fp32"] == "size 0.26x, 2.00x faster, top-1 -1.0 points"


def test_summary_marks_gate_refused_artifacts():
    from bench.report import summarize

    et = REPORT["results"][1]
    refused = {**et, "name": "student_executorch_int8", "precision": "int8", "size_bytes": 975_000,
               "latency_ms": {**et["latency_ms"], "median": 2.0}, "status": "failed",
               "error": "refused by the parity gate: top-1 agreement 95.00% < 99.0%"}
    s = summarize({**REPORT, "results": REPORT["results"] + [refused]})
    assert s["executorch int8 vs fp32"] == "size 0.25x, 2.50x faster, top-1 +0.0 points, refused by the parity gate"
    assert "student_executorch_int8 vs eager student" not in s
