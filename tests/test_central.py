"""The reference central over real HTTP on 127.0.0.1, a real SQLite file and signed requests.

Each test runs ``create_app`` for the live event (two roster gates) and talks to it the
way a gate does: challenges, ``sign_request`` headers, records signed by gate keys.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from pathlib import Path

from gate_daemon.core.delta import apply_delta
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import open_manifest, peek_header
from gate_daemon.core.records import parse_record
from gate_daemon.net.peer_auth import HEADER_CHALLENGE
from gate_daemon.store.central.checkin_book import read_report
from gate_daemon.store.manifest_file import read_manifest
from tests.central_fixtures import CentralWorld, make_central_world, serving
from tests.live import TICKETS_CSV


def _world(tmp_path: Path) -> CentralWorld:
    return make_central_world(tmp_path / "central")


async def test_challenge_names_the_central_and_is_the_only_unsigned_route(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        answer = await running.http.get("/v1/challenge")
        assert answer.status_code == 200 and "Date" in answer.headers
        body = answer.json()
        assert body["central"] == "test-central" and body["ttl_ms"] == 30_000 and body["challenge"]
        for path in ("/v1/checkins", "/v1/manifest", "/v1/participants?q=L-0001"):
            refused = await running.http.get(path)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unsigned"
            assert HEADER_CHALLENGE not in refused.headers  # challenges stay rate-limited


async def test_auth_refusals_are_named(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        unknown = await north.request("GET", "/v1/checkins", gate_id="west-9")
        assert (unknown.status_code, unknown.json()["error"]) == (403, "unknown_gate")
        forged = await north.request("GET", "/v1/checkins", key=SecretKey.generate())
        assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")
        assert HEADER_CHALLENGE not in forged.headers  # a forged request is not handed the next one
        north.challenge = "not-a-challenge"
        bad_nonce = await north.request("GET", "/v1/checkins")
        assert (bad_nonce.status_code, bad_nonce.json()["error"]) == (401, "bad_nonce")
        nonce = await north.fresh_challenge()
        north.challenge = nonce
        assert (await north.request("GET", "/v1/checkins")).status_code == 200
        north.challenge = nonce
        replayed = await north.request("GET", "/v1/checkins")
        assert (replayed.status_code, replayed.json()["error"]) == (401, "replayed")
        # The signature covers the query: a changed query is another request.
        north.challenge = await north.fresh_challenge()
        ok = await north.request("GET", "/v1/checkins?after=0&limit=5")
        assert ok.status_code == 200 and ok.headers[HEADER_CHALLENGE]


async def test_push_applies_then_answers_duplicate_for_the_same_batch(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        batch = [north.wire(north.record("L-0007")), north.wire(north.record("L-0008"))]
        first = await north.push(*batch)
        assert first.status_code == 200, first.text
        assert [r["status"] for r in first.json()["results"]] == ["applied", "applied"]
        assert [r["uuid"] for r in first.json()["results"]] == [b["uuid"] for b in batch]
        assert first.json()["cursor"] == 2
        again = await north.push(*batch)
        assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
        assert again.json()["cursor"] == 2
        assert read_report(world.config.database)["checkins"] == 2


async def test_a_double_entry_across_gates_is_stored_and_the_later_loses(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        # L-0002 (single entry): north admitted it first by the hybrid clock, south later.
        early = north.record("L-0002", hlc=1000 << 16)
        late = south.record("L-0002", hlc=2000 << 16)
        pushed = await north.push(early)
        assert pushed.json()["results"][0]["status"] == "applied"
        lost = (await south.push(late)).json()["results"][0]
        assert lost == {
            "uuid": late.uuid,
            "status": "conflict",
            "reason": "double_entry",
            "winner": early.uuid,
        }
        # L-0009 the other way round: the later entry arrives first, the earlier one wins.
        late9 = north.record("L-0009", hlc=3000 << 16)
        early9 = south.record("L-0009", hlc=2500 << 16)
        assert (await north.push(late9)).json()["results"][0]["status"] == "applied"
        assert (await south.push(early9)).json()["results"][0]["status"] == "applied"
        report = read_report(world.config.database)
        assert report["checkins"] == 4  # every record stored
        pairs = {(c["ticket_id"], c["loser"], c["winner"]) for c in report["conflicts"]}
        assert pairs == {("L-0002", late.uuid, early.uuid), ("L-0009", late9.uuid, early9.uuid)}
        # A three-entry ticket at both gates is no conflict.
        assert (await north.push(north.record("L-0007"))).json()["results"][0]["status"] == "applied"
        assert (await south.push(south.record("L-0007"))).json()["results"][0]["status"] == "applied"


async def test_push_rejects_bad_records_by_name(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        stored = north.record("L-0007")
        assert (await north.push(stored)).json()["results"][0]["status"] == "applied"
        bad_field = north.wire(north.record("L-0007"))
        bad_field["hlc"] = "soon"
        stranger = north.record("L-0007")
        unknown = stranger.wire(stranger.sign(north.key)) | {"origin": "west-9"}
        forged = north.record("L-0007")
        taken = north.record("L-0007", seq=stored.seq)
        void = north.record("L-0007", "void", voids=stored.uuid)
        void_again = north.record("L-0007", "void", voids=stored.uuid)
        answer = await north.push(
            bad_field, unknown, forged.wire(forged.sign(SecretKey.generate())), taken, void, void_again
        )
        results = answer.json()["results"]
        assert [(r["status"], r.get("reason")) for r in results] == [
            ("rejected", "bad_record"),
            ("rejected", "unknown_origin"),
            ("rejected", "bad_signature"),
            ("rejected", "seq_taken"),
            ("applied", None),
            ("rejected", "already_voided"),
        ]
        assert results[0]["detail"].startswith("hlc:") and results[0]["uuid"] == bad_field["uuid"]
        odd = await north.request("POST", "/v1/checkins", {"records": [7]})
        assert odd.json()["results"] == [
            {
                "uuid": None,
                "status": "rejected",
                "reason": "bad_record",
                "detail": "record: must be an object, found int",
            }
        ]


async def test_pull_pages_in_cursor_order(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        records = [north.record("L-0007"), south.record("L-0008"), north.record("L-0010")]
        records += [south.record("L-0005"), north.record("L-0006")]
        for record in records:
            gate = north if record.origin == "north-1" else south
            assert (await gate.push(record)).status_code == 200
        seen: list[str] = []
        cursors: list[int] = []
        after, more = 0, True
        while more:
            page = await south.request("GET", f"/v1/checkins?after={after}&limit=2")
            body = page.json()
            assert len(body["records"]) <= 2
            for item in body["records"]:
                record, signature = parse_record(item)
                assert record.signed_by(world.keys[record.origin].public, signature)
                seen.append(record.uuid)
            assert body["cursor"] >= after
            after, more = body["cursor"], body["more"]
            cursors.append(after)
        assert seen == [r.uuid for r in records]
        assert cursors == sorted(cursors) and cursors[-1] == 5
        empty = (await south.request("GET", "/v1/checkins?after=5")).json()
        assert empty == {"records": [], "cursor": 5, "more": False}
        for query in ("after=-1", "limit=0", "limit=501", "after=x", "after=1&after=2"):
            refused = await south.request("GET", f"/v1/checkins?{query}")
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request"), query


async def test_validate_decides_as_a_gate_and_is_idempotent(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        scan = str(uuidlib.uuid4())
        first = await north.validate("A100-2", scan)
        assert first.status_code == 200, first.text
        assert first.json()["uuid"] == scan
        assert first.json()["decision"]["outcome"] == "allow"
        assert first.json()["decision"]["ticket_id"] == "L-0002"
        again = await north.validate("A100-2", scan)
        assert again.json() == first.json()
        used = await south.validate("A100-2")
        assert used.json()["decision"]["outcome"] == "already_used"
        assert used.json()["decision"]["last_entry_gate"] == "north-1"
        reused = await north.validate("A100-9", scan)
        assert (reused.status_code, reused.json()["error"]) == (409, "uuid_reused")
        unknown = await north.validate("NOT-A-TICKET-AT-ALL")
        assert unknown.json()["decision"]["reason"] == "unknown_ticket"
        zone = await north.validate("A100-2", zone="roof")
        assert (zone.status_code, zone.json()["error"]) == (400, "bad_request")
        assert zone.json()["detail"].startswith("zone:")
        # Not servable until the gate's signed record arrives; then a duplicate, and pulled.
        assert (await south.request("GET", "/v1/checkins")).json()["records"] == []
        report = read_report(world.config.database)
        assert report["awaiting_signature"] == 1 and report["validations"] == 3
        signed = north.record("L-0002", uuid=scan, mode="online")
        pushed = (await north.push(signed)).json()
        assert pushed["results"][0]["status"] == "duplicate" and pushed["cursor"] == 1
        pulled = (await south.request("GET", "/v1/checkins")).json()
        assert [r["uuid"] for r in pulled["records"]] == [scan] and pulled["cursor"] == 1
        assert read_report(world.config.database)["awaiting_signature"] == 0
        assert (await north.push(signed)).json()["results"][0]["status"] == "duplicate"


async def test_a_validation_its_gate_did_not_admit_is_taken_back(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        scan = str(uuidlib.uuid4())
        assert (await north.validate("A100-2", scan)).json()["decision"]["outcome"] == "allow"
        # Only the gate that asked may take it back.
        other = await south.request("POST", "/v1/validate/release", {"uuid": scan})
        assert other.json() == {"uuid": scan, "released": False}
        taken = await north.request("POST", "/v1/validate/release", {"uuid": scan})
        assert taken.json() == {"uuid": scan, "released": True}
        assert read_report(world.config.database)["checkins"] == 0
        # The ticket is free again for the next gate, and a second release changes nothing.
        assert (await south.validate("A100-2")).json()["decision"]["outcome"] == "allow"
        again = await north.request("POST", "/v1/validate/release", {"uuid": scan})
        assert again.json() == {"uuid": scan, "released": False}
        # A check-in completed by its gate's signed record is never taken back.
        kept = str(uuidlib.uuid4())
        assert (await north.validate("A107-1", kept)).json()["decision"]["outcome"] == "allow"
        await north.push(north.record("L-0009", uuid=kept, mode="online"))
        refused = await north.request("POST", "/v1/validate/release", {"uuid": kept})
        assert refused.json() == {"uuid": kept, "released": False}
        for body in ({}, {"uuid": "nope"}, {"uuid": kept, "more": 1}):
            bad = await north.request("POST", "/v1/validate/release", body)
            assert (bad.status_code, bad.json()["error"]) == (400, "bad_request"), body


async def test_taking_back_a_double_entry_clears_its_conflict(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north, south = running.gates["north-1"], running.gates["south-1"]
        scan = str(uuidlib.uuid4())
        assert (await north.validate("A100-2", scan)).json()["decision"]["outcome"] == "allow"
        # South admitted the same ticket offline, earlier: its entry stands, the mark conflicts.
        earlier = south.record("L-0002", hlc=10)
        assert (await south.push(earlier)).json()["results"][0]["status"] == "applied"
        conflicts = read_report(world.config.database)["conflicts"]
        assert [(c["loser"], c["winner"]) for c in conflicts] == [(scan, earlier.uuid)]
        # North did not admit after all: with its mark taken back there is no double entry.
        assert (await north.request("POST", "/v1/validate/release", {"uuid": scan})).json()["released"]
        assert read_report(world.config.database)["conflicts"] == []
        assert read_report(world.config.database)["checkins"] == 1


async def test_validate_exit_and_reentry(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        assert (await north.validate("A106-1")).json()["decision"]["outcome"] == "allow"
        assert (await north.validate("A106-1")).json()["decision"]["outcome"] == "already_used"
        out = await north.validate("A106-1", kind="exit")
        assert out.json()["decision"]["reason"] == "ok"
        assert (await north.validate("A106-1")).json()["decision"]["outcome"] == "allow"


async def test_manifest_full_same_delta_and_gate_ahead(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        full = await north.request("GET", "/v1/manifest")
        assert full.status_code == 200
        assert full.headers["Content-Type"] == "application/octet-stream"
        assert (full.headers["Manifest-Version"], full.headers["Manifest-Kind"]) == ("1", "full")
        v1 = open_manifest(full.content, [world.live.signer.public])
        assert v1.version == 1 and len(v1) == 10
        same = await north.request("GET", "/v1/manifest?have=1")
        assert same.status_code == 304 and same.content == b"" and same.headers[HEADER_CHALLENGE]
        # tickets.csv changes: one ticket canceled, one added, one dropped.
        lines = TICKETS_CSV.replace("L-0009,A107,1,completed", "L-0009,A107,1,canceled").splitlines()
        lines = [line for line in lines if not line.startswith("L-0010")] + [
            "L-0011,A109,1,completed,now,floor,1,"
        ]
        world.tickets_path.write_text("\n".join(lines) + "\n")
        assert await running.central.book.refresh() is True
        assert await running.central.book.refresh(force=True) is False  # same content: no new version
        delta = await north.request("GET", "/v1/manifest?have=1")
        assert (delta.headers["Manifest-Version"], delta.headers["Manifest-Kind"]) == ("2", "delta")
        v2 = open_manifest(
            apply_delta(v1, delta.content, [world.live.signer.public]), [world.live.signer.public]
        )
        latest = running.central.book.latest
        assert latest is not None and v2.version == 2 and v2.body_sha256 == latest.body_sha256
        assert v2.find_ticket("L-0011") is not None
        assert str(v2.find_ticket("L-0009").status) == "canceled"  # type: ignore[union-attr]
        assert str(v2.find_ticket("L-0010").status) == "canceled"  # type: ignore[union-attr]  # tombstone
        cached = list((world.config.manifests_dir).glob("*.delta"))
        assert [p.name for p in cached] == ["1-2.delta"]
        again = await north.request("GET", "/v1/manifest?have=1")
        assert again.content == delta.content
        newest = await north.request("GET", "/v1/manifest?have=0")
        assert newest.headers["Manifest-Kind"] == "full"
        assert peek_header(newest.content)[1].version == 2
        ahead = await north.request("GET", "/v1/manifest?have=3")
        assert (ahead.status_code, ahead.json()["error"]) == (409, "gate_ahead")
        for query in ("have=-1", "have=x", "have=1.0"):
            refused = await north.request("GET", f"/v1/manifest?{query}")
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request"), query


async def test_versions_only_grow_across_restarts(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        assert running.central.book.latest is not None and running.central.book.latest.version == 1
    async with serving(world) as running:
        assert running.central.book.latest is not None and running.central.book.latest.version == 1
    world.tickets_path.write_text(TICKETS_CSV + "L-0012,A110,1,completed,,,1,\n")
    async with serving(world) as running:
        latest = running.central.book.latest
        assert latest is not None and latest.version == 2
        assert read_manifest(world.config.manifests_dir / "2.gdm", [world.live.signer.public]).version == 2


async def test_participants_search(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        await north.push(north.record("L-0002"))
        exact = (await north.request("GET", "/v1/participants?q=l-0002")).json()
        assert exact["query"] == "l-0002"
        top = exact["results"][0]
        assert (top["ticket_id"], top["match"], top["order_id"], top["seat"]) == (
            "L-0002",
            "exact",
            "A100",
            "2",
        )
        assert top["entries_allowed"] == 1 and top["status"] == "completed" and top["zone"] == "floor"
        assert [(c["kind"], c["gate"]) for c in top["checkins"]] == [("entry", "north-1")]
        prefix = (await north.request("GET", "/v1/participants?q=L-00&limit=3")).json()["results"]
        assert [r["match"] for r in prefix] == ["prefix"] * 3
        orders = (await north.request("GET", "/v1/participants?q=A100")).json()["results"]
        assert [(r["ticket_id"], r["match"]) for r in orders][:2] == [
            ("L-0001", "exact"),
            ("L-0002", "exact"),
        ]
        assert {r["match"] for r in orders[2:]} == {"close"}  # A101, A102, ...: one character away
        typo = (await north.request("GET", "/v1/participants?q=A1O3")).json()["results"]
        assert [(r["ticket_id"], r["match"]) for r in typo][:1] == [("L-0005", "close")]  # order A103
        spaced = await north.request("GET", "/v1/participants?q=L%20000")
        assert spaced.status_code == 200 and spaced.json()["query"] == "L 000"
        for query in ("q=x", "limit=5", "q=" + "x" * 65, "q=L-00&limit=51"):
            refused = await north.request("GET", f"/v1/participants?{query}")
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request"), query
            assert refused.json()["detail"].split(":")[0] in ("q", "limit")


async def test_heartbeat_is_kept_and_reported(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        beat = {"sent_at": 1.5e9, "counters": {"scans": 7, "conflicts": 0}, "status": {"mode": "offline"}}
        first = await north.request("POST", "/v1/heartbeat", beat)
        assert first.status_code == 200, first.text
        assert first.json()["manifest_version"] == 1 and first.json()["cursor"] == 0
        assert isinstance(first.json()["received_at"], float)
        beat["counters"] = {"scans": 9}
        await north.request("POST", "/v1/heartbeat", beat)
        report = read_report(world.config.database)
        (gate,) = report["gates"]
        assert (gate["gate"], gate["beats"], gate["counters"]) == ("north-1", 2, {"scans": 9})
        for body, field in (
            ({"sent_at": "now", "counters": {}, "status": {}}, "sent_at"),
            ({"sent_at": 1.0, "counters": {"a": 1.5}, "status": {}}, "counters.a"),
            ({"sent_at": 1.0, "counters": {}, "status": []}, "status"),
            ({"sent_at": 1.0, "counters": {}}, "status"),
            ({"sent_at": 1.0, "counters": {}, "status": {}, "extra": 1}, "extra"),
        ):
            refused = await north.request("POST", "/v1/heartbeat", body)
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request"), body
            assert refused.json()["detail"].startswith(field + ":"), refused.json()
        huge = {"sent_at": 1.0, "counters": {}, "status": {"pad": "x" * (64 << 10)}}
        too_large = await north.request("POST", "/v1/heartbeat", huge)
        assert (too_large.status_code, too_large.json()["error"]) == (413, "too_large")


async def test_garbage_bodies_get_named_errors(tmp_path: Path) -> None:
    world = _world(tmp_path)
    async with serving(world) as running:
        north = running.gates["north-1"]
        for raw, name in (
            (b"{not json", "not_json"),
            (b"\xff\xfe", "not_json"),
            (b"[1, 2]", "bad_request"),
            (b'{"records": "all"}', "bad_request"),
            (b'{"records": []}', "bad_request"),
            (b'{"records": [], "more": 1}', "bad_request"),
            (b'{"sent_at": NaN}', "not_json"),
        ):
            answer = await north.request("POST", "/v1/checkins", raw=raw)
            assert (answer.status_code, answer.json()["error"]) == (400, name), raw
            assert answer.headers[HEADER_CHALLENGE]
        many = await north.push(*[north.record("L-0007") for _ in range(501)])
        assert (many.status_code, many.json()["error"]) == (413, "too_large")
        big = b'{"records": ["' + b"x" * (1 << 20) + b'"]}'
        oversized = await north.request("POST", "/v1/checkins", raw=big)
        assert (oversized.status_code, oversized.json()["error"]) == (413, "too_large")
        for body, field in (
            ({"uuid": "nope", "payload": "A100-2", "kind": "entry"}, "uuid"),
            ({"uuid": str(uuidlib.uuid4()), "payload": 5, "kind": "entry"}, "payload"),
            ({"uuid": str(uuidlib.uuid4()), "payload": "x" * 4097, "kind": "entry"}, "payload"),
            ({"uuid": str(uuidlib.uuid4()), "payload": "A100-2", "kind": "void"}, "kind"),
            ({"uuid": str(uuidlib.uuid4()), "payload": "A100-2"}, "kind"),
            ({"uuid": str(uuidlib.uuid4()), "payload": "A100-2", "kind": "entry", "zone": 3}, "zone"),
        ):
            refused = await north.request("POST", "/v1/validate", body)
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request"), body
            assert refused.json()["detail"].startswith(field + ":")
        missing = await north.request("GET", "/v1/nowhere")
        assert missing.json()["error"] in ("not_found", "unsigned")
        wrong = await north.http.delete("/v1/checkins")
        assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_logs_never_carry_payloads(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    world = _world(tmp_path)
    secret = "REF-LIVE-FLOOR-000001"
    with caplog.at_level("DEBUG"):
        async with serving(world) as running:
            north = running.gates["north-1"]
            assert (await north.validate(secret)).json()["decision"]["outcome"] == "allow"
            await north.validate(secret, uuid=str(uuidlib.uuid4()), kind="bogus")
    assert secret not in caplog.text
    assert hashlib.sha256(b"x").hexdigest() not in caplog.text
