"""report.html: one page with everything a report measured, drawn from report.json alone, that works offline.

The tables are written here, so they read without JavaScript; the charts are drawn in the page by
Plotly's cartesian bundle (``bench/assets``), inlined with the data: no CDN, no network, a file
that can be mailed.
"""

from __future__ import annotations

import json
from html import escape
from importlib.resources import files
from pathlib import Path

from egoedge.bench.report import agreement_cell, fmt, int8_cell, precision_label, ratio_cell, ship_line, stage_rows
from egoedge.trainer.common.io import atomic_write
from egoedge.trainer.tasks import task_named

PLOTLY = "plotly-cartesian.min.js"  # plotly.js-cartesian-dist-min 4.1.1 (MIT, bench/assets/plotly-LICENSE.txt)


def _plotly() -> str:
    return files("egoedge.bench").joinpath("assets", PLOTLY).read_text(encoding="utf-8")


def _cell(v) -> str:
    return f"<td>{escape(str(v))}</td>"


def _table(headers: list[str], rows: list[list], cls: str = "", row_names: list[str] | None = None) -> str:
    """A plain HTML table; ``row_names`` tags each row with its artifact so the chart's click can filter it."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        tag = f' data-artifact="{escape(row_names[i])}"' if row_names else ""
        body.append(f"<tr{tag}>" + "".join(_cell(c) for c in row) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _mb(n) -> str:
    return "–" if n is None else f"{n / 2**20:.2f}"


def _gate(r: dict) -> str:
    """The parity gate's verdict: an exported artifact passed or failed it (with why); a PyTorch row is a model."""
    if r["status"] != "ok":
        return f"failed: {r.get('error') or 'no reason given'}"
    if r["format"] == "pytorch":
        return "reference" if r.get("top1_agreement") is None or r["precision"] == "fp32" else "ran"
    return "passed"


def _artifact_rows(report: dict, metric: str) -> tuple[list[str], list[list], list[str]]:
    headers = ["name", "device", "format", "precision", "runtime", "threads", "MB", "peak RSS MB", "median ms",
               "p90 ms", metric, "gate", "max |Δ|", "agreement %", "compared with", "int8 MACs %", "kept fp32",
               "frame / clip", "delegated / portable nodes", "% peak"]
    rows, names = [], []
    for r in report["results"]:
        lat = r.get("latency_ms") or {}
        acc = (r.get("accuracy") or {}).get("top1")
        int8 = r.get("int8") or {}
        stream = r.get("streaming") or {}
        dele = r.get("delegation") or {}
        rows.append([
            r["name"], r.get("device", "host"), r["format"], precision_label(r), r.get("runtime") or "–",
            r.get("threads") or report["machine"].get("threads", "–"), _mb(r.get("size_bytes")),
            fmt(r.get("peak_rss_mb"), ".0f"), fmt(lat.get("median"), ".3f"), fmt(lat.get("p90"), ".3f"),
            fmt(acc, ".1f"), _gate(r), fmt(r.get("parity_max_abs"), ".1e"),
            agreement_cell(r.get("top1_agreement"), r.get("tie_flips")),
            r.get("compared_with") or ("–" if r.get("top1_agreement") is None else "reference model"),
            int8_cell(r),
            ", ".join(int8.get("keep_float") or []) or ("none" if int8 else "–"),
            fmt(stream.get("ratio"), ".2f") + ("x" if stream.get("ratio") else ""),
            f"{dele.get('delegated_nodes', '–')} / {dele.get('portable_nodes', '–')}" if dele else "–",
            fmt(r.get("peak_pct"), ".1f")])
        names.append(r["name"])
    return headers, rows, names


def _streaming(report: dict) -> str:
    rows, names = [], []
    for r in report["results"]:
        s = r.get("streaming")
        if not s:
            continue
        slide = s.get("sliding") or {}
        rows.append([r["name"], s.get("form", "pair"), s.get("clip", "–"), s.get("window", "–"),
                     fmt((s.get("frame_ms") or {}).get("median"), ".3f"),
                     fmt(s.get("clip_ms"), ".3f"),
                     ratio_cell(s),
                     fmt(slide.get("top1"), ".1f"),
                     fmt(slide.get("lag_frames_median"), ".1f")])
        names.append(r["name"])
    if not rows:
        return ""
    return ("<h2>Streaming</h2><p>Fused steps (one call per new frame, the window carried as its inputs and "
            "outputs) and pairs (a frame encoder plus a temporal head), timed per new frame; the ratio is the "
            "per-frame cost over the clip artifact's, the two timed in turns in one fresh process (marked apart: "
            "from the two rows).</p>"
            + _table(["streaming artifact", "form", "clip artifact", "window", "frame ms", "clip ms", "frame / clip",
                      "sliding top-1 %",
                      "lag (frames)"], rows, "filterable", names))


