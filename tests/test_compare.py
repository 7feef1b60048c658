import copy
import json

import pytest
from conftest import assert_one_line_error
from test_report import REPORT
from typer.testing import CliRunner

from egoedge.bench.compare import compare_reports, load_report, only_in, regressions, row_labels
from egoedge.bench.report_files import write_report
from egoedge.cli import app
from egoedge.trainer.common.io import EgoedgeError


def faster(report, factor):
    out = copy.deepcopy(report)
    for r in out["results"]:
        r["latency_ms"]["median"] /= factor
    return out


def test_compare_lines_up_rows_by_name():
    other = faster(REPORT, 2.0)
    other["results"][1]["accuracy"] = {"top1": 72.5, "top5": 95.0}
    other["results"].append({**other["results"][1], "name": "student_tflite_fp32"})
    rows = compare_reports(REPORT, other)
    assert [r["name"] for r in rows] == ["student", "student_executorch_fp32"]
    assert rows[0]["speedup"] == pytest.approx(2.0) and rows[0]["top1_delta"] == pytest.approx(0.0)
    assert rows[1]["top1_delta"] == pytest.approx(2.5)
    assert only_in(other, REPORT) == ["student_tflite_fp32"] and only_in(REPORT, other) == []


def test_load_report_errors(tmp_path):
    with pytest.raises(EgoedgeError, match="no report.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"machine": {}, "results": []}))
    with pytest.raises(EgoedgeError, match="not an egoedge report: report.machine lacks 'cpu'"):
        load_report(tmp_path)


def test_report_command_prints_delta_table(tmp_path):
    write_report(REPORT, tmp_path / "a")
    write_report(faster(REPORT, 2.0), tmp_path / "b")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--compare", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "student_executorch_fp32" in result.output and "2.00x" in result.output
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert_one_line_error(bad, "no report.json")


def test_regressions_flag_only_slowdowns_over_the_limit():
    slower = compare_reports(REPORT, faster(REPORT, 1 / 1.2))
    assert [s.split(":")[0] for s in regressions(slower)] == [r["name"] for r in REPORT["results"]]
    assert "(+20%)" in regressions(slower)[0]
    assert regressions(slower, max_slowdown=0.25) == []
    assert regressions(compare_reports(REPORT, faster(REPORT, 1 / 1.05))) == []
    with pytest.raises(EgoedgeError, match="max-slowdown must be >= 0"):
        regressions(slower, -0.1)


def test_rows_name_their_thread_count_only_in_a_sweep():
    rows = [{"name": "student", "threads": 2, "median_ms": (1.0, 1.5)},
            {"name": "student", "threads": 1, "median_ms": (2.0, 2.0)}]
    assert row_labels(rows) == ["student @2t", "student @1t"]
    assert regressions(rows) == ["student @2t: 1.00 -> 1.50 ms (+50%)"]
    assert row_labels(rows[:1]) == ["student"]


def test_a_result_that_stops_working_is_a_regression(tmp_path):
    """A row ok in the baseline and failed or missing now fails the guard, however fast the rest is."""
    from egoedge.bench.compare import breakages

    other = faster(REPORT, 2.0)
    other["results"][0].update(status="failed", error="modified or truncated after export: x.pte has 3 bytes")
    other["results"] = other["results"][:1]  # and the ExecuTorch row is gone
    assert breakages(REPORT, other) == ["student: failed now (modified or truncated after export: x.pte has 3 "
                                        "bytes)", "student_executorch_fp32: missing"]
    assert breakages(REPORT, REPORT) == []
    write_report(REPORT, tmp_path / "a")
    write_report(other, tmp_path / "b")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--compare", str(tmp_path / "b")])
    assert result.exit_code == 1 and "2 regression(s)" in result.output and "missing" in result.output


def test_report_compare_exits_1_on_a_regression(tmp_path):
    write_report(REPORT, tmp_path / "a")
    write_report(faster(REPORT, 1 / 1.5), tmp_path / "b")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--compare", str(tmp_path / "b")])
    assert result.exit_code == 1 and "slower by more than 10%" in " ".join(result.output.split())
    loose = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--compare", str(tmp_path / "b"),
                                     "--max-slowdown", "0.6"])
    assert loose.exit_code == 0, loose.output
