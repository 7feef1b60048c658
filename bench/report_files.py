"""Every file of a report, written together: report.json, then report.md, pareto.png and report.html from it."""

from __future__ import annotations

from pathlib import Path

from egoedge.bench.html_report import write_html
from egoedge.bench.report import plot_pareto, render_markdown, validate_report
from egoedge.trainer.common.io import atomic_write, write_json_atomic


def write_report(report: dict, out_dir: str | Path, comparison: dict | None = None) -> dict[str, Path]:
    """Validate and write report.json, report.md, pareto.png and report.html into ``out_dir``.

    ``comparison`` (:func:`egoedge.bench.compare.comparison`) adds the change against a baseline to the page.
    """
    validate_report(report)
    out_dir = Path(out_dir)
    paths = {"report.json": write_json_atomic(out_dir / "report.json", report)}
    paths["report.md"] = atomic_write(out_dir / "report.md", lambda p: p.write_text(render_markdown(report)))
    paths["pareto.png"] = plot_pareto(report, out_dir / "pareto.png")
    paths["report.html"] = write_html(report, out_dir / "report.html", comparison)
    return paths
