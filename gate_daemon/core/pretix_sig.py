"""pretix's signed tickets (``pretix_sig1``) and what a manifest says about a pretix event.

A ``pretix_sig1`` secret is ``reverse(base64(blob))`` (standard alphabet with padding, so
pretix's usual ones start with ``=``; the format does not promise it), where::

    u8    version   1
    u16   payload length (big-endian)
    u16   signature length (big-endian, 64)
    ...   payload: a protobuf ``Ticket`` message
    ...   signature: Ed25519 over the payload alone

and the payload's fields are ``1 seed (string)``, ``2 item``, ``3 variation``,
``4 subevent``, ``5 validFromUnixTime``, ``6 validUntilUnixTime`` (int64 varints; 0 or
absent means none). A valid signature says nothing about the ticket's status: pretix
revokes a secret (a canceled or re-keyed position) and blocks one through lists, which the
manifest carries as keyed hashes (``PretixEvent.revoked`` and ``blocked``).

Structure is checked here; the signature in ``core.decision``. A text that is not
structurally a signed secret is no error of the gate's: pretix's random generator makes
codes of any shape, so ``core.tokens.parse_payload`` reads it as a reference code.

The manifest's optional header keys for a pretix event (all absent in older manifests)::

    "pretix_keys": ["ed25519:..."],       # the event's valid_keys.pretix_sig1, as our key text
    "pretix_lists": {"<zone id>": {"list": 1, "all_products": true, "products": [12],
                                   "subevent": null, "entries": 1}},
    "pretix_subevents": {"<subevent id>": "<session id>"},
    "pretix_items": {"<item id>": "Day ticket"},
    "pretix_revoked": ["<hex code hash>"],  # core.tokens.code_hash of each revoked secret
    "pretix_blocked": ["<hex code hash>"]

``provision/pretix_manifest.py`` builds them from pretix's API answers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gate_daemon.core.keys import SIGNATURE_SIZE, PublicKey
from gate_daemon.core.ticket_record import Status, TicketEntry
from gate_daemon.core.tokens import PayloadError, code_hash

_VERSION = 1
_HEAD = 5
_MAX_VARINT = 10
_INT64 = 2**63
#: The protobuf field numbers of ``Ticket``.
_SEED, _ITEM, _VARIATION, _SUBEVENT, _VALID_FROM, _VALID_UNTIL = 1, 2, 3, 4, 5, 6
#: Ticket ids of pretix positions: ``px-`` and 16 hex digits of the secret's keyed hash.
TICKET_ID_PREFIX = "px-"


@dataclass(frozen=True, slots=True)
class Sig1Claims:
    """What a pretix_sig1 secret asserts (0 means none, as pretix writes it)."""

    seed: str
    item: int
    variation: int = 0
    subevent: int = 0
    valid_from: int = 0
    valid_until: int = 0


@dataclass(frozen=True, slots=True)
class Sig1Ticket:
    """A structurally valid pretix_sig1 secret, not yet verified."""

    text: str
    claims: Sig1Claims
    payload: bytes
    signature: bytes

    def verify(self, keys: tuple[PublicKey, ...]) -> bool:
        """Whether one of ``keys`` signed the payload (pretix signs it with no domain prefix)."""
        return any(k.verify(b"", self.payload, self.signature) for k in keys)


def parse_sig1(text: str) -> Sig1Ticket:
    """Read a pretix_sig1 secret's structure, or raise ``PayloadError`` saying why not."""
    try:
        blob = base64.b64decode(text[::-1], validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("pretix_sig1 secret is not base64") from None
    if len(blob) < _HEAD or blob[0] != _VERSION:
        raise PayloadError("pretix_sig1 secret has no version 1 header")
    payload_len = int.from_bytes(blob[1:3], "big")
    sig_len = int.from_bytes(blob[3:5], "big")
    if sig_len != SIGNATURE_SIZE or len(blob) != _HEAD + payload_len + sig_len:
        raise PayloadError("pretix_sig1 secret has inconsistent lengths")
    payload = blob[_HEAD : _HEAD + payload_len]
    return Sig1Ticket(text, _read_ticket(payload), payload, blob[_HEAD + payload_len :])


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(_MAX_VARINT):
        if pos >= len(data):
            raise PayloadError("pretix_sig1 payload ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            value &= 2**64 - 1
            return (value - 2**64 if value >= _INT64 else value), pos
    raise PayloadError("pretix_sig1 payload has a number longer than 10 bytes")


def _read_ticket(payload: bytes) -> Sig1Claims:
    """The protobuf ``Ticket`` fields; unknown fields are skipped as protobuf does."""
    ints = {_ITEM: 0, _VARIATION: 0, _SUBEVENT: 0, _VALID_FROM: 0, _VALID_UNTIL: 0}
    seed: str | None = None
    pos = 0
    while pos < len(payload):
        key, pos = _varint(payload, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(payload, pos)
            if field in ints:
                ints[field] = value
        elif wire == 2:
            size, pos = _varint(payload, pos)
            if size < 0 or pos + size > len(payload):
                raise PayloadError("pretix_sig1 payload has a field longer than itself")
            chunk, pos = payload[pos : pos + size], pos + size
            if field == _SEED:
                try:
                    seed = chunk.decode()
                except UnicodeDecodeError:
                    raise PayloadError("pretix_sig1 seed is not UTF-8") from None
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(payload):
                raise PayloadError("pretix_sig1 payload ends inside a field")
        else:
            raise PayloadError(f"pretix_sig1 payload has wire type {wire}")
        if (field in ints and wire != 0) or (field == _SEED and wire != 2) or field == 0:
            raise PayloadError(f"pretix_sig1 payload has field {field} of the wrong type")
    if not seed:
        raise PayloadError("pretix_sig1 payload has no seed")
    if any(v < 0 for v in ints.values()):
        raise PayloadError("pretix_sig1 payload has a negative number")
    return Sig1Claims(
        seed, ints[_ITEM], ints[_VARIATION], ints[_SUBEVENT], ints[_VALID_FROM], ints[_VALID_UNTIL]
    )


def ticket_id_for(event_id: str, secret: str) -> str:
    """The gates' ticket id of the pretix position with ``secret``: the same at every gate and the bridge.

    From the secret's keyed hash, so that an unlisted signed secret admitted offline and the
    same position listed by a later manifest are one ticket in the ledgers, and no ticket id
    gives its secret away.
    """
    return TICKET_ID_PREFIX + code_hash(event_id, secret)[:8].hex()


def key_from_pem(text: str) -> PublicKey:
    """A raw Ed25519 key from one of pretix's ``valid_keys.pretix_sig1`` entries.

    Each is base64 of a PEM SubjectPublicKeyInfo; the raw key is the last 32 bytes of the DER.
    """
    try:
        pem = base64.b64decode(text, validate=True).decode("ascii")
        body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("pretix key is not base64 of a PEM public key") from None
    if len(der) != 44 or not der.startswith(bytes.fromhex("302a300506032b6570032100")):
        raise ValueError("pretix key is not an Ed25519 SubjectPublicKeyInfo")
    return PublicKey(der[-32:])


@dataclass(frozen=True, slots=True)
class PretixList:
    """One zone as a pretix check-in list: which products and date it admits, and how often."""

    zone: str
    list_id: int
    all_products: bool
    products: frozenset[int]
    subevent: int | None
    entries: int

    def admits(self, item: int, subevent: int) -> bool:
        """Whether a ticket for ``item`` (on date ``subevent``, 0 for none) belongs on this list."""
        if self.subevent is not None and self.subevent != subevent:
            return False
        return self.all_products or item in self.products


@dataclass(frozen=True, slots=True)
class PretixEvent:
    """The manifest's pretix keys and rules: what the gate needs to decide signed secrets offline."""

    keys: tuple[PublicKey, ...]
    lists: tuple[PretixList, ...]
    subevents: dict[int, str]
    items: dict[int, str]
    revoked: frozenset[bytes]
    blocked: frozenset[bytes]

    def zones_for(self, item: int, subevent: int) -> tuple[str, ...]:
        """The zones whose lists admit this product on this date, in manifest order."""
        return tuple(x.zone for x in self.lists if x.admits(item, subevent))

    def entries_for(self, zones: tuple[str, ...]) -> int:
        """The entry policy of the first zone that admits a ticket (1 when none does)."""
        for x in self.lists:
            if x.zone in zones:
                return x.entries
        return 1

    def product_name(self, item: int) -> str:
        """A product's name for a steward, or its number."""
        return self.items.get(item, f"product {item}")


def parse_pretix_header(doc: dict[str, Any]) -> PretixEvent | None:
    """The pretix keys of a manifest header, or None when it has none (every older manifest)."""
    if "pretix_keys" not in doc:
        return None
    lists = tuple(
        PretixList(
            zone=str(zone),
            list_id=_count(rule["list"]),
            all_products=_flag(rule["all_products"]),
            products=frozenset(_count(p) for p in rule["products"]),
            subevent=None if rule.get("subevent") is None else _count(rule["subevent"]),
            entries=_count(rule.get("entries", 1)),
        )
        for zone, rule in doc.get("pretix_lists", {}).items()
    )
    return PretixEvent(
        keys=tuple(PublicKey.parse(k) for k in doc["pretix_keys"]),
        lists=lists,
        subevents={_count(int(k)): str(v) for k, v in doc.get("pretix_subevents", {}).items()},
        items={_count(int(k)): str(v) for k, v in doc.get("pretix_items", {}).items()},
        revoked=frozenset(bytes.fromhex(h) for h in doc.get("pretix_revoked", ())),
        blocked=frozenset(bytes.fromhex(h) for h in doc.get("pretix_blocked", ())),
    )


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PretixRead:
    """What the manifest makes of a pretix signed secret: a refusal by name, or the ticket's facts.

    ``refusal`` is a ``core.reasons.Reason`` value (``unknown_key``, ``bad_signature``,
    ``wrong_session``), empty when the secret is a ticket. ``entry`` is the position the
    manifest lists for it, None for a signed secret with no position behind it.
    """

    refusal: str = ""
    message: str = ""
    ticket_id: str = ""
    entry: TicketEntry | None = None
    status: Status = Status.COMPLETED
    session: str = ""
    zones: tuple[str, ...] = ()
    entries: int = 1
    product: str = ""
    valid_from: int | None = None
    valid_until: int | None = None
    revoked: bool = False


def read_pretix(
    text: str,
    event: PretixEvent,
    event_id: str,
    find_ticket: Callable[[str], TicketEntry | None],
) -> PretixRead | None:
    """Verify a pretix_sig1 secret against the manifest's pretix keys and map its claims.

    None when ``text`` is not structurally a signed secret: then it is a reference code.
    The position the manifest lists under the secret's ticket id is the fresher word on
    status, entries and session; the signed product, date and validity always apply.
    """
    try:
        ticket = parse_sig1(text)
    except PayloadError:
        return None
    if not event.keys:
        return PretixRead("unknown_key", "Ticket is a pretix ticket, and this event accepts none")
    if not ticket.verify(event.keys):
        return PretixRead(
            "bad_signature",
            "Ticket signature is not valid for this event (another event's, or a forged or damaged code)",
        )
    claims = ticket.claims
    digest = code_hash(event_id, text)
    ticket_id = ticket_id_for(event_id, text)
    session = event.subevents.get(claims.subevent, "") if claims.subevent else ""
    if claims.subevent and not session:
        return PretixRead("wrong_session", "Ticket is for a date this event does not have", ticket_id)
    zones = event.zones_for(claims.item, claims.subevent)
    entry = find_ticket(ticket_id)
    status = entry.status if entry is not None else Status.COMPLETED
    return PretixRead(
        ticket_id=ticket_id,
        entry=entry,
        status=Status.BLOCKED if digest in event.blocked else status,
        session=(entry.session if entry is not None and entry.session else session),
        zones=zones,
        entries=entry.entries if entry is not None else event.entries_for(zones),
        product=event.product_name(claims.item),
        valid_from=claims.valid_from or None,
        valid_until=claims.valid_until or None,
        revoked=digest in event.revoked,
    )
