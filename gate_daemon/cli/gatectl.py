"""``gatectl``: the venue tech's tool for keys, manifests, tickets and decisions.

Exit status: 0 success (and ``allow`` for ``decide``), 1 an error (printed as one line
``ErrorName: message``), 2 a usage error; ``decide`` exits 3 deny, 4 already_used,
5 too_early.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gate_daemon.core.decision import Checkpoint, Outcome, evaluate
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import (
    DELTA,
    MAX_HEADER,
    Header,
    Manifest,
    check_fresh,
    check_successor,
    open_manifest,
    peek_header,
)
from gate_daemon.core.times import TimeFormatError, format_instant, format_span, parse_instant
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag, parse_entries
from gate_daemon.daemon.control import DEFAULT_SOCKET, ask
from gate_daemon.errors import GateError, ManifestRefused, run_command
from gate_daemon.files import open_regular, write_atomic
from gate_daemon.provision.build import MAX_VERSION, build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.keyfiles import read_public, read_secret, write_keypair
from gate_daemon.provision.qrimage import write_qr
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.manifest_file import apply_delta_file, read_manifest, write_delta_result
from gate_daemon.store.offline_reads import read_conflicts, read_counters

EXIT_CODES = {Outcome.ALLOW: 0, Outcome.DENY: 3, Outcome.ALREADY_USED: 4, Outcome.TOO_EARLY: 5}
#: Payloads up to this length fit a version-7 QR at error level M, which phones and the
#: Pi camera read comfortably; longer ones still work but print larger.
COMFORTABLE_PAYLOAD = 160


def _instant(text: str) -> int:
    try:
        return parse_instant(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _entries(text: str) -> int:
    value = parse_entries(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1..255 or 'reentry'")
    return value


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number of at least 1")
    return int(text)


def _min_version(text: str) -> int:
    return 0 if text == "0" else _version(text)


def _version(text: str) -> int:
    value = _positive(text)
    if value > MAX_VERSION:
        raise argparse.ArgumentTypeError(f"{text} is larger than {MAX_VERSION}")
    return value


def _publics(paths: Sequence[Path]) -> list[PublicKey]:
    return [read_public(p) for p in paths]


# ------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write NAME.key (0600) and NAME.pub and print the key id."""
    if not args.name or "/" in args.name or args.name.startswith(".") or not args.name.isprintable():
        raise GateError(f"key name {args.name!r} must be a plain file name (no '/', not starting with '.')")
    stem = Path(args.dir) / args.name
    secret, public, key = write_keypair(stem, overwrite=args.force)
    print(f"key id {key.public.kid}")
    print(f"secret {secret} (mode 0600: keep it off the gates unless it signs there)")
    print(f"public {public}")
    return 0


def cmd_manifest_build(args: argparse.Namespace) -> int:
    """Build a signed manifest, or a delta from --base."""
    key = read_secret(args.key)
    event = load_event(args.event)
    tickets = load_tickets(args.tickets, event)
    base = None
    if args.base is not None:
        trusted = _publics(args.base_pub) if args.base_pub else [key.public]
        base = read_manifest(args.base, trusted)
    issued = int(time.time())
    data = build_manifest(
        event, tickets, key, version=args.version, issued_at=issued, expires_at=args.expires, base=base
    )
    write_atomic(args.output, data)
    _, header = peek_header(data)
    kind = f"delta {base.version} -> {args.version}" if base else f"version {args.version}"
    print(
        f"wrote {args.output}: {event.event_id} {kind}, {header.tickets} tickets, {len(data)} bytes, "
        f"signed by {key.public.kid}, expires {format_instant(header.expires_at)}"
    )
    kept = header.raw.get("delta", {}).get("kept_canceled", 0)
    if kept:
        print(
            f"note: {kept} tickets of version {base.version if base else '?'} are not in {args.tickets}; "
            "they stay in the manifest as canceled",
            file=sys.stderr,
        )
    return 0


def _load_verified(path: Path, trusted: list[PublicKey], base_path: Path | None) -> Manifest:
    """A full manifest, or with ``base_path`` a delta applied to it; verified either way."""
    if base_path is None:
        return read_manifest(path, trusted)
    base = read_manifest(base_path, trusted)
    return open_manifest(apply_delta_file(base, path, trusted), trusted)


