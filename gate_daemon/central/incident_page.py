"""The incident report as one self-contained HTML page: inline CSS, inline SVG, no script, no network.

Drawn here, server-side, from an analysed ``core.incident.Incident``: scans per time per
gate (one line each, the fault windows shaded), each gate's timeline (unheard and
offline periods, mode switches), the failover KPIs for the venue and per gate, the
double entries and the gates that needed attention. It prints to PDF from any browser
(``@page``, no dark backgrounds needed). Every text from the database is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from gate_daemon.core.incident import Incident
from gate_daemon.core.kpis import Kpis
from gate_daemon.core.times import format_instant

#: One colour per gate, in order (repeats past ten gates; the legend says which is which).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22")  # fmt: skip
WIDTH = 960
CHART_H = 240
LANE_H = 26
LEFT = 110
RIGHT = 20

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; color: #111; margin: 24px; max-width: 1000px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: #555; } table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg { display: block; margin: 8px 0; } svg text { font: 11px system-ui, sans-serif; fill: #333; }
.legend span { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
@page { size: A4 landscape; margin: 12mm; }
@media print { body { margin: 0; } h2 { break-after: avoid; } svg, table { break-inside: avoid; } }
"""


def render(incident: Incident, *, title: str) -> str:
    """The whole page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(format_instant(incident.start))} to {_e(format_instant(incident.end))} (UTC);'
        f" {len(incident.gates)} gates; {_totals(incident)}</p>",
        '<h2 id="kpis">Failover KPIs</h2>',
        _kpi_table(incident),
        _windows(incident),
        '<h2 id="scans">Scans per ' + _e(_bucket_name(incident.bucket_s)) + " per gate</h2>",
        _legend(incident.gates),
        _scan_chart(incident),
        '<h2 id="timeline">Offline periods and mode switches</h2>',
        _timeline_legend(),
        _timeline(incident),
        '<h2 id="attention">Gates that needed attention</h2>',
        _attention(incident),
        '<h2 id="conflicts">Double entries</h2>',
        _conflicts(incident),
        '<p class="muted">KPI definitions: docs/REPORTS.md. Windows are measured from the last heartbeat'
        " heard before a silence.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _bucket_name(seconds: int) -> str:
    return "minute" if seconds == 60 else f"{seconds // 60} minutes"


def _totals(incident: Incident) -> str:
    t = incident.totals
    return (
        f"{t.get('scans', 0)} scans ({t.get('offline_scans', 0)} decided offline, {t.get('denials', 0)} not"
        f" admitted), {t.get('entries', 0)} entries, {t.get('conflicts', 0)} double entries"
    )


def _number(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _kpi_cells(k: Kpis) -> str:
    rate = None if k.conflict_rate is None else 100 * k.conflict_rate
    values = (
        _number(k.mode_switch_s, " s"),
        _number(k.throughput_drop_pct, " %"),
        _number(rate, " %", 2),
        _number(k.sync_restoration_s, " s"),
    )
    return "".join(f'<td class="num">{_e(v)}</td>' for v in values)


def _kpi_table(incident: Incident) -> str:
    rows = [f"<tr><th>venue</th>{_kpi_cells(incident.kpis)}</tr>"]
    rows += [f"<tr><td>{_e(g)}</td>{_kpi_cells(k)}</tr>" for g, k in incident.per_gate.items()]
    head = (
        "<tr><th></th><th>mode-switch time</th><th>throughput drop</th><th>double-entry rate</th>"
        "<th>time to full sync</th></tr>"
    )
    return f'<table id="kpi-table">{head}{"".join(rows)}</table>'


def _windows(incident: Incident) -> str:
    if not incident.windows:
        return "<p>No fault windows: every gate was heard throughout.</p>"
    items = "".join(f"<li>{_e(w.label)}: {_e(', '.join(w.gates))}</li>" for w in incident.windows)
    return f"<p>Fault windows (gates not heard by the central):</p><ul>{items}</ul>"


def _legend(gates: Sequence[str]) -> str:
    spans = "".join(
        f'<span><i class="swatch" style="background:{_colour(i)}"></i>{_e(g)}</span>'
        for i, g in enumerate(gates)
    )
    return f'<p class="legend">{spans}</p>'


def _timeline_legend() -> str:
    return (
        '<p class="legend">'
        '<span><i class="swatch" style="background:#999"></i>not heard by the central</span>'
        '<span><i class="swatch" style="background:#f0a030"></i>deciding offline</span>'
        '<span><i class="swatch" style="background:#d62728"></i>switch to offline</span>'
        '<span><i class="swatch" style="background:#2ca02c"></i>switch to online</span></p>'
    )


def _x(incident: Incident, seconds: float) -> float:
    span = max(1.0, incident.end - incident.start)
    return LEFT + (WIDTH - LEFT - RIGHT) * min(1.0, max(0.0, (seconds - incident.start) / span))


def _shade(incident: Incident, top: float, height: float) -> str:
    out = []
    for w in incident.windows:
        x0, x1 = _x(incident, w.start_ms / 1000), _x(incident, w.end_ms / 1000)
        out.append(
            f'<rect class="window" x="{x0:.1f}" y="{top:.1f}" width="{max(1.0, x1 - x0):.1f}"'
            f' height="{height:.1f}" fill="#fde0dc"/>'
        )
    return "".join(out)


def _axis(incident: Incident, bottom: float) -> str:
    out = [f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#333"/>']
    for n in range(6):
        at = incident.start + (incident.end - incident.start) * n / 5
        x = _x(incident, at)
        label = format_instant(at)[11:19]
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{label}</text>')
    return "".join(out)


def _scan_chart(incident: Incident) -> str:
    top, bottom = 10.0, CHART_H - 30.0
    peak = max([1, *(max(v, default=0) for v in incident.series.values())])
    out = [
        f'<svg id="scans-chart" width="{WIDTH}" height="{CHART_H}" role="img" aria-label="scans per time">'
    ]
    out.append(_shade(incident, top, bottom - top))
    for n in range(5):
        value = peak * n / 4
        y = bottom - (bottom - top) * n / 4
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.0f}</text>')
    for index, gate in enumerate(incident.gates):
        counts = incident.series.get(gate, [])
        points = " ".join(
            f"{_x(incident, incident.start + (i + 0.5) * incident.bucket_s):.1f},"
            f"{bottom - (bottom - top) * c / peak:.1f}"
            for i, c in enumerate(counts)
        )
        out.append(
            f'<polyline class="series" data-gate="{_e(gate)}" points="{points}" fill="none"'
            f' stroke="{_colour(index)}" stroke-width="2"/>'
        )
    out.append(_axis(incident, bottom))
    out.append("</svg>")
    return "".join(out)


def _timeline(incident: Incident) -> str:
    height = LANE_H * len(incident.gates) + 40
    out = [f'<svg id="timeline" width="{WIDTH}" height="{height}" role="img" aria-label="gate timelines">']
    out.append(_shade(incident, 0, LANE_H * len(incident.gates)))
    lane = {gate: i for i, gate in enumerate(incident.gates)}
    for gate, i in lane.items():
        y = i * LANE_H
        out.append(f'<text x="{LEFT - 6}" y="{y + LANE_H / 2 + 4:.1f}" text-anchor="end">{_e(gate)}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y + LANE_H / 2}" x2="{WIDTH - RIGHT}" y2="{y + LANE_H / 2}"'
                   ' stroke="#ddd"/>')  # fmt: skip
    for p in incident.periods:
        inset = 4 if p.kind == "unheard" else 9
        top = lane[p.gate] * LANE_H + inset
        x0, x1 = _x(incident, p.start), _x(incident, p.end)
        colour = "#999" if p.kind == "unheard" else "#f0a030"
        out.append(
            f'<rect class="period {p.kind}" data-gate="{_e(p.gate)}" x="{x0:.1f}" y="{top}"'
            f' width="{max(1.0, x1 - x0):.1f}" height="{LANE_H - 2 * inset}"'
            f' fill="{colour}"><title>{_e(p.gate)} {p.kind} {_e(format_instant(p.start))} to'
            f" {_e(format_instant(p.end))}</title></rect>"
        )
    for s in incident.switches:
        if s.gate not in lane:
            continue
        x, mid = _x(incident, s.at_ms / 1000), lane[s.gate] * LANE_H + LANE_H / 2
        colour = "#d62728" if s.to_mode == "offline" else "#2ca02c"
        out.append(
            f'<path class="switch to-{_e(s.to_mode)}" d="M{x:.1f},{mid - 7:.1f} l5,7 l-5,7 l-5,-7 z"'
            f' fill="{colour}"><title>{_e(s.gate)} to {_e(s.to_mode)} at'
            f" {_e(format_instant(s.at_ms / 1000))}</title></path>"
        )
    out.append(_axis(incident, LANE_H * len(incident.gates) + 4))
    out.append("</svg>")
    return "".join(out)


def _attention(incident: Incident) -> str:
    if not incident.attention:
        return "<p>None: every gate was heard, decided as configured and admitted no double entry.</p>"
    rows = "".join(
        f"<tr><td>{_e(a.gate)}</td><td>{'<br>'.join(_e(r) for r in a.reasons)}</td></tr>"
        for a in incident.attention
    )
    return f'<table id="attention-table"><tr><th>gate</th><th>why</th></tr>{rows}</table>'


def _conflicts(incident: Incident) -> str:
    if not incident.collisions:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td>{_e(c.ticket_id)}</td><td>{_e(c.winner_gate)} at {_e(format_instant(c.winner_wall))}</td>"
        f"<td>{_e(c.loser_gate)} at {_e(format_instant(c.loser_wall))}</td><td>{_e(c.loser)}</td></tr>"
        for c in incident.collisions
    )
    head = "<tr><th>ticket</th><th>stands (admitted first)</th><th>admitted again</th><th>record</th></tr>"
    return f'<table id="conflicts-table">{head}{rows}</table>'
