"""The central's schema: its tables, as numbered migrations (``gate_daemon.store.migrations``).

Tables:

- ``checkins``: every record stored, keyed by ``uuid``. A record pushed by its origin
  carries its signature (``sig``) and a pull ``cursor``: the central's own counter,
  given once, in the transaction that makes the record servable. A record made by
  ``/v1/validate`` has neither (and no ``epoch``/``seq``, a provisional ``hlc`` from the
  central's clock) until the gate's signed record with the same uuid arrives and
  completes it. ``(origin, epoch, seq)`` and ``(voids, origin)`` are unique.
- ``conflicts``: double entries (``gate_daemon.core.conflicts.losers``): each losing
  entry with the entry that stands, recomputed for a ticket whenever its records change.
- ``validations``: every ``/v1/validate`` answer by uuid (denials too), with the calling
  gate and a digest of the payload (never the payload), for idempotent retries.
- ``gates``: per gate, the last heartbeat: when (central time), how many, its counters
  and status.
- ``manifests``: the versions built (the files are beside the database).
- ``meta``: ``created_at``.
- ``commands`` (migration 2): supervisors' signed commands taken by ``POST /v1/commands``,
  verified against the latest manifest, by nonce: the envelope as received, for the gate
  it names, until that gate's heartbeat acknowledges it (``acked_at``)
  (``gate_daemon.store.central.command_queue``).
- ``evidence`` (migration 3): the gates' evidence logs, uploaded: one row per scan at a
  gate, denials included (when, which device, who, the outcome, reason and resolution, the
  decision mode), keyed by (``gate``, ``uuid``): the gate that signed the upload and the
  scan's uuid, stored once (a resend is a duplicate). Keyed by the uploader, so a gate
  that uploads rows under another gate's scan uuids stores rows of its own and cannot make
  that gate's rows duplicates. Never the payload nor its fingerprint. ``received_at`` is
  the central's time.
- ``beats`` (migration 3): every heartbeat, not only the last: when (central time), the
  gate's decision route then (``online`` or ``offline``) and a few of its counters, for the
  incident report's offline periods and mode switches.
- ``enroll_tokens`` (enrollment): one-time tokens by the public half of their token key
  (never the secret): the gate id and zone they enroll, when they expire, when they were
  used or revoked. ``enrolled_gates``: the gates tokens enrolled, with their key, LAN
  address and zone; the manifest's roster is event.toml's ``[[gates]]`` and these
  (docs/ENROLL.md).
- ``pretix_*`` (one migration): the pretix bridge's copy of its event
  (``gate_daemon.store.central.pretix``): positions by pretix id with their secret, order
  status and item; revoked and blocked secrets; the bridge's cursors (``X-Page-Generated``
  of pretix, the upload's check-in cursor); each record's upload answer by uuid; and the
  check-ins other pretix devices made, learned as records (by pretix check-in id).
"""

from __future__ import annotations

from gate_daemon.store.redemptions import COLUMNS as RECORD_COLUMNS

MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE checkins (
    uuid        TEXT PRIMARY KEY,
    ticket_id   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('entry', 'exit', 'void')),
    slot        INTEGER,
    origin      TEXT NOT NULL,
    epoch       TEXT,
    seq         INTEGER,
    hlc         INTEGER NOT NULL,
    wall        REAL NOT NULL,
    operator    TEXT,
    mode        TEXT NOT NULL,
    forced      INTEGER NOT NULL DEFAULT 0,
    voids       TEXT,
    sig         TEXT,
    cursor      INTEGER UNIQUE,
    received_at REAL NOT NULL,
    UNIQUE (origin, epoch, seq),
    UNIQUE (voids, origin),
    CHECK ((sig IS NULL) = (cursor IS NULL))
);
CREATE INDEX checkins_ticket ON checkins (ticket_id);
CREATE TABLE conflicts (
    ticket_id   TEXT NOT NULL,
    loser       TEXT NOT NULL,
    winner      TEXT NOT NULL,
    detected_at REAL NOT NULL,
    PRIMARY KEY (ticket_id, loser)
);
CREATE TABLE validations (
    uuid        TEXT PRIMARY KEY,
    gate        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    decision    TEXT NOT NULL,
    decided_at  REAL NOT NULL
);
CREATE TABLE gates (
    gate_id   TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    beats     INTEGER NOT NULL,
    sent_at   REAL NOT NULL,
    counters  TEXT NOT NULL,
    status    TEXT NOT NULL
);
CREATE TABLE manifests (
    version     INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    body_sha256 TEXT NOT NULL,
    tickets     INTEGER NOT NULL,
    file        TEXT NOT NULL,
    built_at    REAL NOT NULL
);
INSERT INTO meta VALUES ('created_at', strftime('%s', 'now'));
""",
    """
