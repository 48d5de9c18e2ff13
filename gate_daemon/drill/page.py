"""report.html: the drill's report on one self-contained page (inline SVG, no script, no fetch).

At the top, what a venue manager reads at a glance: whether the invariants held, and
the four KPIs. Then throughput per gate over time (a line per gate, scans per 5 s) with
each fault's window drawn behind, and a table per gate.
"""

from __future__ import annotations

import html
from typing import Any

BUCKET_S = 5
WIDTH, HEIGHT, PAD = 900, 320, 40
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def render(report: dict[str, Any]) -> str:
    """The page for ``report`` (report.json's content)."""
    e = html.escape
    held = report["invariants_hold"]
    verdict = "Invariants hold" if held else "INVARIANTS BROKEN"
    kpis = report["kpis"]
    rows = "".join(
        f"<tr><th>{e(name)}</th><td>{_fmt(kpis.get(key))}{unit}</td></tr>"
        for name, key, unit in (
            ("Mode switch (median)", "mode_switch_s", " s"),
            ("Throughput drop during faults (median)", "throughput_drop_pct", " %"),
            ("Duplicate-scan conflict rate", "conflict_rate", ""),
            ("Time to full sync after heal (max)", "sync_restoration_s", " s"),
        )
    )
    facts = "".join(
        f"<tr><th>{e(name)}</th><td>{e(str(value))}</td></tr>"
        for name, value in (
            ("Acknowledged scans lost", report["lost"]),
            ("Converged (every gate and the central hold every record)", report["converged"]),
            ("Conflicts expected / found", f"{report['conflicts_expected']} / {report['conflicts_found']}"),
            (
                "Screenshot reuses admitted / refused",
                f"{report['screenshots_admitted']} / {report['screenshots_refused']}",
            ),
            ("Refused screenshots, why", report["screenshots_refused_why"]),
            (
                "Decision latency p50 / p99",
                f"{report['latency_ms']['p50']} / {report['latency_ms']['p99']} ms",
            ),
            (
                "Scans / admissions / records",
                f"{report['scans']} / {report['redemptions']} / {report['records']}",
            ),
            (
                "Requests and bytes per admission",
                f"{report['requests_per_redemption']} / {report['bytes_per_redemption']}",
            ),
            ("CPU seconds per gate (mean)", report["cpu_s_per_gate"]),
        )
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in [report["latency_by"], *report["notes"]])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drill {e(report["scenario"])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:960px}}
table{{border-collapse:collapse;margin:1em 0}} th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.ok{{color:#116611}} .bad{{color:#b00000}} h1 span{{font-size:60%}}
</style></head><body>
<h1>Drill: {e(report["scenario"])} <span>({report["gates"]} gates)</span></h1>
<p>{e(report["description"])}</p>
<h2 id="verdict" class="{"ok" if held else "bad"}">{verdict}</h2>
<table id="kpis">{rows}</table>
<table id="facts">{facts}</table>
<h2>Throughput per gate (scans per {BUCKET_S} s), fault windows shaded</h2>
{chart(report)}
<h2>Per gate</h2>
{_gate_table(report)}
<ul>{notes}</ul>
</body></html>
"""


def chart(report: dict[str, Any]) -> str:
    """The inline SVG: a line per gate, the windows as shaded bands with their labels."""
    gates = report["per_gate"]
    series = {gate: data["throughput"] for gate, data in gates.items()}
    buckets = max((len(s) for s in series.values()), default=1) or 1
    open_ms = report["doors_open_ms"]
    ends = [(w["end_ms"] - open_ms) / 1000 for w in report["windows"]]
    span_s = float(max(buckets * BUCKET_S, *ends, 1))
    top = max((max(s, default=0) for s in series.values()), default=1) or 1

    def x(seconds: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * seconds / span_s

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">']
    for i, window in enumerate(report["windows"]):
        start, end = (window["start_ms"] - open_ms) / 1000, (window["end_ms"] - open_ms) / 1000
        parts.append(
            f'<rect class="window" x="{x(start):.1f}" y="{PAD}" width="{max(x(end) - x(start), 1):.1f}" '
            f'height="{HEIGHT - 2 * PAD}" fill="#f4c0c0" fill-opacity="0.5"/>'
            f'<text x="{x(start) + 2:.1f}" y="{PAD - 4 - 10 * (i % 3)}" font-size="10">'
            f"{html.escape(window['label'])}</text>"
        )
    parts.append(
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#000"/>'
    )
    parts.append(f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#000"/>')
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="11">0 s</text>')
    parts.append(f'<text x="{WIDTH - PAD - 30}" y="{HEIGHT - 10}" font-size="11">{span_s:.0f} s</text>')
    parts.append(f'<text x="4" y="{PAD + 4}" font-size="11">{top}</text>')
    for n, (gate, values) in enumerate(series.items()):
        points = " ".join(f"{x((i + 0.5) * BUCKET_S):.1f},{y(v):.1f}" for i, v in enumerate(values))
        color = COLORS[n % len(COLORS)]
        parts.append(
            f'<polyline class="gate" fill="none" stroke="{color}" stroke-width="1.2" points="{points}">'
        )
        parts.append(f"<title>{html.escape(gate)}</title></polyline>")
    parts.append("</svg>")
    return "".join(parts)


def _gate_table(report: dict[str, Any]) -> str:
    head = (
        "<tr><th>gate</th><th>scans</th><th>admitted</th><th>offline-decided</th><th>p50 / p99 ms</th>"
        "<th>mode switch s</th><th>drop %</th><th>sync s</th><th>conflicts</th><th>restarts</th>"
        "<th>CPU s</th></tr>"
    )
    rows = []
    for gate, data in report["per_gate"].items():
        k = data["kpis"]
        rows.append(
            f"<tr><td>{html.escape(gate)}</td><td>{data['scans']}</td><td>{data['admitted']}</td>"
            f"<td>{data['offline_decided']}</td>"
            f"<td>{data['latency_ms']['p50']} / {data['latency_ms']['p99']}</td>"
            f"<td>{_fmt(k.get('mode_switch_s'))}</td><td>{_fmt(k.get('throughput_drop_pct'))}</td>"
            f"<td>{_fmt(k.get('sync_restoration_s'))}</td><td>{data['conflicts_reported']}</td>"
            f"<td>{data['restarts']}</td><td>{data['cpu_s']}</td></tr>"
        )
    return f'<table id="gates">{head}{"".join(rows)}</table>'


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return html.escape(str(value))