def cmd_manifest_verify(args: argparse.Namespace) -> int:
    """Exit 0 only for a valid, unexpired manifest signed by a given key."""
    trusted = _publics(args.pub)
    manifest = _load_verified(args.file, trusted, args.base)
    now = args.at if args.at is not None else time.time()
    check_fresh(manifest, now)
    check_successor(manifest, args.min_version)
    h = manifest.header
    print(
        f"ok: {h.event_id} version {h.version}, {h.tickets} tickets, signed by {h.signer}, "
        f"expires {format_instant(h.expires_at)}"
    )
    return 0


def cmd_manifest_show(args: argparse.Namespace) -> int:
    """Describe a manifest; verified when --pub is given."""
    if args.pub:
        header = _load_verified(args.file, _publics(args.pub), args.base).header
        verdict = "good (verified with the given key)"
        kind = b"F"
    else:
        try:
            with open_regular(args.file) as handle:
                head = handle.read(MAX_HEADER + 1024)  # the header is all that is shown
        except OSError as exc:
            raise ManifestRefused("unreadable", f"cannot read {args.file}: {exc.strerror}") from None
        kind, header = peek_header(head)
        verdict = "NOT CHECKED (pass --pub KEY to verify)"
    if args.json:
        print(json.dumps({"verified": bool(args.pub), "header": header.raw}, indent=2, sort_keys=True))
        return 0
    _print_header(header, kind, verdict)
    return 0


def _print_header(h: Header, kind: bytes, verdict: str) -> None:
    lines = [
        f"event      {h.event_id} ({h.event_name})",
        f"version    {h.version}" + (f" (delta from version {h.base_version})" if kind == DELTA else ""),
        f"issued     {format_instant(h.issued_at)}",
        f"expires    {format_instant(h.expires_at)}",
        f"signer     {h.signer}",
        f"signature  {verdict}",
        "sessions   "
        + (
            ", ".join(
                f"{s.id} ({s.name}) opens {format_instant(s.opens_at)}, {format_instant(s.starts_at)} to "
                f"{format_instant(s.ends_at)}"
                for s in h.sessions
            )
            or "none (always open)"
        ),
        "zones      " + (", ".join(f"{z.id} ({z.name})" for z in h.zones) or "none"),
        "ticket keys " + (", ".join(k.kid for k in h.ticket_keys) or "none (no signed tickets)"),
        "gates      " + (", ".join(f"{g.id} ({g.key.kid})" for g in h.gates) or "none"),
        f"revoked    {len(h.revoked)}",
        f"tickets    {h.tickets}: " + ", ".join(f"{n} {s}" for s, n in h.by_status.items()),
        f"codes      {h.codes} reference, {h.legacy} order-seat",
    ]
    print("\n".join(lines))


def cmd_manifest_apply(args: argparse.Namespace) -> int:
    """Apply a delta to its base and write the full manifest it produces."""
    trusted = _publics(args.pub)
    base = read_manifest(args.base, trusted)
    write_delta_result(base, args.delta, args.output, trusted)
    header = read_manifest(args.output, trusted).header
    print(f"wrote {args.output}: version {header.version}, expires {format_instant(header.expires_at)}")
    return 0


def cmd_ticket_issue(args: argparse.Namespace) -> int:
    """Sign a ticket, print its payload and write its QR image."""
    key = read_secret(args.key)
    if args.valid_from is not None and args.valid_until is not None and args.valid_from > args.valid_until:
        raise GateError("--valid-from is later than --valid-until: the ticket would never be valid")
    claims = TicketClaims(
        ticket_id=args.ticket_id,
        event_tag=event_tag(args.event),
        entries=args.entries,
        session=args.session or "",
        zone=args.zone or "",
        valid_from=args.valid_from,
        valid_until=args.valid_until,
    )
    try:
        payload = encode_signed(claims, key)
    except ValueError as exc:
        raise GateError(str(exc)) from None
    # The image first: a failed write must not leave a payload on stdout.
    for path in (args.png, args.svg):
        if path is not None:
            mode = write_qr(payload, path)
            print(f"wrote {path} (QR {mode} mode)", file=sys.stderr)
    if len(payload) > COMFORTABLE_PAYLOAD:
        print(f"note: payload is {len(payload)} characters; shorter ids keep the QR small", file=sys.stderr)
    print(payload)
    return 0


def _read_payload(text: str) -> str:
    if text != "-":
        return text
    if sys.stdin is None:
        raise GateError("PAYLOAD is '-' but there is no standard input to read it from")
    return sys.stdin.readline().rstrip("\r\n")