CREATE TABLE commands (
    nonce       TEXT PRIMARY KEY,
    gate        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    supervisor  TEXT NOT NULL,
    issued_ms   INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    envelope    TEXT NOT NULL,
    received_at REAL NOT NULL,
    acked_at    REAL
);
CREATE INDEX commands_by_gate ON commands (gate, issued_ms);
""",
    # 3: dispute evidence and heartbeat history (docs/REPORTS.md).
    """
CREATE TABLE evidence (
    uuid             TEXT NOT NULL,
    gate             TEXT NOT NULL,
    hlc              INTEGER NOT NULL,
    wall             REAL NOT NULL,
    device           TEXT NOT NULL,
    operator         TEXT,
    ticket_id        TEXT,
    kind             TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    reason           TEXT NOT NULL,
    resolution       TEXT NOT NULL,
    mode             TEXT NOT NULL,
    manifest_version INTEGER,
    received_at      REAL NOT NULL,
    PRIMARY KEY (gate, uuid)
);
CREATE INDEX evidence_ticket ON evidence (ticket_id);
CREATE INDEX evidence_wall ON evidence (wall);
CREATE TABLE beats (
    gate     TEXT NOT NULL,
    at       REAL NOT NULL,
    sent_at  REAL NOT NULL,
    mode     TEXT NOT NULL,
    scans    INTEGER NOT NULL,
    offline  INTEGER NOT NULL,
    pending  INTEGER
);
CREATE INDEX beats_at ON beats (at);
""",
    # enrollment: one-time tokens and the gates they enrolled (docs/ENROLL.md).
    """
CREATE TABLE enroll_tokens (
    token_key   TEXT PRIMARY KEY,
    gate        TEXT NOT NULL,
    zone        TEXT,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    used_at     REAL,
    revoked_at  REAL
);
CREATE TABLE enrolled_gates (
    id          TEXT PRIMARY KEY,
    pub         TEXT NOT NULL,
    addr        TEXT NOT NULL,
    zone        TEXT,
    joined_at   REAL NOT NULL,
    token_key   TEXT NOT NULL
);
""",
    # 5: a supervisor's forced entry names the scan it overrode: {"scan", "outcome", "reason"} as JSON.
    """
ALTER TABLE evidence ADD COLUMN overrides TEXT;
""",
    # The pretix bridge (docs/PRETIX.md).
    """
CREATE TABLE pretix_positions (
    position_id INTEGER PRIMARY KEY,
    ticket_id   TEXT NOT NULL UNIQUE,
    secret      TEXT NOT NULL,
    order_code  TEXT NOT NULL,
    status      TEXT NOT NULL,
    item        INTEGER NOT NULL,
    subevent    INTEGER,
    name        TEXT NOT NULL
);
CREATE INDEX pretix_positions_secret ON pretix_positions (secret);
CREATE TABLE pretix_secrets (
    secret TEXT PRIMARY KEY,
    state  TEXT NOT NULL CHECK (state IN ('revoked', 'blocked')),
    ref    TEXT NOT NULL
);
CREATE TABLE pretix_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pretix_uploads (
    uuid    TEXT PRIMARY KEY,
    status  TEXT NOT NULL,
    reason  TEXT,
    sent_at REAL NOT NULL
);
CREATE TABLE pretix_learned (
    checkin_id INTEGER PRIMARY KEY,
    uuid       TEXT NOT NULL UNIQUE
);
""",
)
#: The schema version this code writes and reads (``PRAGMA user_version``).
SCHEMA_VERSION = len(MIGRATIONS)

#: A check-in's columns: a record's (``store.redemptions.COLUMNS``), its signature and cursor.
COLUMNS = f"{RECORD_COLUMNS}, sig, cursor"
