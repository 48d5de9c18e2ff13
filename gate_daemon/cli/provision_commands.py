"""``gatectl keygen``, ``manifest``, ``ticket issue`` and ``decide``: work on files, no gate needed.

The venue tech makes keys, builds and checks signed manifests, signs tickets, and asks
what a gate would decide, all from files on their own machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gate_daemon.cli.command_line import (
    EXIT_CODES,
    entries,
    instant,
    min_version,
    payload_argument,
    positive,
    read_payload,
    version,
)
from gate_daemon.core.decision import Checkpoint, evaluate
from gate_daemon.core.keys import PublicKey, SecretKey
from gate_daemon.core.manifest import (
    DELTA,
    MAX_HEAD,
    Manifest,
    check_fresh,
    check_successor,
    open_manifest,
    peek_header,
)
from gate_daemon.core.manifest_header import Header
from gate_daemon.core.rotating import DEFAULT_PERIOD, DEFAULT_TOLERANCE, MAX_TOLERANCE
from gate_daemon.core.times import format_instant
from gate_daemon.core.tokens import TicketClaims, encode_signed, event_tag
from gate_daemon.errors import GateError, ManifestRefused
from gate_daemon.files import open_regular, write_atomic
from gate_daemon.gate.manifest_watch import check_gate
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.holder import HolderPage, issue_rotating
from gate_daemon.provision.keyfiles import read_public, read_secret, write_keypair
from gate_daemon.provision.qrimage import write_qr
from gate_daemon.provision.tickets import load_tickets
from gate_daemon.store.manifest_file import (
    apply_delta_file,
    read_manifest,
    read_signed_header,
    write_delta_result,
)

#: Payloads up to this length fit a version-7 QR at error level M, which phones and the
#: Pi camera read comfortably; longer ones still work but print larger.
COMFORTABLE_PAYLOAD = 160


def _publics(paths: Sequence[Path]) -> list[PublicKey]:
    return [read_public(p) for p in paths]


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
    """Exit 0 only for a manifest a gate would take: the gate's checks, in its order, by hand."""
    trusted = _publics(args.pub)
    held = _held_header(args.same_as, trusted) if args.same_as is not None else None
    manifest = _load_verified(args.file, trusted, args.base)
    now = args.at if args.at is not None else time.time()
    check_fresh(manifest, now)
    check_successor(manifest, args.min_version)
    if held is not None:
        check_successor(manifest, held.version, held.body_sha256)
    # Without --event, any event passes: the checkpoint is still checked.
    check_gate(manifest, args.event or manifest.event_id, Checkpoint(zone=args.zone, session=args.session))
    h = manifest.header
    print(
        f"ok: {h.event_id} version {h.version}, {h.tickets} tickets, signed by {h.signer}, "
        f"expires {format_instant(h.expires_at)}"
    )
    if held is not None and held.version == h.version:
        print(f"note: the very manifest of {args.same_as}: a gate holding it keeps it, nothing changes")
    return 0


def _held_header(path: Path, trusted: list[PublicKey]) -> Header:
    """The signed header of the manifest a gate holds (``--same-as``): its version and body digest."""
    try:
        return read_signed_header(path, trusted)
    except ManifestRefused as exc:
        # Said apart from the file being checked, whose refusals are ManifestRefused.
        raise GateError(f"--same-as {path} cannot be used: {exc}") from None


def cmd_manifest_show(args: argparse.Namespace) -> int:
    """Describe a manifest; verified when --pub is given."""
    if args.pub:
        header = _load_verified(args.file, _publics(args.pub), args.base).header
        verdict = "good (verified with the given key)"
        kind = b"F"
    else:
        try:
            with open_regular(args.file) as handle:
                head = handle.read(MAX_HEAD)  # the header is all that is shown
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
        "supervisors " + (", ".join(f"{s.id} ({s.key.kid})" for s in h.supervisors) or "none (no commands)"),
        f"revoked    {len(h.revoked)}"
        + (f", {len(h.revoked_holders)} rotating certificates" if h.revoked_holders else ""),
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
    if args.rotating or args.html is not None:
        return _issue_rotating(args, claims, key)
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


