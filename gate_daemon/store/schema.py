"""The ledger's schema, as numbered migrations applied in order.

``PRAGMA user_version`` holds the number of migrations applied. Each migration runs in
one transaction with the version bump, so a crash leaves the database at a whole
version. A database newer than this code is refused, never downgraded.

Tables:

- ``meta``: one value per key: the database's ``epoch`` (a random id made when the file
  is created; a reset database gets a new one, so peers re-read it from the start), the
  ``gate_id`` it belongs to, the active manifest's version, digest and issue time.
- ``redemptions``: every entry, exit and void that happened, here or (later) learned from
  peers and the server. ``(origin, epoch, seq)`` is the key and orders each origin's
  records; ``uuid`` is made at scan time and makes records idempotent; ``hlc`` orders
  everything.
  ``slot`` numbers a ticket's entries (and exits) per origin: the unique index on
  ``(ticket_id, kind, slot, origin)`` is what refuses a second admission on the same
  facts, whatever race or retry produced it. Forced entries carry no slot. A ``void``
  record (``voids`` names the redemption's uuid) takes back an entry or exit that did
  not happen after all: the person let through never passed the turnstile. The voided
  row stays, and so does its slot: the next admission takes the slot after it.
- ``scans``: the evidence log. One row per scan, denials included: when, where, who,
  a fingerprint of the payload (never the payload), the outcome and reason, how it was
  resolved and the decision as shown. Keyed by the scan's uuid (``WITHOUT ROWID``: the
  key is the table), with no secondary index, because every index is one more page
  written and fsynced per scan, and the log is searched the morning after, not during
  the rush. ``ORDER BY hlc`` gives the order of events.
- ``cursors``: what this gate holds of each origin's log (each ``origin, epoch``):
  ``seq`` is the end of the unbroken run from 1 (what a pull asks to continue after),
  ``held`` the highest seq held (a push can arrive ahead of a gap). Written in the
  transaction that stores the records learned.
- ``refused_records``: verified records from peers that the rules above refused (the
  same sequence number, slot or void as a different record of their origin), with the
  reason and the record as received: evidence for the organiser, and how an origin's
  log moves past them.
- ``conflicts``: double entries found among the records (see
  ``gate_daemon.core.conflicts``): each losing entry's uuid with the winner's, per
  ticket. Recomputed for a ticket whenever its records change, so every gate holding
  the same records holds the same rows.
- ``counters``: named totals that survive restarts.
- ``upstream_acks`` (migration 5): how far the central server has answered for each
  origin log this gate sends it (``origin, epoch`` -> ``seq``); every answer is final
  (applied, duplicate, conflict or rejected), so the log moves on past it.
- ``upstream_rejections`` (migration 5): records the central refused for good, with its
  reason: evidence, never sent again. ``meta`` keys ``upstream_after`` (the central's
  pull cursor reached) and ``time_floor`` (the latest time this gate knows has passed); and
  (migration 6) ``latest_scan_ms`` and ``latest_scan_hlc``, the latest scan's time and
  stamp, kept by the scan's own statement (``gate_daemon.store.time_evidence``).
- ``scan_commits``: not a table but the one statement a scan commits through. Inserting a
  row into this view runs a trigger that writes the redemption (when the row says so,
  numbered next in this gate's sequence: by the file itself until migration 3, by the
  ledger since (it signs what it numbers; the primary key still refuses a reused
  number)), the evidence row, the counters and (since migration 6) the latest scan's
  marks in ``meta``: one statement, so one atomic, fsynced
  transaction and one trip to the database thread. A redemption refused by the unique index aborts
  the whole statement, evidence and counters included.
- ``lane`` (migration 7): the last supervisor command applied of each kind (``lane``,
  ``mode``, ``message``): the lane's state survives a restart, and a command older than
  the one applied is refused (``gate_daemon.store.lane``).
- ``occupancy``, ``capacity_grants``, ``capacity_asks`` (the capacity migration): people in
  and out per scope (``*`` the venue, or a zone id) and origin gate, kept by triggers on
  ``scans`` in the scan's own statement for this gate's scans and by the learner for
  records from elsewhere; places granted between gates in strict mode, and this gate's
  asks still unanswered (``gate_daemon.store.occupancy``, docs/CAPACITY.md).
- ``commands`` (migration 7): the evidence log of supervisor commands, applied and refused:
  who (the supervisor the command names), what, when it was issued and received, by which
  path, and the outcome. A nonce is applied at most once (a partial unique index).
"""

