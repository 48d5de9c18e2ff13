"""Dispute evidence and the incident report, from real gates and a real central.

Real ``gate-daemon`` processes sync with a real ``gate-central`` (through a ``Link``, so a
central started again on another port is the same address to them); the reports are the
real commands (``gatectl report ticket``, ``gate-central report ticket|incident``) run as
processes, their output parsed as text, JSON and CSV, and the incident page opened in
Chromium. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from gate_daemon.core.incident import GAP_INTERVALS, MIN_GAP_S
from gate_daemon.core.times import format_instant
from gate_daemon.net.sync import MAX_BACKOFF
from tests.central_fixtures import CentralWorld
from tests.central_process import CONVERGE, CentralProcess, manifest_version, upstream_config, upstream_status
from tests.gate_process import BIN, GateProcess, Launcher, query, wait_until
from tests.link_proxy import Link
from tests.live import payload, ticket
from tests.loop_thread import LoopThread

pytestmark = pytest.mark.slow

#: How long the central stays down at least: longer than three heartbeat intervals (1 s in tests),
#: so the central sees the silence as an unheard period. Under load the intervals stretch, so the
#: outage also lasts until the silence is well past what the gates' pace, as heard, implies.
OUTAGE_S = 6.0
#: Beats the central hears from each gate before the outage: its pace is known from these
#: intervals, not from the silence (``core.incident`` takes the usual interval from the shorter half).
PACE_BEATS = 3
#: Beats the central hears from each gate after the outage, so the silence ends in a beat (and the
#: gate's pace after it is known) before the report is made.
AGAIN_BEATS = 2


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """A command of this package, as a user runs it."""
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60, check=False
    )


def ok(*argv: str) -> str:
    done = run(*argv)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.fixture
def uplink(
    central_world: CentralWorld, loop: LoopThread, tmp_path: Path
) -> Iterator[tuple[Link, CentralProcess]]:
    """A central serving ``central_world`` behind a link the gates use; both closed at the end."""
    central = CentralProcess(central_world.config_path, tmp_path, name="central").start()
    link = loop.run(Link(("127.0.0.1", central.port), name="uplink").start())
    try:
        yield link, central
    finally:
        loop.run(link.aclose())
        central.close()


def start(
    launch: Launcher, world: CentralWorld, root: Path, link: Link, gate_id: str, **kw: Any
) -> GateProcess:
    gate = launch(
        upstream_config(world, root / gate_id, f"http://{link.address}", gate_id=gate_id, **kw), name=gate_id
    )
    wait_until(lambda: manifest_version(gate) == 1, CONVERGE, f"{gate_id} to fetch the central's manifest")
    return gate


def rows_of(text: str) -> list[dict[str, str]]:
    """CSV with a header line, parsed."""
    return list(csv.DictReader(io.StringIO(text)))


def _same(rows: list[tuple[Any, ...]]) -> bool:
    """Two meta rows holding one value."""
    return len(rows) == 2 and rows[0][0] == rows[1][0]


def learned(gate: GateProcess, uuid: str) -> bool:
    return bool(query(gate.ledger_path, "SELECT 1 FROM redemptions WHERE uuid = ?", uuid))


def beats_at(central: CentralProcess, gate: str, after: float = 0.0) -> list[float]:
    """When the central heard ``gate``'s heartbeats (its clock, UTC seconds), after ``after``."""
    rows = query(central.database, "SELECT at FROM beats WHERE gate = ? AND at > ? ORDER BY at", gate, after)
    return [float(at) for (at,) in rows]


def silent_enough(heard: list[float]) -> float:
    """A silence after ``heard`` the central counts as unheard whatever beats follow at that pace:
    twice three of the longest intervals heard (the analysis takes a shorter one), at least
    ``OUTAGE_S``."""
    longest = max((b - a for a, b in itertools.pairwise(heard)), default=MIN_GAP_S)
    return max(OUTAGE_S, 2 * max(MIN_GAP_S, GAP_INTERVALS * longest))