def _profiles(report: dict) -> tuple[str, list[dict]]:
    parts, charts = [], []
    for r in report["results"]:
        prof = r.get("profile")
        if not prof:
            continue
        if "error" in prof:
            parts.append(f'<p data-artifact="{escape(r["name"])}"><b>{escape(r["name"])}</b>: no profile '
                         f'({escape(prof["error"])})</p>')
            continue
        ops = prof.get("ops") or []
        total = prof.get("total_ms") or sum(o["ms"] for o in ops) or None
        share = ""
        if "delegate_calls" in prof and total:  # ExecuTorch: delegate calls, and portable kernels between them
            inside = total - prof.get("portable_ms", 0.0)
            share = (f", {prof['delegate_calls']} delegate calls, {100 * inside / total:.0f}% of kernel time inside "
                     f"a delegate, {prof.get('portable_ms', 0.0):.3f} ms in portable kernels")
        div = f"profile-{len(charts)}"
        parts.append(f'<div class="profile" data-artifact="{escape(r["name"])}"><h3>{escape(r["name"])}</h3>'
                     f'<p>{escape(prof.get("tool", ""))}, {prof.get("runs", "–")} runs, '
                     f'{fmt(prof.get("total_ms"), ".3f")} ms of kernels per call{escape(share)}</p>'
                     f'<div id="{div}" class="chart small"></div>'
                     + _table(["op", "where", "calls", "ms", "%"],
                              [[o["op"], o["where"], fmt(o["calls"], "g"), fmt(o["ms"], ".3f"), fmt(o["pct"], ".1f")]
                               for o in ops]) + "</div>")
        charts.append({"div": div, "ops": ops, "delegated": "delegate_calls" in prof})
    if not parts:
        return "", []
    return ("<h2>Where the time goes</h2><p>Each runtime's own profiler, top ops per inference. In an ExecuTorch "
            "program, ops inside a delegate (green) ran in its library (XNNPACK); portable ones (red) fell back to "
            "the runtime's reference kernels.</p>"
            + "".join(parts)), charts


RECIPE_KEYS = ("keep_float", "chosen_by", "module_macs", "sensitivity")  # what every artifact of one program shares


def _int8(report: dict) -> tuple[str, list[dict]]:
    # One section per int8 program, naming every artifact lowered from it (their weight shares differ).
    programs: dict[str, tuple[dict, list[str]]] = {}
    for r in report["results"]:
        int8 = r.get("int8")
        if int8 and (int8.get("sensitivity") or int8.get("module_macs")):
            key = json.dumps({k: int8.get(k) for k in RECIPE_KEYS}, sort_keys=True)
            programs.setdefault(key, (int8, []))[1].append(r["name"])
    parts, charts = [], []
    for int8, owners in programs.values():
        gap, macs = int8.get("sensitivity") or {}, int8.get("module_macs") or {}
        modules = list(dict.fromkeys([*macs, *gap]))
        div = f"int8-{len(charts)}"
        rows = [[m, fmt(gap.get(m), ".2e"), fmt(100 * macs[m] if m in macs else None, ".1f"),
                 "fp32" if m in int8.get("keep_float", []) else "int8"] for m in modules]
        parts.append(f"<h3>{escape(', '.join(owners))}</h3><p>{fmt(int8.get('macs_int8_pct'), '.1f')}% of MACs in "
                     f"int8; kept fp32: {escape(', '.join(int8.get('keep_float') or []) or 'none')} (chosen by "
                     f"{escape(str(int8.get('chosen_by') or '–'))}).</p><div id=\"{div}\" class=\"chart small\"></div>"
                     + _table(["module", "numeric gap", "MACs %", "runs in"], rows))
        charts.append({"div": div, "modules": modules, "gap": [gap.get(m) for m in modules],
                       "macs": [100 * macs.get(m, 0.0) for m in modules],
                       "kept": [m in int8.get("keep_float", []) for m in modules]})
    if not parts:
        return "", []
    return ("<h2>int8: per-module numeric gap and MAC share</h2><p>The gap is what quantizing that module alone "
            "costs on the validation batch (the export's sensitivity pass); modules kept fp32 are marked.</p>"
            + "".join(parts)), charts