from __future__ import annotations

#: The one statement a scan commits through (see the module docstring).
_SCAN_COMMITS = """
    CREATE VIEW scan_commits AS SELECT
        NULL AS uuid, NULL AS hlc, NULL AS wall, NULL AS gate, NULL AS device, NULL AS operator,
        NULL AS fingerprint, NULL AS ticket_id, NULL AS kind, NULL AS outcome, NULL AS reason,
        NULL AS resolution, NULL AS mode, NULL AS manifest_version, NULL AS decision,
        NULL AS redeem, NULL AS slot, NULL AS origin, NULL AS epoch, NULL AS forced, NULL AS counters;

    CREATE TRIGGER scan_commits_insert INSTEAD OF INSERT ON scan_commits
    BEGIN
        INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator,
                                 mode, forced)
            SELECT NEW.uuid, NEW.ticket_id, NEW.kind, NEW.slot, NEW.origin, NEW.epoch,
                   (SELECT COALESCE(MAX(seq), 0) + 1 FROM redemptions
                     WHERE origin = NEW.origin AND epoch = NEW.epoch),
                   NEW.hlc, NEW.wall, NEW.operator, NEW.mode, NEW.forced
            WHERE NEW.redeem;
        INSERT INTO scans (uuid, hlc, wall, gate, device, operator, fingerprint, ticket_id, kind, outcome,
                           reason, resolution, mode, manifest_version, decision)
            VALUES (NEW.uuid, NEW.hlc, NEW.wall, NEW.gate, NEW.device, NEW.operator, NEW.fingerprint,
                    NEW.ticket_id, NEW.kind, NEW.outcome, NEW.reason, NEW.resolution, NEW.mode,
                    NEW.manifest_version, NEW.decision);
        INSERT INTO counters (name, value)
            SELECT value, 1 FROM json_each(NEW.counters) WHERE true
            ON CONFLICT (name) DO UPDATE SET value = value + 1;
    END;
"""

#: Migration 3's version: the scan names its redemption's sequence number itself.
_SCAN_COMMITS_3 = """
    CREATE VIEW scan_commits AS SELECT
        NULL AS uuid, NULL AS hlc, NULL AS wall, NULL AS gate, NULL AS device, NULL AS operator,
        NULL AS fingerprint, NULL AS ticket_id, NULL AS kind, NULL AS outcome, NULL AS reason,
        NULL AS resolution, NULL AS mode, NULL AS manifest_version, NULL AS decision,
        NULL AS redeem, NULL AS slot, NULL AS origin, NULL AS epoch, NULL AS seq, NULL AS forced,
        NULL AS counters;

    CREATE TRIGGER scan_commits_insert INSTEAD OF INSERT ON scan_commits
    BEGIN
        INSERT INTO redemptions (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator,
                                 mode, forced)
            SELECT NEW.uuid, NEW.ticket_id, NEW.kind, NEW.slot, NEW.origin, NEW.epoch, NEW.seq,
                   NEW.hlc, NEW.wall, NEW.operator, NEW.mode, NEW.forced
            WHERE NEW.redeem;
        INSERT INTO scans (uuid, hlc, wall, gate, device, operator, fingerprint, ticket_id, kind, outcome,
                           reason, resolution, mode, manifest_version, decision)
            VALUES (NEW.uuid, NEW.hlc, NEW.wall, NEW.gate, NEW.device, NEW.operator, NEW.fingerprint,
                    NEW.ticket_id, NEW.kind, NEW.outcome, NEW.reason, NEW.resolution, NEW.mode,
                    NEW.manifest_version, NEW.decision);
        INSERT INTO counters (name, value)
            SELECT value, 1 FROM json_each(NEW.counters) WHERE true
            ON CONFLICT (name) DO UPDATE SET value = value + 1;
    END;
"""