def cmd_decide(args: argparse.Namespace) -> int:
    """Print the decision a gate would make for a payload; records nothing."""
    payload = _read_payload(args.payload)
    manifest = _load_verified(args.manifest, _publics(args.pub), args.base)
    where = Checkpoint(zone=args.zone, session=args.session)
    problems = where.problems(manifest)
    if problems:
        raise GateError("; ".join(problems))
    now = args.at if args.at is not None else time.time()
    decision = evaluate(payload, manifest, where, now)
    print(json.dumps(decision.as_dict(), ensure_ascii=False))
    return EXIT_CODES[decision.outcome]


def _socket(args: argparse.Namespace) -> Path:
    return Path(args.socket) if args.socket else Path(os.environ.get("GATE_SOCKET") or DEFAULT_SOCKET)


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan PAYLOAD through the running gate: recorded, signalled, printed as JSON."""
    payload = _read_payload(args.payload)
    request: dict[str, Any] = {"op": "scan", "payload": payload, "kind": args.kind}
    if args.operator:
        request["operator"] = args.operator
    # Made here, so that a scan whose answer was lost can be retried without a second entry.
    request["scan_id"] = args.scan_id or str(uuid.uuid4())
    try:
        answer = ask(_socket(args), request)
    except GateError as exc:
        if "did not answer" not in str(exc) and "unreadable answer" not in str(exc):
            raise
        # The request went out: the scan may have been recorded.
        raise GateError(f"{exc}; retry with --scan-id {request['scan_id']} to get its answer") from None
    decision = answer["decision"]
    print(json.dumps(decision, ensure_ascii=False))
    return EXIT_CODES[Outcome(decision["outcome"])]


def cmd_status(args: argparse.Namespace) -> int:
    """Print the running gate's identity, manifest and counters."""
    status = ask(_socket(args), {"op": "status"})["status"]
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return 0
    where = "".join(f", {k} {status[k]}" for k in ("zone", "session") if status.get(k))
    up = format_span(status["uptime_seconds"])
    print(f"gate      {status['gate']} ({status['mode']}{where}), event {status['event']}")
    print(f"input     {status['input']}, signals {status['signals']}, up {up}")
    if status.get("problem"):
        print(f"SERVICE   OUT OF SERVICE: {status['problem']}")
    turnstile = status.get("turnstile")
    if turnstile:
        sensor = "passage sensor" if turnstile["passage_sensor"] else "no passage sensor"
        print(f"turnstile relay, {sensor}, {turnstile['pending']} admitted and not yet through")
        if turnstile.get("problem"):
            print(f"          {turnstile['problem']}")
    m = status["manifest"]
    if m["active"]:
        state = "EXPIRED" if m["expired"] else f"expires {m['expires_at']}"
        print(
            f"manifest  version {m['version']}, {m['tickets']} tickets, issued {m['issued_at']} "
            f"({format_span(m['age_seconds'])} ago), {state}"
        )
    else:
        print("manifest  NONE: out of service, every scan is denied (manifest_missing)")
    if "last_refusal" in m:
        r = m["last_refusal"]
        print(f"refused   {r['at']}: {r['reason']}: {r['detail']}")
    counters = status["counters"]
    outcomes = ", ".join(
        f"{name.split(':', 1)[1]} {value}" for name, value in counters.items() if name.startswith("outcome:")
    )
    print(f"scans     {counters.get('scans', 0)} ({outcomes or 'none yet'})")
    print(
        f"people    {counters.get('resolution:admitted', 0)} admitted, "
        f"{counters.get('resolution:exited', 0)} exits recorded"
    )
    passage = [
        f"{label} {counters[name]}"
        for name, label in (
            ("passage:passed", "passed"),
            ("passage:not_passed", "not passed (ticket given back)"),
            ("passage:unverified", "unverified"),
            ("passage:unreleased", "pushed through"),
            ("manual_releases", "released by hand"),
        )
        if counters.get(name)
    ]
    if passage:
        print(f"passage   {', '.join(passage)}")
    _print_replication(status.get("replication"))
    _print_upstream(status.get("upstream"), status.get("online"), status.get("clock"))
    return 0


