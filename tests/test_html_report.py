"""report.html: one self-contained page (no network), every artifact on it, its charts drawn in a real browser."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from egoedge.bench.compare import comparison
from egoedge.bench.html_report import render_html
from egoedge.bench.report_files import write_report

ROW = {"name": "student", "format": "pytorch", "precision": "fp32", "device": "host", "runtime": "torch-eager",
       "size_bytes": 4_000_000, "params": 1_000_000, "macs": 300_000_000, "load_ms": 3.0,
       "latency_ms": {"mean": 10.0, "median": 9.5, "p90": 12.0, "p99": 13.0, "std": 1.0, "iterations": 3,
                      "warmup": 1, "samples": [9.0, 9.5, 12.0]},
       "peak_rss_mb": 500.0, "accuracy": {"top1": 70.0, "top5": 95.0}, "top1_agreement": 100.0,
       "parity_max_abs": 0.0, "status": "ok", "error": None}
INT8 = {**ROW, "name": "student_onnx_int8", "format": "onnx", "precision": "int8", "runtime": "onnxruntime-cpu",
        "size_bytes": 1_000_000, "parity_max_abs": 0.2, "top1_agreement": 99.5, "compared_with": "student",
        "latency_ms": {**ROW["latency_ms"], "median": 2.0, "samples": [2.0, 2.1, 1.9]},
        "int8": {"keep_float": ["head"], "chosen_by": "gate", "macs_int8_pct": 99.0,
                 "module_macs": {"stem": 0.6, "blocks": 0.39, "head": 0.01},
                 "sensitivity": {"stem": 0.001, "blocks": 0.002, "head": 0.05}}}
REFUSED = {**INT8, "name": "student_tflite_int8", "format": "tflite", "runtime": "litert-interpreter", "int8": None,
           "status": "failed", "error": "refused by the parity gate: <top-1 agreement 91.0% < 99.0%>"}
PROFILED = {**ROW, "name": "student_executorch_fp32", "format": "executorch", "runtime": "executorch-xnnpack",
            "delegation": {"delegated_subgraphs": 1, "delegated_nodes": 40, "portable_nodes": 2},
            "profile": {"tool": "executorch etdump", "runs": 5, "total_ms": 1.0, "distinct_ops": 2,
                        "delegate_calls": 1, "delegate_ms": 0.9, "portable_ms": 0.1,
                        "ops": [{"op": "Convolution", "where": "XnnpackBackend", "calls": 4, "ms": 0.9, "pct": 90.0},
                                {"op": "aten.cat", "where": "portable", "calls": 1, "ms": 0.1, "pct": 10.0}]}}
STREAM = {**INT8, "name": "student_stream_onnx_int8", "int8": None,
          "streaming": {"frame_ms": {"median": 0.8}, "clip_ms": 2.0, "ratio": 0.4, "clip": "student_onnx_int8",
                        "window": 4, "sliding": {"steps": 100, "top1": 60.0, "changes": 10, "followed": 8,
                                                "lag_frames_median": 2.0, "lag_frames_mean": 2.2, "missed": 2}}}
PHONE = {**INT8, "name": "student_onnx_int8", "device": "aihub:Galaxy S24", "runtime": "aihub", "int8": None,
         "placement": {"NPU": 40, "CPU": 2}}
REPORT = {"task": "recognition",
          "machine": {"cpu": "Test CPU", "cores": 2, "threads": 2, "os": "Linux", "python": "3.11", "torch": "2.14",
                      "peak_gmacs": {"fp32": 100.0, "int8": 900.0}},
          "results": [ROW, INT8, REFUSED, PROFILED, STREAM, PHONE],
          "devices": {"host": {"name": "Test CPU"}, "aihub:Galaxy S24": {"name": "Galaxy S24", "os": "Android 14"}},
          "ship": {"name": "student_onnx_int8", "format": "onnx", "precision": "int8", "runtime": "onnxruntime-cpu",
                   "median_ms": 2.0, "top1": 70.0, "export": "export"},
          "stages": [{"name": "teacher", "wall_s": 10.0, "cpu_s": 19.0}, {"name": "bench", "wall_s": 2.0,
                                                                          "cpu_s": 1.0}],
          "run": {"preset": "mini"}, "summary": {"artifact to ship": "student_onnx_int8"}}


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_loads_nothing_from_anywhere():
    page = render_html(REPORT)
    tags = Tags()
    tags.feed(page)
    external = [(t, a) for t, a in tags.tags for k in ("src", "href", "data", "action")
                if re.match(r"^\s*(https?:|//|ftp:)", a.get(k) or "", re.I)]
    assert external == []
    assert not [t for t, _ in tags.tags if t in ("link", "iframe", "object", "embed", "img")]
    assert not [a for t, a in tags.tags if t == "script" and "src" in a]  # the library is inlined
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert styles and not re.search(r"url\(|@import", "".join(styles))
    assert "Plotly.newPlot" in page and len(page) < 3 * 2**20  # the chart library is in the page, the page small


def test_the_page_holds_every_measured_item():
    page = render_html(REPORT, comparison(REPORT, REPORT, "runs/a", "runs/b"))
    for row in REPORT["results"]:
        assert f'<tr data-artifact="{row["name"]}"><td>{row["name"]}</td><td>{row["device"]}' in page
    assert "&lt;top-1 agreement 91.0% &lt; 99.0%&gt;" in page  # the gate's reason, escaped
    assert "Artifact to ship: <b>student_onnx_int8" in page
    assert "99.0% of MACs in int8; kept fp32: head" in page  # int8: per-module gap and MAC share
    assert "<td>blocks</td><td>2.00e-03</td><td>39.0</td><td>int8</td>" in page
    assert "1 delegate calls, 90% of kernel time inside a delegate" in page  # the profile
    assert "<th>CPU</th><th>NPU</th>" in page and "<td>40</td>" in page  # placement per compute unit
    assert "frame / clip" in page and "<td>0.40</td>" in page  # streaming per-frame cost
    assert "Comparison: runs/a → runs/b" in page and "No result slower than the baseline" in page
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                                re.S).group(1))
    assert [b["name"] for b in data["boxes"]] == [r["name"] for r in REPORT["results"]]
    assert [p["name"] for p in data["points"] if p["ship"]] == ["student_onnx_int8"]  # the host's, not the phone's
    assert [s["name"] for s in data["stages"]] == ["teacher", "bench"]


def test_a_regression_is_the_comparisons_verdict():
    slower = copy.deepcopy(REPORT)
    slower["results"][1]["latency_ms"] = {**slower["results"][1]["latency_ms"], "median": 4.0}
    page = render_html(slower, comparison(REPORT, slower, "runs/a", "runs/b", 0.10))
    assert '<p class="bad">1 regression(s)' in page and "student_onnx_int8: 2.00 -&gt; 4.00 ms (+100%)" in page


def test_write_report_writes_the_page_beside_the_others(tmp_path):
    paths = write_report(REPORT, tmp_path)
    assert set(paths) == {"report.json", "report.md", "pareto.png", "report.html"}
    assert paths["report.html"].read_text().startswith("<!DOCTYPE html>")


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-logging=stderr", "--log-level=0", "--virtual-time-budget=10000"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "chromium not installed (Debian: apt install chromium; .ci/run installs it)"
        if os.environ.get("EGOEDGE_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def test_a_runs_page_in_a_real_browser(mini_run, tmp_path):
    """The mini run's report.html in headless Chromium, offline: no console message, every artifact's row, each
    chart drawn (Plotly's SVG in the DOM after the scripts ran), and a screenshot."""
    chromium = _chromium()
    out, _ = mini_run
    page = out / "report.html"
    report = json.loads((out / "report.json").read_text())
    run = [chromium, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*run, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert [line for line in dom.stderr.splitlines() if ":CONSOLE" in line] == []
    html = dom.stdout
    assert 'data-drawn="yes"' in html  # the page's script ran to its end
    for row in report["results"]:
        assert f'<tr data-artifact="{row["name"]}">' in html, row["name"]
    for chart in ("pareto", "latency", "stages"):  # Plotly drew into each
        block = re.search(rf'<div id="{chart}" class="[^"]*js-plotly-plot[^"]*".*?<svg class="main-svg"', html, re.S)
        assert block, chart
    shot = tmp_path / "report.png"
    done = subprocess.run([*run, "--window-size=1400,2400", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_files_read_like_any_other_file(tmp_path):
    """Atomic writes go through a private temp file; the result still gets the umask's permissions."""
    import stat

    old = os.umask(0o022)
    os.umask(old)
    for path in write_report(REPORT, tmp_path).values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~old, path.name


def test_artifacts_of_one_int8_program_share_one_section():
    """Backends lowered from one program differ in their stored 8-bit weights, not in the program's recipe."""
    onnx = {**INT8, "int8": {**INT8["int8"], "weights_int8_pct": 76.0}}
    tflite = {**INT8, "name": "student_tflite_int8", "format": "tflite", "int8": {**INT8["int8"],
                                                                                  "weights_int8_pct": 76.3}}
    page = render_html({**REPORT, "results": [ROW, onnx, tflite]})
    assert page.count("% of MACs in int8; kept fp32") == 1
    assert "<h3>student_onnx_int8, student_tflite_int8</h3>" in page