#: Migration 6's version: the scan also keeps the latest scan's time and stamp in ``meta``
#: (milliseconds cut down, so the kept time is never later than the scan's).
_SCAN_COMMITS_6 = _SCAN_COMMITS_3.replace(
    "    END;\n",
    """        INSERT INTO meta (key, value) VALUES ('latest_scan_ms', CAST(NEW.wall * 1000 AS INTEGER))
            ON CONFLICT (key) DO UPDATE
            SET value = max(CAST(value AS INTEGER), CAST(NEW.wall * 1000 AS INTEGER));
        INSERT INTO meta (key, value) VALUES ('latest_scan_hlc', NEW.hlc)
            ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), NEW.hlc);
    END;
""",
)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE redemptions (
        uuid      TEXT NOT NULL UNIQUE,
        ticket_id TEXT NOT NULL,
        kind      TEXT NOT NULL CHECK (kind IN ('entry', 'exit')),
        slot      INTEGER CHECK (slot IS NULL OR slot >= 1),
        origin    TEXT NOT NULL,
        epoch     TEXT NOT NULL,
        seq       INTEGER NOT NULL CHECK (seq >= 1),
        hlc       INTEGER NOT NULL,
        wall      REAL NOT NULL,
        operator  TEXT,
        mode      TEXT NOT NULL CHECK (mode IN ('offline', 'online')),
        forced    INTEGER NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
        PRIMARY KEY (origin, epoch, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX redemptions_policy ON redemptions (ticket_id, kind, slot, origin);

    CREATE TABLE scans (
        uuid             TEXT PRIMARY KEY,
        hlc              INTEGER NOT NULL,
        wall             REAL NOT NULL,
        gate             TEXT NOT NULL,
        device           TEXT NOT NULL,
        operator         TEXT,
        fingerprint      TEXT NOT NULL,
        ticket_id        TEXT,
        kind             TEXT NOT NULL CHECK (kind IN ('entry', 'exit')),
        outcome          TEXT NOT NULL,
        reason           TEXT NOT NULL,
        resolution       TEXT NOT NULL,
        mode             TEXT NOT NULL CHECK (mode IN ('offline', 'online')),
        manifest_version INTEGER,
        decision         TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE cursors (
        source     TEXT PRIMARY KEY,
        epoch      TEXT NOT NULL,
        position   INTEGER NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;

    """
    + _SCAN_COMMITS,
    # 2: a redemption can be voided (the person let through never passed the turnstile).
    # A void is a record of its own, kind 'void', naming the redemption it voids, so it
    # travels in the origin's sequence like any other record. SQLite cannot change a
    # CHECK constraint in place: the table is rebuilt, and the view's trigger with it.
    """
    DROP TRIGGER scan_commits_insert;
    DROP VIEW scan_commits;
    CREATE TABLE redemptions_2 (
        uuid      TEXT NOT NULL UNIQUE,
        ticket_id TEXT NOT NULL,
        kind      TEXT NOT NULL CHECK (kind IN ('entry', 'exit', 'void')),
        slot      INTEGER CHECK (slot IS NULL OR slot >= 1),
        origin    TEXT NOT NULL,
        epoch     TEXT NOT NULL,
        seq       INTEGER NOT NULL CHECK (seq >= 1),
        hlc       INTEGER NOT NULL,
        wall      REAL NOT NULL,
        operator  TEXT,
        mode      TEXT NOT NULL CHECK (mode IN ('offline', 'online')),
        forced    INTEGER NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
        voids     TEXT UNIQUE CHECK ((kind = 'void') = (voids IS NOT NULL)),
        PRIMARY KEY (origin, epoch, seq)
    ) WITHOUT ROWID;
    INSERT INTO redemptions_2 (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator, mode,
                               forced)
        SELECT uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator, mode, forced
          FROM redemptions;
    DROP TABLE redemptions;
    ALTER TABLE redemptions_2 RENAME TO redemptions;
    CREATE UNIQUE INDEX redemptions_policy ON redemptions (ticket_id, kind, slot, origin);
    """  # noqa: S608 (constants only)
    + _SCAN_COMMITS,
    # 3: replication. Records learned from peers keep their origin's signature (``sig``;
    # NULL for this gate's own, signed as they leave). A gate whose database was reset
    # numbers a new epoch from slot 1 again, so the policy index includes the epoch.
    # ``cursors`` had no rows yet: it is remade per origin log. The ledger now numbers
    # its own records (it must know the number it signs).
    """
    DROP TRIGGER scan_commits_insert;
    DROP VIEW scan_commits;
    ALTER TABLE redemptions ADD COLUMN sig TEXT;
    DROP INDEX redemptions_policy;
    CREATE UNIQUE INDEX redemptions_policy ON redemptions (ticket_id, kind, slot, origin, epoch);
    DROP TABLE cursors;
    CREATE TABLE cursors (
        origin     TEXT NOT NULL,
        epoch      TEXT NOT NULL,
        seq        INTEGER NOT NULL CHECK (seq >= 0),
        held       INTEGER NOT NULL CHECK (held >= seq),
        updated_at REAL NOT NULL,
        PRIMARY KEY (origin, epoch)
    ) WITHOUT ROWID;
    CREATE TABLE conflicts (
        ticket_id   TEXT NOT NULL,
        loser       TEXT NOT NULL,
        winner      TEXT NOT NULL,
        detected_at REAL NOT NULL,
        PRIMARY KEY (ticket_id, loser)
    ) WITHOUT ROWID;
    """
    + _SCAN_COMMITS_3,
    # 4: a void names the record it takes back, and only the origin of that record can
    # take it back. Uniqueness was on ``voids`` alone, so another gate's void (ignored
    # by every rule) arriving first would have blocked the genuine one: it is now per
    # ``(voids, origin)``. And records refused by these rules are kept as evidence in
    # ``refused_records``, so the origin's log moves past them.
    """
    DROP TRIGGER scan_commits_insert;
    DROP VIEW scan_commits;
    CREATE TABLE redemptions_4 (
        uuid      TEXT NOT NULL UNIQUE,
        ticket_id TEXT NOT NULL,
        kind      TEXT NOT NULL CHECK (kind IN ('entry', 'exit', 'void')),
        slot      INTEGER CHECK (slot IS NULL OR slot >= 1),
        origin    TEXT NOT NULL,
        epoch     TEXT NOT NULL,
        seq       INTEGER NOT NULL CHECK (seq >= 1),
        hlc       INTEGER NOT NULL,
        wall      REAL NOT NULL,
        operator  TEXT,
        mode      TEXT NOT NULL CHECK (mode IN ('offline', 'online')),
        forced    INTEGER NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
        voids     TEXT CHECK ((kind = 'void') = (voids IS NOT NULL)),
        sig       TEXT,
        PRIMARY KEY (origin, epoch, seq),
        UNIQUE (voids, origin)
    ) WITHOUT ROWID;
    INSERT INTO redemptions_4 (uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator, mode,
                               forced, voids, sig)
        SELECT uuid, ticket_id, kind, slot, origin, epoch, seq, hlc, wall, operator, mode, forced, voids, sig
          FROM redemptions;
    DROP TABLE redemptions;
    ALTER TABLE redemptions_4 RENAME TO redemptions;
    CREATE UNIQUE INDEX redemptions_policy ON redemptions (ticket_id, kind, slot, origin, epoch);
    CREATE TABLE refused_records (
        uuid        TEXT PRIMARY KEY,
        origin      TEXT NOT NULL,
        epoch       TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        record      TEXT NOT NULL,
        received_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX refused_records_log ON refused_records (origin, epoch, seq);
    """  # noqa: S608 (constants only)
    + _SCAN_COMMITS_3,
    # 5: what the central server has answered for, per origin log, and what it refused.
    """
    CREATE TABLE upstream_acks (
        origin     TEXT NOT NULL,
        epoch      TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (origin, epoch)
    ) WITHOUT ROWID;
    CREATE TABLE upstream_rejections (
        uuid        TEXT PRIMARY KEY,
        origin      TEXT NOT NULL,
        epoch       TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        detail      TEXT NOT NULL,
        rejected_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6: the scan's statement keeps the latest scan's time (milliseconds, cut down) and
    # hybrid-clock stamp in ``meta``, so a start reads two rows, not the whole evidence log:
    # the time floor counts what this gate saw, and the hybrid clock resumes after its last
    # stamp. Seeded once from the log as it stands.
    """
    DROP TRIGGER scan_commits_insert;
    DROP VIEW scan_commits;
    INSERT INTO meta (key, value)
        SELECT 'latest_scan_ms', CAST(wall * 1000 AS INTEGER) FROM (SELECT MAX(wall) AS wall FROM scans)
         WHERE wall IS NOT NULL;
    INSERT INTO meta (key, value)
        SELECT 'latest_scan_hlc', hlc FROM (SELECT MAX(hlc) AS hlc FROM scans) WHERE hlc IS NOT NULL;
    """  # noqa: S608 (constants only)
    + _SCAN_COMMITS_6,
    # 7: supervisor commands: the lane's state, and the evidence log of commands.
    """
    CREATE TABLE IF NOT EXISTS lane (
        kind       TEXT PRIMARY KEY CHECK (kind IN ('lane', 'mode', 'message')),
        value      TEXT NOT NULL,
        supervisor TEXT NOT NULL,
        issued_ms  INTEGER NOT NULL,
        nonce      TEXT NOT NULL,
        applied_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS commands (
        id          INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        via         TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        supervisor  TEXT,
        gate        TEXT,
        kind        TEXT,
        value       TEXT,
        issued_ms   INTEGER,
        nonce       TEXT,
        digest      TEXT,
        detail      TEXT NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS commands_applied ON commands (nonce) WHERE outcome = 'applied';
    """,
    # 8: a supervised lane's held allows (gate_daemon.store.lane): written before the scan
    # commits, settled when confirmed (by which device) or voided; one still open at start
    # was held when the gate died, and is voided then.
    """
    CREATE TABLE IF NOT EXISTS held (
        scan_id TEXT PRIMARY KEY,
        held_ms INTEGER NOT NULL,
        outcome TEXT CHECK (outcome IS NULL OR outcome IN ('confirmed', 'not_confirmed')),
        device  TEXT,
        done_ms INTEGER
    ) WITHOUT ROWID;
    """,
    # capacity (docs/CAPACITY.md): who is inside per scope and origin, kept by this gate's
    # scans (triggers on ``scans``: the scan's own statement, and a void's update) and by
    # the learner; seeded from what the file holds (learned records count for the venue
    # only: their zones are the manifest's, which SQL cannot read), once: run again, it
    # keeps the counts it finds. Places granted between gates in strict mode, and this
    # gate's asks not yet answered. A supervisor's forced entry (``overridden``) counts as an entry.
    """
    CREATE TABLE IF NOT EXISTS occupancy (
        scope   TEXT NOT NULL,
        origin  TEXT NOT NULL,
        entries INTEGER NOT NULL,
        exits   INTEGER NOT NULL,
        PRIMARY KEY (scope, origin)
    ) WITHOUT ROWID;
    INSERT INTO occupancy (scope, origin, entries, exits)
        SELECT scope, origin, SUM(kind = 'entry'), SUM(kind = 'exit') FROM (
            SELECT '*' AS scope, gate AS origin, kind FROM scans
             WHERE resolution IN ('admitted', 'exited', 'overridden')
            UNION ALL
            SELECT json_extract(decision, '$.zone'), gate, kind FROM scans
             WHERE resolution IN ('admitted', 'exited', 'overridden')
               AND json_extract(decision, '$.zone') IS NOT NULL
            UNION ALL
            SELECT '*', origin, kind FROM redemptions AS r
             WHERE origin NOT IN (SELECT value FROM meta WHERE key = 'gate_id') AND kind != 'void'
               AND NOT EXISTS (SELECT 1 FROM redemptions WHERE voids = r.uuid AND origin = r.origin)
        ) WHERE NOT EXISTS (SELECT 1 FROM occupancy) GROUP BY scope, origin;
    CREATE TRIGGER IF NOT EXISTS occupancy_scan AFTER INSERT ON scans
        WHEN NEW.resolution IN ('admitted', 'exited', 'overridden')
    BEGIN
        INSERT INTO occupancy (scope, origin, entries, exits)
            SELECT scope, NEW.gate, NEW.kind = 'entry', NEW.kind = 'exit'
              FROM (SELECT '*' AS scope UNION ALL SELECT json_extract(NEW.decision, '$.zone'))
             WHERE scope IS NOT NULL
            ON CONFLICT (scope, origin) DO UPDATE
            SET entries = entries + excluded.entries, exits = exits + excluded.exits;
    END;
    CREATE TRIGGER IF NOT EXISTS occupancy_void AFTER UPDATE OF resolution ON scans
        WHEN OLD.resolution IN ('admitted', 'exited', 'overridden')
         AND NEW.resolution NOT IN ('admitted', 'exited', 'overridden')
    BEGIN
        UPDATE occupancy SET entries = entries - (OLD.kind = 'entry'), exits = exits - (OLD.kind = 'exit')
         WHERE origin = OLD.gate AND (scope = '*' OR scope = json_extract(OLD.decision, '$.zone'));
    END;
    CREATE TABLE IF NOT EXISTS capacity_grants (
        uuid     TEXT PRIMARY KEY,
        scope    TEXT NOT NULL,
        giver    TEXT NOT NULL,
        receiver TEXT NOT NULL,
        places   INTEGER NOT NULL CHECK (places >= 0),
        made_ms  INTEGER NOT NULL,
        sig      TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS capacity_asks (
        uuid        TEXT PRIMARY KEY,
        scope       TEXT NOT NULL,
        peer        TEXT NOT NULL,
        want        INTEGER NOT NULL,
        urgent      INTEGER NOT NULL,
        asked_ms    INTEGER NOT NULL,
        answered_ms INTEGER
    ) WITHOUT ROWID;
    """,
)