def evidence_at(central: CentralProcess, ticket_id: str) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in query(
            central.database, "SELECT gate, outcome FROM evidence WHERE ticket_id = ?", ticket_id
        )
    ]


# ------------------------------------------------------------------ a dispute


def test_was_this_person_let_in_is_answered_at_the_gate_and_at_the_central(
    central_world: CentralWorld,
    uplink: tuple[Link, CentralProcess],
    launch: Launcher,
    tmp_path: Path,
) -> None:
    link, central = uplink
    north = start(launch, central_world, tmp_path, link, "north-1")
    south = start(launch, central_world, tmp_path, link, "south-1")

    first = north.scan(payload(7))
    assert first["outcome"] == "allow", first
    record = str(first["record_id"])
    wait_until(lambda: learned(south, record), CONVERGE, "south-1 to learn north-1's entry from the central")
    again = south.scan(payload(7))
    assert again["outcome"] == "already_used", again

    # At south-1: its own denial (a scan) and north-1's entry (a record learned), in order.
    text = ok("gatectl", "report", "ticket", ticket(7), "--ledger", str(south.ledger_path))
    assert text.splitlines()[0].startswith(f"{ticket(7)}: admitted once: north-1 at ")
    report = json.loads(
        ok("gatectl", "report", "ticket", ticket(7), "--ledger", str(south.ledger_path), "--json")
    )
    assert [(r["gate"], r["source"], r["outcome"], r["record"]) for r in report["rows"]] == [
        ("north-1", "record", None, record),
        ("south-1", "scan", "already_used", None),
    ]
    assert report["rows"][1]["reason"] == "already_used"
    assert [(a["gate"], a["record"], a["time"]) for a in report["admitted"]] == [
        ("north-1", record, report["rows"][0]["time"])
    ]
    rows = rows_of(ok("gatectl", "report", "ticket", ticket(7), "--ledger", str(south.ledger_path), "--csv"))
    assert [(r["gate"], r["outcome"], r["device"] != "") for r in rows] == [
        ("north-1", "", False),
        ("south-1", "already_used", True),
    ]

    # At the central: both gates' scans (uploaded evidence) and the record, once the uploads are in.
    wait_until(
        lambda: len(evidence_at(central, ticket(7))) == 2, CONVERGE, "both gates' evidence at the central"
    )
    marks = "SELECT value FROM meta WHERE key IN ('upstream_evidence_hlc', 'latest_scan_hlc') ORDER BY key"
    for gate in (north, south):  # each gate's cursor stands at its latest scan: nothing is sent twice
        wait_until(
            lambda g=gate: len({v for (v,) in query(g.ledger_path, marks)}) == 1, CONVERGE, "the cursor"
        )
    config = str(central_world.config_path)
    venue = json.loads(ok("gate-central", "report", "ticket", ticket(7), "--config", config, "--json"))
    assert [(r["gate"], r["source"], r["outcome"], r["record"]) for r in venue["rows"]] == [
        ("north-1", "scan", "allow", record),
        ("south-1", "scan", "already_used", None),
    ]
    assert venue["admitted"][0]["gate"] == "north-1" and venue["answer"].startswith(
        f"{ticket(7)}: admitted once"
    )
    assert all(r["device"] for r in venue["rows"])  # who scanned where: the evidence, not just the record
    table = rows_of(ok("gate-central", "report", "ticket", ticket(7), "--config", config, "--csv"))
    assert [r["resolution"] for r in table] == ["admitted", "refused"]
    text = ok("gate-central", "report", "ticket", ticket(7), "--config", config)
    assert "north-1" in text and "already_used" in text
    # A ticket nobody scanned is an answer too, not an error.
    assert ok("gate-central", "report", "ticket", ticket(9), "--config", config).startswith(
        f"{ticket(9)}: never admitted"
    )


# ------------------------------------------------------------------ an incident