def _print_upstream(
    sync: dict[str, Any] | None, online: dict[str, Any] | None, clock: dict[str, Any] | None
) -> None:
    """The central's lines of ``gatectl status``."""
    if sync is not None:
        state = "up" if sync["up"] else "DOWN"
        print(
            f"central   {sync['url']} {state}, {sync['pending']} records to send, "
            f"pull cursor {sync['cursor']}"
        )
        for name, loop in sync["loops"].items():
            if loop["error"]:
                print(f"          {name}: {loop['error']} ({loop['failures']} failures in a row)")
        if sync["download"]:
            done, total = sync["download"]["bytes"], sync["download"]["total"]
            print(f"          downloading a manifest: {done} of {total or '?'} bytes")
    if online is not None:
        switches = online["switches"]
        print(
            f"decision  online-first, now {online['mode'].upper()}; {switches['offline']} switches offline, "
            f"{format_span(online['offline_seconds'])} offline"
        )
    if clock is not None and clock.get("warning"):
        print(f"CLOCK     {clock['warning']}")


def cmd_search(args: argparse.Namespace) -> int:
    """Search the central's tickets through the running gate (a lost ticket, a typo)."""
    answer = ask(_socket(args), {"op": "search", "query": args.query, "limit": args.limit})
    results = answer["results"]
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0 if results else 1
    if not results:
        print(f"nothing matches {args.query!r}")
        return 1
    print(f"{'ticket':<20} {'order':<16} {'seat':<10} {'status':<10} {'match':<8} last check-in")
    for item in results:
        checkins = item.get("checkins") or []
        last = f"{checkins[0].get('kind')} at {checkins[0].get('gate')}" if checkins else "none"
        cells = [str(item.get(key) or "") for key in ("ticket_id", "order_id", "seat", "status", "match")]
        print(f"{cells[0]:<20} {cells[1]:<16} {cells[2]:<10} {cells[3]:<10} {cells[4]:<8} {last}")
    return 0


def _print_replication(state: dict[str, Any] | None) -> None:
    """The peer lines of ``gatectl status``."""
    if state is None:
        return
    print(f"peers     key {state['key']}, {state['logs']} logs held, {state['conflicts']} conflicts")
    if state.get("problem"):
        print(f"          NOT SHARING: {state['problem']}")
    for peer in state["peers"]:
        name = f"{peer['address']} ({peer['gate'] or '?'})"
        if peer["up"]:
            lag = (
                "never caught up"
                if peer["lag_seconds"] is None
                else f"caught up {peer['lag_seconds']:.1f} s ago"
            )
            print(f"          {name:<36} up, {lag}, pushed {peer['pushed']}, pulled {peer['pulled']}")
        else:
            print(f"          {name:<36} DOWN: {peer['last_error'] or 'not reached yet'}")