def _issue_rotating(args: argparse.Namespace, claims: TicketClaims, key: SecretKey) -> int:
    """``--rotating --html PAGE``: certify a fresh holder key; the page is the only copy of it."""
    if not args.rotating or args.html is None:
        raise GateError("a rotating ticket needs both --rotating and --html PAGE (the holder's page)")
    if args.png is not None or args.svg is not None:
        raise GateError("a rotating ticket has no fixed image: its page draws the code (--html)")
    name, tolerance = _page_event(args)
    page = HolderPage(
        event_name=name,
        seat=args.seat or "",
        session=args.session or "",
        zone=args.zone or "",
        issued_at=int(time.time()),
        tolerance=tolerance,
    )
    issued = issue_rotating(claims, key, args.period, page, args.html)
    print(
        f"wrote {args.html} (mode 0600: it holds the holder key; give it to the holder only)", file=sys.stderr
    )
    print(f"certificate {issued.certificate_id}")
    return 0


def _page_event(args: argparse.Namespace) -> tuple[str, int]:
    """The page's event name and the event's ``rotating_tolerance``: the options, else event.toml.

    The page tells its holder how close their clock must be to the gate's, and warns by it;
    the gates take the tolerance from the signed manifest, built from the same event.toml.
    """
    name, tolerance = args.event_name, args.tolerance
    if args.event_file is not None:
        spec = load_event(args.event_file)
        if spec.event_id != args.event:
            raise GateError(f"{args.event_file} is event {spec.event_id!r}, not --event {args.event!r}")
        if tolerance is not None and tolerance != spec.rotating_tolerance:
            raise GateError(
                f"--tolerance {tolerance} differs from rotating_tolerance = {spec.rotating_tolerance} "
                f"in {args.event_file}: the gates use the file's"
            )
        name, tolerance = name or spec.name, spec.rotating_tolerance
    if tolerance is None:
        print(
            f"note: the page assumes the default tolerance ({DEFAULT_TOLERANCE} step); "
            "give --event-file event.toml (or --tolerance) if the event sets rotating_tolerance",
            file=sys.stderr,
        )
        tolerance = DEFAULT_TOLERANCE
    return name or args.event, tolerance


def cmd_decide(args: argparse.Namespace) -> int:
    """Print the decision a gate would make for a payload; records nothing."""
    payload = read_payload(args.payload)
    manifest = _load_verified(args.manifest, _publics(args.pub), args.base)
    where = Checkpoint(zone=args.zone, session=args.session)
    problems = where.problems(manifest)
    if problems:
        raise GateError("; ".join(problems))
    now = args.at if args.at is not None else time.time()
    decision = evaluate(payload, manifest, where, now)
    print(json.dumps(decision.as_dict(), ensure_ascii=False))
    return EXIT_CODES[decision.outcome]


# ------------------------------------------------------------------- parser


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keygen``, ``manifest``, ``ticket`` and ``decide`` to gatectl's commands."""
    p = sub.add_parser("keygen", help="make an Ed25519 key pair NAME.key / NAME.pub")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--dir", default=".", help="folder for the key files (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=cmd_keygen)

    _add_manifest(sub)

    tick = sub.add_parser("ticket", help="issue signed tickets")
    tsub = tick.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tsub.add_parser("issue", help="sign a ticket: print the payload, write a QR image")
    p.add_argument("--key", type=Path, required=True, help="ticket signing key (.key)")
    p.add_argument("--event", required=True, help="event id")
    p.add_argument("--ticket-id", required=True)
    p.add_argument("--session")
    p.add_argument("--zone")
    p.add_argument("--entries", type=entries, default=1, help="1..255 or 'reentry' (default 1)")
    p.add_argument("--valid-from", type=instant)
    p.add_argument("--valid-until", type=instant)
    image = p.add_mutually_exclusive_group()
    image.add_argument("--png", type=Path)
    image.add_argument("--svg", type=Path)
    _rotating_options(p)
    p.set_defaults(func=cmd_ticket_issue)

    p = sub.add_parser("decide", help="what would a gate decide for PAYLOAD? (records nothing)")
    payload_argument(p)
    p.add_argument("--manifest", type=Path, required=True)
    _manifest_inputs(p, pub_required=True)
    p.add_argument("--at", type=instant, help="decide as at this time (default: now)")
    p.add_argument("--zone", help="the gate's zone")
    p.add_argument("--session", help="pin the gate to one session")
    p.set_defaults(func=cmd_decide)