class _Balance(HTMLParser):
    """Fails on a closing tag that does not close the innermost open one (void elements aside)."""

    VOID = frozenset({"meta", "br", "line", "rect", "path", "polyline", "i", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        return

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID and (not self.stack or self.stack[-1] != tag):
            return
        assert self.stack and self.stack[-1] == tag, (
            f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        )
        self.stack.pop()


def test_the_incident_page_shows_a_central_outage_with_its_kpis(
    central_world: CentralWorld,
    uplink: tuple[Link, CentralProcess],
    launch: Launcher,
    tmp_path: Path,
    page: Page,
) -> None:
    link, central = uplink
    began = time.time() - 1
    north = start(launch, central_world, tmp_path, link, "north-1", decision="online-first")
    south = start(launch, central_world, tmp_path, link, "south-1")
    for n in range(20, 26):
        assert north.scan(payload(n))["outcome"] == "allow"
    assert south.scan(payload(30))["outcome"] == "allow"
    wait_until(lambda: north.status()["online"]["mode"] == "online", CONVERGE, "north-1 to decide online")
    gates = ("north-1", "south-1")
    wait_until(
        lambda: all(len(beats_at(central, g)) >= PACE_BEATS for g in gates),
        CONVERGE,
        "the central to hear each gate's pace",
    )

    central.close()  # the central goes down; the gates scan on
    heard = {g: beats_at(central, g) for g in gates}  # all it heard: it hears no more
    for n in range(40, 44):
        assert north.scan(payload(n))["outcome"] == "allow"
    wait_until(lambda: north.status()["online"]["mode"] == "offline", CONVERGE, "north-1's breaker to open")
    double = north.scan(payload(50))
    assert double["outcome"] == "allow"
    mode = query(north.ledger_path, "SELECT mode FROM redemptions WHERE uuid = ?", double["record_id"])
    assert mode == [("offline",)]
    assert south.scan(payload(50))["outcome"] == "allow"  # neither could know: a double entry
    quiet = {g: silent_enough(beats) for g, beats in heard.items()}
    wait_until(
        lambda: all(time.time() - heard[g][-1] > quiet[g] for g in gates),
        max(quiet.values()) + CONVERGE,
        "the outage to outlast the gates' pace",
    )

    again = CentralProcess(central_world.config_path, tmp_path, name="central-again").start()
    try:
        link.target = ("127.0.0.1", again.port)
        wait_until(
            lambda: (
                all(upstream_status(g)["pending"] == 0 for g in (north, south))
                and len(query(again.database, "SELECT 1 FROM evidence WHERE ticket_id = ?", ticket(50))) == 2
            ),
            CONVERGE,
            "the gates to send what they scanned offline, evidence included",
        )
        # The silence ends where the central hears each gate again (its heartbeats back off
        # while the central is down, up to MAX_BACKOFF): a bounded gap between paced beats.
        wait_until(
            lambda: all(len(beats_at(again, g, heard[g][-1])) >= AGAIN_BEATS for g in gates),
            CONVERGE + MAX_BACKOFF,
            "the central to hear each gate again",
        )
        ended = time.time() + 1
        out = tmp_path / "incident.html"
        config = str(central_world.config_path)
        period = ("--from", format_instant(began), "--to", format_instant(ended))
        said = ok("gate-central", "report", "incident", *period, "--config", config, "-o", str(out))
        assert said.startswith(f"wrote {out}")
        incident = json.loads(ok("gate-central", "report", "incident", *period, "--config", config, "--json"))
    finally:
        again.close()

    # The outage: both gates unheard in one window; north-1 switched offline inside it.
    assert len(incident["windows"]) >= 1
    assert {"north-1", "south-1"} <= {g for w in incident["windows"] for g in w["gates"]}
    assert {(p["gate"], p["kind"]) for p in incident["periods"]} >= {
        ("north-1", "unheard"),
        ("south-1", "unheard"),
    }
    assert any(s["gate"] == "north-1" and s["to"] == "offline" for s in incident["mode_switches"])
    kpis = incident["kpis"]
    assert kpis["mode_switch_s"] is not None and kpis["mode_switch_s"] >= 0
    assert kpis["sync_restoration_s"] is not None and kpis["sync_restoration_s"] >= 0
    assert kpis["conflict_rate"] is not None and kpis["conflict_rate"] > 0
    assert [c["ticket_id"] for c in incident["conflicts"]] == [ticket(50)]
    loser = incident["conflicts"][0]["loser_gate"]
    attention = {a["gate"]: a["reasons"] for a in incident["attention"]}
    assert any("double entr" in r for r in attention[loser])
    assert incident["totals"]["offline_scans"] >= 6

    # The page: well formed, self-contained, and its charts drawn.
    text = out.read_text()
    checker = _Balance()
    checker.feed(text)
    checker.close()
    assert checker.stack == []
    assert "<script" not in text and "http://" not in text and "https://" not in text
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    assert requests == [out.as_uri()]  # nothing fetched: inline CSS and SVG only
    assert page.locator("#scans-chart polyline.series").count() == 2
    assert page.locator("#scans-chart rect.window").count() >= 1
    assert page.locator("#timeline rect.period.unheard").count() >= 2
    assert page.locator("#timeline path.switch.to-offline").count() >= 1
    assert page.locator("#kpi-table tr").count() == 4  # the header, the venue, two gates
    assert ticket(50) in (page.locator("#conflicts-table").text_content() or "")
    assert loser in (page.locator("#attention-table").text_content() or "")
    pdf = page.pdf()  # prints to PDF
    assert pdf.startswith(b"%PDF")


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("gatectl", "report", "ticket"), "give the ticket's ID"),
        (("gatectl", "report", "ticket", "a\tb", "--ledger", "x"), "printable text"),
        (("gatectl", "report", "ticket", "P-001", "--ledger", "/nonexistent/ledger.sqlite"), "no ledger at"),
        (("gatectl", "report", "conflicts", "P-001"), "takes no ticket id"),
        (("gatectl", "report", "conflicts", "--config", "gate.toml"), "--csv or --config"),
    ],
)
def test_bad_arguments_at_the_gate_get_named_errors(argv: tuple[str, ...], named: str) -> None:
    done = run(*argv)
    assert done.returncode != 0
    assert named in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("report", "ticket"), "give the ticket's ID"),
        (("report", "ticket", "P-001", "--from", "2026-01-01T00:00:00Z"), "takes no --from"),
        (
            ("report", "incident", "--to", "2026-01-01T00:00:00Z", "-o", "x.html"),
            "needs --from TIME and --to",
        ),
        (
            ("report", "incident", "--from", "yesterday", "--to", "2026-01-01T00:00:00Z", "-o", "x"),
            "--from: not an",
        ),
        (
            (
                "report",
                "incident",
                "--from",
                "2026-01-02T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
                "-o",
                "x",
            ),
            "must be later than",
        ),
        (
            (
                "report",
                "incident",
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2026-03-01T00:00:00Z",
                "-o",
                "x",
            ),
            "longer than 7 days",
        ),
        (
            ("report", "incident", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z"),
            "needs -o FILE",
        ),
        (("report", "incident", "P-001", "--from", "2026-01-01T00:00:00Z"), "takes no ticket ID"),
        (("report", "incident", "--csv", "--from", "2026-01-01T00:00:00Z"), "takes no --csv"),
    ],
)
def test_bad_arguments_at_the_central_get_named_errors(
    central_world: CentralWorld, argv: tuple[str, ...], named: str
) -> None:
    done = run("gate-central", *argv, "--config", str(central_world.config_path))
    assert done.returncode != 0
    assert named in done.stderr and "Traceback" not in done.stderr


def test_an_unwritable_page_and_a_missing_database_are_named(
    central_world: CentralWorld, tmp_path: Path
) -> None:
    config = str(central_world.config_path)
    period = ("--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z")
    done = run("gate-central", "report", "incident", *period, "--config", config, "-o", str(tmp_path))
    assert done.returncode != 0 and "no such database" in done.stderr  # the central never ran: named first
    done = run("gate-central", "report", "ticket", "P-001", "--config", config)
    assert done.returncode != 0 and "no such database" in done.stderr and "Traceback" not in done.stderr