def _devices(report: dict) -> str:
    devices = report.get("devices") or {}
    placed = [r for r in report["results"] if r.get("placement")]
    if not devices and not placed:
        return ""
    html = "<h2>Devices</h2>" + _table(
        ["device", "name", "details"],
        [[label, info.get("name", "–"),
          ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("name", "skipped") and v not in (None, ""))
          + "".join(f"; skipped {n}: {why}" for n, why in (info.get("skipped") or {}).items())]
         for label, info in devices.items()])
    if placed:
        units = sorted({u for r in placed for u in r["placement"]})
        html += ("<p>Layers per compute unit, as the device reported them.</p>"
                 + _table(["artifact", "device", *units],
                          [[r["name"], r.get("device", "–"), *[r["placement"].get(u, 0) for u in units]]
                           for r in placed], "filterable", [r["name"] for r in placed]))
    return html


def _comparison(cmp: dict | None) -> str:
    if not cmp:
        return ""
    bad = cmp["regressions"] + cmp["breakages"]
    verdict = (f'<p class="bad">{len(bad)} regression(s) (slower by more than {100 * cmp["max_slowdown"]:.0f}%, '
               'failed or missing): '
               f'{escape("; ".join(bad))}</p>' if bad else
               f'<p class="good">No result slower than the baseline by more than {100 * cmp["max_slowdown"]:.0f}%, '
               "none failed or missing.</p>")
    rows = [[r["name"], r["device"], r["threads"], fmt(r["median_ms"][0], ".3f"), fmt(r["median_ms"][1], ".3f"),
             fmt(r["speedup"], ".2f"), fmt(r["top1"][0], ".1f"), fmt(r["top1"][1], ".1f"), fmt(r["top1_delta"], "+.1f")]
            for r in cmp["rows"]]
    only = "".join(f"<p>only in {escape(label)}: {escape(', '.join(names))}</p>"
                   for label, names in cmp.get("only", {}).items() if names)
    return (f"<h2>Comparison: {escape(cmp['baseline'])} → {escape(cmp['other'])}</h2>" + verdict
            + _table(["name", "device", "threads", "ms before", "ms after", "speed-up", "top-1 before",
                      "top-1 after", "Δ top-1"], rows) + only)


def _chart_data(report: dict, metric: str) -> dict:
    ship = (report.get("ship") or {}).get("name")
    points, boxes = [], []
    for r in report["results"]:
        lat = r.get("latency_ms") or {}
        acc = (r.get("accuracy") or {}).get("top1")
        if r["status"] == "ok" and lat.get("median") is not None:
            points.append({"name": r["name"], "ms": lat["median"], "top1": acc,
                           "mb": (r.get("size_bytes") or 0) / 2**20,
                           "format": r["format"], "precision": r["precision"], "runtime": r.get("runtime") or "",
                           "device": r.get("device", "host"),
                           "ship": r["name"] == ship and r.get("device", "host") == "host"})
        if lat.get("samples"):
            boxes.append({"name": r["name"], "samples": lat["samples"]})
    stages = report.get("stages") or []
    return {"points": points, "boxes": boxes, "metric": metric, "ship": ship,
            "stages": [{"name": s["name"], "wall_s": s["wall_s"], "cpu_s": s.get("cpu_s")} for s in stages]}