def _add_manifest(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    man = sub.add_parser("manifest", help="build, verify, show or apply signed manifests")
    msub = man.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = msub.add_parser("build", help="build a signed manifest (or a delta with --base)")
    p.add_argument("--event", type=Path, required=True, help="event.toml")
    p.add_argument("--tickets", type=Path, required=True, help="tickets.csv")
    p.add_argument("--key", type=Path, required=True, help="signing key (.key)")
    p.add_argument("--version", type=version, required=True, help="manifest version (only ever grows)")
    p.add_argument("--expires", type=instant, help="expiry, RFC 3339 (default: a day after the last session)")
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

    p = msub.add_parser(
        "verify", help="exit 0 only for a manifest a gate would take (key, expiry, version, event, place)"
    )
    p.add_argument("file", type=Path)
    _manifest_inputs(p, pub_required=True)
    p.add_argument("--at", type=instant, help="check expiry at this time instead of now")
    p.add_argument(
        "--min-version",
        type=min_version,
        default=0,
        help="refuse versions below this (rollback); it knows no digest, so see --same-as",
    )
    p.add_argument(
        "--same-as",
        type=Path,
        metavar="FILE",
        help="the manifest the gate holds (its state_dir/manifest.active): refuse an older version, "
        "or the same version with other content (rollback), as the gate does",
    )
    p.add_argument("--event", help="the gate's event id: refuse another event's manifest (wrong_event)")
    p.add_argument("--zone", help="the gate's zone: refuse a manifest without it (wrong_checkpoint)")
    p.add_argument("--session", help="the gate's session, if pinned: as --zone")
    p.set_defaults(func=cmd_manifest_verify)

    p = msub.add_parser("show", help="print a manifest's header and counts")
    p.add_argument("file", type=Path)
    _manifest_inputs(p, pub_required=False)
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(func=cmd_manifest_show)

    p = msub.add_parser("apply", help="apply a delta to its base, writing the full manifest")
    p.add_argument("delta", type=Path)
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--pub", type=Path, action="append", required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_manifest_apply)


def _manifest_inputs(p: argparse.ArgumentParser, *, pub_required: bool) -> None:
    """The trusted keys and, for a delta, its base: how a command reads a manifest."""
    p.add_argument(
        "--pub",
        type=Path,
        action="append",
        required=pub_required,
        default=[],
        help="trusted signer public key (repeatable)",
    )
    p.add_argument("--base", type=Path, help="for a delta: the manifest it applies to")


def period(text: str) -> int:
    """Seconds a rotating code lasts: 1..255."""
    value = positive(text)
    if value > 255:
        raise argparse.ArgumentTypeError(f"{text} seconds is longer than 255")
    return value


def tolerance(text: str) -> int:
    """Steps either side of the gate's a rotating code is accepted in: 0..20."""
    if not text.isascii() or not text.isdigit() or int(text) > MAX_TOLERANCE:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 0 to {MAX_TOLERANCE}")
    return int(text)


def _rotating_options(p: argparse.ArgumentParser) -> None:
    """``ticket issue --rotating``: a holder-bound code that changes every period (docs/ROTATING.md)."""
    p.add_argument(
        "--rotating", action="store_true", help="a rotating holder-bound ticket (prints its certificate id)"
    )
    p.add_argument("--html", type=Path, metavar="PAGE", help="with --rotating: write the holder's page here")
    p.add_argument(
        "--period", type=period, default=DEFAULT_PERIOD, help="seconds a rotating code lasts (default 15)"
    )
    p.add_argument(
        "--event-file",
        type=Path,
        metavar="EVENT_TOML",
        help="with --rotating: the event.toml the manifest is built from (its rotating_tolerance and name)",
    )
    p.add_argument(
        "--tolerance",
        type=tolerance,
        help="with --rotating and no --event-file: the event's rotating_tolerance (steps either side, 0..20)",
    )
    p.add_argument("--event-name", help="the event's name on the holder's page (default: --event)")
    p.add_argument("--seat", help="the seat shown on the holder's page")