def cmd_counters(args: argparse.Namespace) -> int:
    """Print a gate's persisted counters: from the running gate, or from its ledger file."""
    if args.ledger is not None:
        counters = read_counters(args.ledger)
    else:
        counters = ask(_socket(args), {"op": "counters"})["counters"]
    if args.json:
        print(json.dumps(counters, indent=2, sort_keys=True))
    else:
        for name, value in sorted(counters.items()):
            print(f"{name:<32} {value}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print the double entries a gate recorded when records from other gates met its own."""
    if args.ledger is not None:
        conflicts = [conflict.as_dict() for conflict in read_conflicts(args.ledger)]
    else:
        conflicts = ask(_socket(args), {"op": "conflicts"})["conflicts"]
    if args.json:
        print(json.dumps(conflicts, indent=2))
        return 0
    if not conflicts:
        print("no conflicts: no ticket was admitted more often than it allows")
        return 0
    print(f"{'ticket':<20} {'stands (admitted first)':<40} {'conflict (admitted again)':<40}")
    for item in conflicts:
        stands, again = item["stands"], item["conflict"]
        first, second = f"{stands['gate']} {stands['at']}", f"{again['gate']} {again['at']}"
        print(f"{item['ticket_id']:<20} {first:<40} {second:<40}")
    print(f"{len(conflicts)} conflict{'s' if len(conflicts) != 1 else ''}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark and print its figures."""
    if args.suite == "gate":
        from gate_daemon.bench import gate

        return gate.run(args)
    if args.suite == "decode":
        from gate_daemon.bench import decode

        return decode.run(args)
    if args.suite == "peers":
        from gate_daemon.bench import peers

        return peers.run(args)
    if args.suite == "upstream":
        from gate_daemon.bench import upstream

        return upstream.run(args)
    from gate_daemon.bench import core

    return core.run(args)


def cmd_hwtest(args: argparse.Namespace) -> int:
    """Walk through the gate's lights, buzzer, relay, sensor, button, camera and scanner."""
    from gate_daemon.cli.hwtest import STEPS, run_hwtest
    from gate_daemon.config.load import load_pins_config

    steps = tuple(s.strip() for s in args.only.split(",")) if args.only else STEPS
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise GateError(f"--only: unknown step {', '.join(unknown)} (steps: {', '.join(STEPS)})")
    return run_hwtest(load_pins_config(args.config), steps, args.yes, args.wait)


# ------------------------------------------------------------------- parser


def parser() -> argparse.ArgumentParser:
    """The full command line."""
    top = argparse.ArgumentParser(
        prog="gatectl", description="The venue tech's tool for keys, manifests, tickets and decisions."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="make an Ed25519 key pair NAME.key / NAME.pub")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--dir", default=".", help="folder for the key files (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=cmd_keygen)

    man = sub.add_parser("manifest", help="build, verify, show or apply signed manifests")
    msub = man.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = msub.add_parser("build", help="build a signed manifest (or a delta with --base)")
    p.add_argument("--event", type=Path, required=True, help="event.toml")
    p.add_argument("--tickets", type=Path, required=True, help="tickets.csv")
    p.add_argument("--key", type=Path, required=True, help="signing key (.key)")
    p.add_argument("--version", type=_version, required=True, help="manifest version (only ever grows)")
    p.add_argument(
        "--expires", type=_instant, help="expiry, RFC 3339 (default: a day after the last session)"
    )
    p.add_argument("--base", type=Path, help="older manifest: write a delta from it")
    p.add_argument(
        "--base-pub",
        type=Path,
        action="append",
        default=[],
        help="key that signed --base, if not --key's own",
    )
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_manifest_build)

    def manifest_inputs(p: argparse.ArgumentParser, *, pub_required: bool) -> None:
        p.add_argument(
            "--pub",
            type=Path,
            action="append",
            required=pub_required,
            default=[],
            help="trusted signer public key (repeatable)",
        )
        p.add_argument("--base", type=Path, help="for a delta: the manifest it applies to")

    p = msub.add_parser("verify", help="exit 0 only for a valid, unexpired manifest from a trusted key")
    p.add_argument("file", type=Path)
    manifest_inputs(p, pub_required=True)
    p.add_argument(
        "--min-version",
        type=_min_version,
        default=0,
        help="refuse versions below this (the last one accepted)",
    )
    p.add_argument("--at", type=_instant, help="check expiry at this time instead of now")
    p.set_defaults(func=cmd_manifest_verify)

    p = msub.add_parser("show", help="print a manifest's header and counts")
    p.add_argument("file", type=Path)
    manifest_inputs(p, pub_required=False)
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(func=cmd_manifest_show)

    p = msub.add_parser("apply", help="apply a delta to its base, writing the full manifest")
    p.add_argument("delta", type=Path)
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--pub", type=Path, action="append", required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_manifest_apply)

    tick = sub.add_parser("ticket", help="issue signed tickets")
    tsub = tick.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tsub.add_parser("issue", help="sign a ticket: print the payload, write a QR image")
    p.add_argument("--key", type=Path, required=True, help="ticket signing key (.key)")
    p.add_argument("--event", required=True, help="event id")
    p.add_argument("--ticket-id", required=True)
    p.add_argument("--session")
    p.add_argument("--zone")
    p.add_argument("--entries", type=_entries, default=1, help="1..255 or 'reentry' (default 1)")
    p.add_argument("--valid-from", type=_instant)
    p.add_argument("--valid-until", type=_instant)
    image = p.add_mutually_exclusive_group()
    image.add_argument("--png", type=Path)
    image.add_argument("--svg", type=Path)
    p.set_defaults(func=cmd_ticket_issue)

    p = sub.add_parser("decide", help="what would a gate decide for PAYLOAD? (records nothing)")
    p.add_argument("payload", metavar="PAYLOAD", help="the QR payload, or - to read one line from stdin")
    p.add_argument("--manifest", type=Path, required=True)
    manifest_inputs(p, pub_required=True)
    p.add_argument("--at", type=_instant, help="decide as at this time (default: now)")
    p.add_argument("--zone", help="the gate's zone")
    p.add_argument("--session", help="pin the gate to one session")
    p.set_defaults(func=cmd_decide)

    def socket_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--socket",
            help=f"the gate's control socket (default: $GATE_SOCKET or {DEFAULT_SOCKET})",
        )

    p = sub.add_parser("scan", help="scan PAYLOAD through the running gate (recorded and signalled)")
    p.add_argument("payload", metavar="PAYLOAD", help="the QR payload, or - to read one line from stdin")
    socket_option(p)
    p.add_argument("--operator", help="who scans (default: your user name)")
    p.add_argument(
        "--exit",
        dest="kind",
        action="store_const",
        const="exit",
        default=None,
        help="record an exit (re-entry tickets) instead of the gate's own mode",
    )
    p.add_argument("--scan-id", help="a UUID that makes a retried scan idempotent")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("status", help="the running gate's identity, manifest and counters")
    socket_option(p)
    p.add_argument("--json", action="store_true", help="print the full status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("counters", help="a gate's persisted counters")
    socket_option(p)
    p.add_argument(
        "--ledger", type=Path, help="read them from this ledger file instead (works with the gate stopped)"
    )
    p.add_argument("--json", action="store_true", help="print them as one JSON object")
    p.set_defaults(func=cmd_counters)

    p = sub.add_parser(
        "search", help="search the central's tickets (ticket id, order id, seat; typos forgiven)"
    )
    p.add_argument("query", help="2 to 64 characters")
    p.add_argument("--limit", type=_positive, default=20, help="at most this many results (up to 50)")
    socket_option(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="reports from a gate's ledger")
    p.add_argument(
        "what", choices=["conflicts"], help="conflicts: tickets admitted at two gates that could not talk"
    )
    socket_option(p)
    p.add_argument(
        "--ledger", type=Path, help="read it from this ledger file instead (works with the gate stopped)"
    )
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="measure the gate's budgets")
    p.add_argument(
        "suite",
        choices=["core", "gate", "decode", "peers", "upstream"],
        help="core: decision and manifests; gate: committed scans; decode: QR decoders on camera frames; "
        "peers: gates sharing redemptions on loopback; upstream: the reference central (drain, online-first)",
    )
    p.add_argument("--sizes", default="100000,1000000", help="core: manifest sizes (comma separated)")
    p.add_argument(
        "--rounds",
        type=_positive,
        help="decisions, lookups or propagations to time (default: core 20000, gate 2000, peers 1000, "
        "upstream 500)",
    )
    p.add_argument("--workdir", type=Path, help="keep generated files here (default: a temp dir)")
    p.add_argument("--frames", type=_positive, help="decode: frames of each kind to decode (default 50)")
    p.add_argument("--gates", type=_positive, help="peers: gates sharing redemptions (default 5)")
    p.add_argument(
        "--records",
        type=_positive,
        help="peers: redemptions made apart, then shared (default 10000); upstream: to drain (default 50000)",
    )
    p.add_argument("--json", action="store_true", help="decode, peers, upstream: print the figures as JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "hwtest", help="walk through the gate's hardware (stop the gate first: it holds the pins)"
    )
    p.add_argument(
        "--config", type=Path, default=Path("/etc/gate-daemon/gate.toml"), help="the gate's config file"
    )
    p.add_argument(
        "--only", metavar="STEPS", help="comma-separated: lights,buzzer,relay,sensor,button,camera,scanner"
    )
    p.add_argument("--yes", action="store_true", help="answer yes to every question (the relay is released)")
    p.add_argument(
        "--wait", type=_positive, default=20, help="seconds to wait for the sensor, button or scanner"
    )
    p.set_defaults(func=cmd_hwtest)
    return top


def _check_text(args: argparse.Namespace) -> None:
    """Refuse argument text that is not valid Unicode (bytes the locale could not decode).

    A payload is exempt: the decision names it ``invalid_payload``, as a gate would.
    """
    for name, value in vars(args).items():
        if isinstance(value, str) and name != "payload":
            try:
                value.encode()
            except UnicodeEncodeError:
                flag = "--" + name.replace("_", "-")
                raise GateError(f"{flag} {value!r} is not valid text") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run gatectl; errors become one line on stderr and a non-zero exit."""
    args = parser().parse_args(argv)

    def act() -> int:
        _check_text(args)
        code: int = args.func(args)
        return code

    return run_command(act)


if __name__ == "__main__":
    sys.exit(main())