SCRIPT = r"""
const D = JSON.parse(document.getElementById('report-data').textContent);
const CFG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ['sendDataToCloud', 'select2d', 'lasso2d']};
let chosen = null;
function filterTo(name) {
  chosen = (chosen === name) ? null : name;
  document.querySelectorAll('[data-artifact]').forEach(el => {
    el.classList.toggle('hidden', chosen !== null && el.dataset.artifact !== chosen);
  });
  const note = document.getElementById('filter-note');
  note.textContent = chosen ? 'Showing ' + chosen + ' only (click it again, or here, to show all).' : '';
}
document.getElementById('filter-note').addEventListener('click', () => { if (chosen) filterTo(chosen); });
function pareto() {
  const pts = D.points.filter(p => p.top1 !== null);
  if (!pts.length) {
    const el = document.getElementById('pareto');
    el.textContent = 'No artifact has both a latency and an accuracy.';
    el.style.minHeight = '0';
    return;
  }
  const groups = {};
  pts.forEach(p => { const k = p.format + ' ' + p.precision; (groups[k] = groups[k] || []).push(p); });
  const maxMb = Math.max(...pts.map(p => p.mb), 1e-6);
  const traces = Object.entries(groups).map(([k, g]) => ({
    type: 'scatter', mode: 'markers', name: k, x: g.map(p => p.ms), y: g.map(p => p.top1),
    customdata: g.map(p => p.name),
    text: g.map(p => p.name + '<br>' + p.runtime + ' on ' + p.device + '<br>' + p.ms.toFixed(3) + ' ms, ' +
                     p.top1.toFixed(1) + '%, ' + p.mb.toFixed(2) + ' MB'),
    hovertemplate: '%{text}<extra></extra>',
    marker: {size: g.map(p => 8 + 40 * Math.sqrt(p.mb / maxMb)), sizemode: 'diameter', opacity: 0.75,
             line: {width: 1, color: '#333'}},
  }));
  const ship = pts.filter(p => p.ship);
  if (ship.length) traces.push({type: 'scatter', mode: 'markers+text', name: 'artifact to ship',
    x: ship.map(p => p.ms), y: ship.map(p => p.top1), customdata: ship.map(p => p.name),
    text: ship.map(p => 'ship: ' + p.name), textposition: 'top center', hoverinfo: 'skip',
    marker: {symbol: 'star', size: 22, color: 'gold', line: {width: 1.5, color: '#222'}}});
  Plotly.newPlot('pareto', traces, {
    xaxis: {title: {text: 'median latency, ms (log)'}, type: 'log'}, yaxis: {title: {text: D.metric}},
    margin: {t: 20}, legend: {orientation: 'h', y: -0.2}, hovermode: 'closest'}, CFG);
  document.getElementById('pareto').on('plotly_click', ev => filterTo(ev.points[0].customdata));
}
function latency() {
  if (!D.boxes.length) {
    const el = document.getElementById('latency');
    el.textContent = 'This report kept no per-call timings (it was written before egoedge kept them).';
    el.style.minHeight = '0';
    return;
  }
  const traces = D.boxes.map(b => ({type: 'box', name: b.name, x: b.samples, boxpoints: 'all', jitter: 0.4,
    pointpos: 0, marker: {size: 3, opacity: 0.5}, orientation: 'h', showlegend: false, line: {width: 1}}));
  Plotly.newPlot('latency', traces, {xaxis: {title: {text: 'ms per call (every timed call)'}, type: 'log'},
    margin: {t: 20, l: 260}, height: 120 + 26 * D.boxes.length}, CFG);
  document.getElementById('latency').on('plotly_click', ev => filterTo(ev.points[0].data.name));
}
function stages() {
  if (!D.stages.length) return;
  Plotly.newPlot('stages', [
    {type: 'bar', orientation: 'h', name: 'wall s', y: D.stages.map(s => s.name), x: D.stages.map(s => s.wall_s)},
    {type: 'bar', orientation: 'h', name: 'CPU s', y: D.stages.map(s => s.name), x: D.stages.map(s => s.cpu_s)}],
    {barmode: 'group', margin: {t: 20, l: 300}, height: 120 + 40 * D.stages.length, yaxis: {autorange: 'reversed'}},
    CFG);
}
function smallCharts() {
  (D.profiles || []).forEach(p => Plotly.newPlot(p.div, [{type: 'bar', orientation: 'h', y: p.ops.map(o => o.op),
    x: p.ops.map(o => o.ms),
    marker: {color: p.ops.map(o => o.where === 'portable' ? '#e76f51' : (p.delegated ? '#2a9d8f' : '#457b9d'))},
    text: p.ops.map(o => o.where), hovertemplate: '%{y}: %{x:.3f} ms (%{text})<extra></extra>'}],
    {margin: {t: 10, l: 260}, height: 80 + 22 * p.ops.length, yaxis: {autorange: 'reversed'},
     xaxis: {title: {text: 'ms per inference'}}}, CFG));
  (D.int8 || []).forEach(q => Plotly.newPlot(q.div, [
    {type: 'bar', name: 'numeric gap', x: q.modules, y: q.gap,
     marker: {color: q.kept.map(k => k ? '#e76f51' : '#264653')}},
    {type: 'scatter', mode: 'lines+markers', name: 'MACs %', x: q.modules, y: q.macs, yaxis: 'y2'}],
    {margin: {t: 10}, height: 320, yaxis: {title: {text: 'gap'}},
     yaxis2: {title: {text: 'MACs %'}, overlaying: 'y', side: 'right'}, legend: {orientation: 'h', y: -0.4}}, CFG));
}
pareto(); latency(); stages(); smallCharts();
document.body.dataset.drawn = 'yes';
"""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1400px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}.wide{overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
table.artifacts td{white-space:nowrap}table.artifacts td:nth-child(12){white-space:normal;max-width:28rem}
tr.hidden,div.hidden,p.hidden{display:none}.chart{width:100%;min-height:420px}.chart.small{min-height:200px}
.ship{background:#fff7d6;padding:.6rem;border:1px solid #e9c46a}.good{color:#1b7a3d}.bad{color:#b00020}
#filter-note{color:#0645ad;cursor:pointer;min-height:1.2em}details pre{background:#f7f7f7;padding:.6rem;overflow:auto}
.muted{color:#666}
"""


def render_html(report: dict, comparison: dict | None = None) -> str:
    """The whole page for ``report`` (and ``comparison``, from :func:`egoedge.bench.compare.comparison`)."""
    task = task_named(report.get("task"), "the report")
    metric = task.metric_column
    m = report["machine"]
    peaks = m.get("peak_gmacs") or {}
    headers, rows, names = _artifact_rows(report, metric)
    profiles_html, profile_charts = _profiles(report)
    int8_html, int8_charts = _int8(report)
    data = _chart_data(report, metric)
    data["profiles"], data["int8"] = profile_charts, int8_charts
    ship = report.get("ship")
    run = report.get("run") or {}
    stage_table = (_table(["stage", "wall s", "CPU s", "cores busy", "% of run"], stage_rows(report))
                   if report.get("stages") else "")
    summary = "".join(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>"
                      for k, v in (report.get("summary") or {}).items())
    machine = (f"{m.get('cpu')} ({m.get('cores')} cores), {m.get('threads')} threads, {m.get('os')}, "
               f"Python {m.get('python')}, torch {m.get('torch')}"
               + (f"; measured GEMM peak fp32 {fmt(peaks.get('fp32'), '.1f')}, int8 {fmt(peaks.get('int8'), '.1f')} "
                  "GMAC/s" if peaks else ""))
    stages_html = ('<h2>Where the run spent its time</h2><div id="stages" class="chart small"></div>' + stage_table
                   if stage_table else "")
    partial = ('<p class="bad">Partial: the bench stopped before every device row was measured.</p>'
               if report.get("partial") else "")
    body = f"""
<h1>egoedge report</h1>
<p class="muted">task {escape(task.name)} · {escape(machine)}</p>
{partial}
{f'<p class="ship">Artifact to ship: <b>{escape(ship_line(ship))}</b></p>' if ship else ''}
<h2>Accuracy against latency</h2>
<p>Each artifact that ran: {escape(metric)} against median latency, marker area by file size. Hover for the
name; click a point to show only that artifact in the tables below.</p>
<p id="filter-note"></p>
<div id="pareto" class="chart"></div>
<h2>Artifacts</h2>
<p>{escape(task.report_note)}</p>
<div class="wide">{_table(headers, rows, "filterable artifacts", names)}</div>
<h2>Latency, every timed call</h2>
<div id="latency" class="chart"></div>
{_streaming(report)}
{int8_html}
{profiles_html}
{_devices(report)}
{_comparison(comparison)}
{stages_html}
<h2>Summary</h2><ul>{summary}</ul>
<details><summary>Run configuration and versions</summary><pre>{escape(json.dumps(
        {"run": run, "machine": m}, indent=2, default=str))}</pre></details>
"""
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>egoedge report: {escape(task.name)}'
            f'</title><meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style>'
            f'</head><body>{body}<script type="application/json" id="report-data">{payload}</script>'
            f"<script>{_plotly()}</script><script>{SCRIPT}</script></body></html>\n")


def write_html(report: dict, path: str | Path, comparison: dict | None = None) -> Path:
    """Write :func:`render_html`'s page to ``path`` atomically."""
    path = Path(path)
    page = render_html(report, comparison)
    atomic_write(path, lambda p: Path(p).write_text(page, encoding="utf-8"))
    return path
