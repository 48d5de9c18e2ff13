"""The peer routes of the LAN API over real HTTP on 127.0.0.1: signed pushes and pulls, every refusal
by name with nothing stored, records judged one by one, and never a 5xx for bad input; and a peer
link, their client, signing on the challenges they hand out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from gate_daemon.core.hlc import Stamp
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest, open_manifest
from gate_daemon.core.records import Redemption, parse_record
from gate_daemon.net.lan import MAX_BODY, LanServer, create_app
from gate_daemon.net.lan_transport import AiohttpTransport
from gate_daemon.net.peer_auth import HEADER_CHALLENGE, HEADER_NONCE, Challenges, sign_request
from gate_daemon.net.peers import KEEPALIVE, LINK_CONNECTIONS, Peer, PeerError
from gate_daemon.net.replication import MAX_BATCH, Replication
from gate_daemon.provision.keyfiles import read_secret
from gate_daemon.store.ledger import Ledger
from tests.live import LiveWorld, make_live_world
from tests.support import admit

GATES = ("gate-a", "gate-b", "gate-c")
PUSH = "/v1/redemptions"
PULL = "/v1/redemptions/pull"


async def no_status() -> dict[str, Any]:
    return {}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def error(self) -> str | None:
        return self.body.get("error")


@dataclass
class Rig:
    """Gate-a serving its LAN API, and what the test needs to talk to it as other gates."""

    world: LiveWorld
    ledger: Ledger
    replication: Replication
    server: LanServer
    http: aiohttp.ClientSession
    keys: dict[str, SecretKey]
    manifest: list[Manifest | None]
    #: The next challenge each calling gate holds (from the last answer).
    challenges: dict[str, str] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def raw(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        async with self.http.request(method, self.url(path), data=data, headers=headers or {}) as response:
            text = await response.read()
            body = json.loads(text) if response.content_type == "application/json" else {}
            return Reply(response.status, body, dict(response.headers))

    async def challenge(self) -> str:
        reply = await self.raw("GET", "/v1/challenge")
        assert reply.status == 200, reply
        assert reply.body["gate"] == "gate-a" and reply.body["ttl_ms"] == 30_000
        return str(reply.body["challenge"])

    def headers(
        self, gate: str, path: str, data: bytes, nonce: str, *, key: SecretKey | None = None
    ) -> dict[str, str]:
        signing = key or self.keys.get(gate) or SecretKey.generate()
        headers = sign_request(signing, gate, "POST", path, data, nonce, 1_795_000_000_000)
        headers["Content-Type"] = "application/json"
        return headers

    async def signed(
        self, gate: str, path: str, body: object, *, key: SecretKey | None = None, raw: bytes | None = None
    ) -> Reply:
        """A POST signed as ``gate`` (with its own key unless ``key``), with the challenge it holds."""
        nonce = self.challenges.pop(gate, None) or await self.challenge()
        data = raw if raw is not None else json.dumps(body).encode()
        reply = await self.raw("POST", path, data, self.headers(gate, path, data, nonce, key=key))
        if HEADER_CHALLENGE in reply.headers:
            self.challenges[gate] = reply.headers[HEADER_CHALLENGE]
        return reply

    def record(
        self, origin: str, ticket: str, *, key: SecretKey | None = None, **changes: Any
    ) -> dict[str, Any]:
        """A record of ``origin``'s log in wire form, signed by ``origin`` (or by ``key``)."""
        seq = self.seqs.get(origin, 0) + 1
        self.seqs[origin] = seq
        values: dict[str, Any] = {
            "uuid": str(uuidlib.uuid4()),
            "ticket_id": ticket,
            "kind": "entry",
            "slot": 1,
            "origin": origin,
            "epoch": f"epoch-{origin}",
            "seq": seq,
            "hlc": Stamp(int(self.world.now * 1000) + seq, 0).packed,
            "wall": self.world.now,
            "operator": None,
            "mode": "offline",
        }
        values.update(changes)
        record = Redemption(**values)
        return record.wire(record.sign(key or self.keys[origin]))

    async def stored(self) -> list[str]:
        """The uuids of every record in gate-a's ledger, in no order."""
        found, _ = await self.ledger.records_after({}, 10_000)
        return sorted(r.uuid for r, _ in found)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, rate: int = 20) -> AsyncIterator[Rig]:
    world = make_live_world(tmp_path / "world", gates=GATES)
    keys = {gate: read_secret(path) for gate, path in world.gate_keys.items()}
    current: list[Manifest | None] = [open_manifest(world.manifest(1), [world.signer.public])]
    ledger = await Ledger.open(tmp_path / "a.sqlite", "gate-a")
    replication = Replication(ledger, keys["gate-a"], lambda: current[0])
    server = LanServer(create_app(no_status, rate=rate, replication=replication))
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            yield Rig(world, ledger, replication, server, http, keys, current)
    finally:
        await server.aclose()
        await ledger.close()


# ------------------------------------------------------------------ what works


async def test_a_signed_push_is_applied_and_answered_with_the_next_challenge(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        records = [rig.record("gate-b", "L-0001"), rig.record("gate-b", "L-0002")]
        reply = await rig.signed("gate-b", PUSH, {"records": records})
        assert reply.status == 200
        assert reply.body == {"applied": 2, "duplicates": 0, "refused": []}
        assert HEADER_CHALLENGE in reply.headers
        assert await rig.stored() == sorted(r["uuid"] for r in records)
        facts = await rig.ledger.facts("L-0001")
        assert (facts.entries, facts.last_entry_gate) == (1, "gate-b")
        # The same records again: duplicates, a success.
        again = await rig.signed("gate-b", PUSH, {"records": records})
        assert again.status == 200 and again.body == {"applied": 0, "duplicates": 2, "refused": []}
        seen = rig.replication.callers["gate-b"]
        assert seen.requests == 2


async def test_requests_chain_on_the_challenge_each_answer_carries(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        first = await rig.challenge()
        rig.challenges["gate-b"] = first
        for n in range(5):
            path, body = (PUSH, {"records": [rig.record("gate-b", f"L-000{n + 1}")]}) if n % 2 else (PULL, {})
            held = rig.challenges["gate-b"]
            reply = await rig.signed("gate-b", path, body)
            assert reply.status == 200, reply
            assert rig.challenges["gate-b"] != held  # a new one each time
        assert len(await rig.stored()) == 2


async def test_a_pull_serves_what_the_caller_lacks(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        own = [await admit(rig.ledger, f"L-000{n}", wall=rig.world.now + n) for n in (1, 2, 3)]
        relayed = [rig.record("gate-c", "L-0007"), rig.record("gate-c", "L-0008")]
        assert (await rig.signed("gate-c", PUSH, {"records": relayed})).body["applied"] == 2
        own_log = {"origin": "gate-a", "epoch": rig.ledger.epoch}
        reply = await rig.signed("gate-b", PULL, {"known": [{**own_log, "seq": 1}], "limit": 10})
        assert reply.status == 200 and reply.body["more"] is False
        served = reply.body["records"]
        assert [(r["origin"], r["seq"]) for r in served if r["origin"] == "gate-a"] == [
            ("gate-a", 2),
            ("gate-a", 3),
        ]
        assert [r["uuid"] for r in served if r["origin"] == "gate-c"] == [r["uuid"] for r in relayed]
        # Gate-a's own are signed by gate-a as they leave; gate-c's keep gate-c's signature.
        roster = rig.replication.roster()
        assert roster is not None
        for item in served:
            record = Redemption(**{k: v for k, v in item.items() if k != "sig"})
            assert record.signed_by(roster[record.origin], item["sig"])
            if record.origin == "gate-a":
                assert record in own
        # A page at a time.
        page = await rig.signed("gate-b", PULL, {"limit": 2})
        assert len(page.body["records"]) == 2 and page.body["more"] is True
        # Nothing beyond what the caller holds.
        everything = [{**own_log, "seq": 3}, {"origin": "gate-c", "epoch": "epoch-gate-c", "seq": 2}]
        done = await rig.signed("gate-b", PULL, {"known": everything})
        assert done.body == {"records": [], "more": False}


async def test_a_pull_ahead_of_this_gate_is_answered_with_nothing(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        await admit(rig.ledger, "L-0001", wall=rig.world.now)
        ahead = [{"origin": "gate-a", "epoch": rig.ledger.epoch, "seq": 10**30}]
        reply = await rig.signed("gate-b", PULL, {"known": ahead})
        assert (reply.status, reply.body) == (200, {"records": [], "more": False})


# ------------------------------------------------------------------ refusals: nothing applied


async def test_a_forged_request_is_refused_and_spends_its_challenge(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        nonce = await rig.challenge()
        data = json.dumps({"records": [rig.record("gate-b", "L-0001")]}).encode()
        forged = rig.headers("gate-b", PUSH, data, nonce, key=rig.keys["gate-c"])
        reply = await rig.raw("POST", PUSH, data, forged)
        assert (reply.status, reply.error) == (401, "bad_signature")
        assert HEADER_CHALLENGE not in reply.headers
        genuine = rig.headers("gate-b", PUSH, data, nonce)
        retry = await rig.raw("POST", PUSH, data, genuine)
        assert (retry.status, retry.error) == (401, "replayed")
        assert await rig.stored() == []
        assert rig.replication.refusals == {"bad_signature": 1, "replayed": 1}
        assert "gate-b" not in rig.replication.callers


async def test_a_replayed_request_is_refused(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        nonce = await rig.challenge()
        data = json.dumps({"records": [rig.record("gate-b", "L-0001")]}).encode()
        headers = rig.headers("gate-b", PUSH, data, nonce)
        assert (await rig.raw("POST", PUSH, data, headers)).status == 200
        counters = await rig.ledger.counters()
        replay = await rig.raw("POST", PUSH, data, headers)
        assert (replay.status, replay.error) == (401, "replayed")
        assert await rig.ledger.counters() == counters
        assert len(await rig.stored()) == 1


async def test_a_recorded_request_sent_to_another_gate_is_refused(tmp_path: Path) -> None:
    async with serving(tmp_path / "one") as rig, serving(tmp_path / "two") as other:
        nonce = await rig.challenge()
        data = json.dumps({"records": []}).encode()
        headers = rig.headers("gate-b", PUSH, data, nonce)
        # The other gate has its own challenges: one from here is foreign there (as after a restart).
        reply = await other.raw("POST", PUSH, data, headers)
        assert (reply.status, reply.error) == (401, "bad_nonce")


@pytest.mark.parametrize("path", [PUSH, PULL])
async def test_an_unsigned_request_is_refused(tmp_path: Path, path: str) -> None:
    async with serving(tmp_path) as rig:
        body = {"records": [rig.record("gate-b", "L-0001")]} if path == PUSH else {}
        reply = await rig.raw("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        assert (reply.status, reply.error) == (401, "unsigned")
        partly = rig.headers("gate-b", path, b"{}", await rig.challenge())
        del partly["Gate-Signature"]
        reply = await rig.raw("POST", path, b"{}", partly)
        assert (reply.status, reply.error) == (401, "unsigned")
        assert await rig.stored() == []


async def test_a_gate_not_in_the_roster_is_forbidden(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        stranger = SecretKey.generate()
        record = rig.record("gate-x", "L-0001", key=stranger)
        reply = await rig.signed("gate-x", PUSH, {"records": [record]}, key=stranger)
        assert (reply.status, reply.error) == (403, "unknown_gate")
        assert "gate-x" in reply.body["detail"]
        assert await rig.stored() == []


async def test_a_revoked_gate_is_refused_from_the_next_manifest_on(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        assert (await rig.signed("gate-c", PUSH, {"records": [rig.record("gate-c", "L-0001")]})).status == 200
        # Version 2 of the manifest drops gate-c from the roster (its Pi was stolen).
        event = dataclasses.replace(
            rig.world.event, gates=tuple(g for g in rig.world.event.gates if g.id != "gate-c")
        )
        v2 = dataclasses.replace(rig.world, event=event).manifest(2)
        rig.manifest[0] = open_manifest(v2, [rig.world.signer.public])
        pushed = await rig.signed("gate-c", PUSH, {"records": [rig.record("gate-c", "L-0002")]})
        assert (pushed.status, pushed.error) == (403, "unknown_gate")
        pulled = await rig.signed("gate-c", PULL, {})
        assert (pulled.status, pulled.error) == (403, "unknown_gate")
        # Its records relayed by a gate still trusted are not believed either.
        relayed = rig.record("gate-c", "L-0003")
        reply = await rig.signed("gate-b", PUSH, {"records": [relayed, rig.record("gate-b", "L-0004")]})
        assert reply.status == 200 and reply.body["applied"] == 1
        assert reply.body["refused"] == [
            {
                "uuid": relayed["uuid"],
                "error": "unknown_origin",
                "detail": "gate 'gate-c' is not in the roster",
            }
        ]
        assert len(await rig.stored()) == 2  # gate-c's first record, from before, and gate-b's
        # And they are not passed on: a peer could not verify them.
        served = await rig.signed("gate-b", PULL, {})
        assert served.status == 200 and {r["origin"] for r in served.body["records"]} == {"gate-b"}


async def test_without_a_manifest_no_peer_is_known(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        rig.manifest[0] = None
        reply = await rig.signed("gate-b", PUSH, {"records": [rig.record("gate-b", "L-0001")]})
        assert (reply.status, reply.error) == (503, "no_roster")
        assert await rig.stored() == []


# ------------------------------------------------------------------ records judged one by one


async def test_each_record_of_a_genuine_push_is_judged_alone(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        good = [rig.record("gate-b", "L-0001"), rig.record("gate-b", "L-0002")]
        # gate-b relays a record "of gate-c" it made itself: gate-c never signed it.
        forged = rig.record("gate-c", "L-0005", key=rig.keys["gate-b"])
        stranger = rig.record("gate-x", "L-0006", key=SecretKey.generate())
        broken = {**rig.record("gate-b", "L-0007"), "slot": 0}
        tampered = {**rig.record("gate-c", "L-0009"), "ticket_id": "L-0010"}
        reply = await rig.signed(
            "gate-b", PUSH, {"records": [good[0], forged, stranger, broken, tampered, good[1]]}
        )
        assert reply.status == 200
        assert reply.body["applied"] == 2
        refused = {item["uuid"]: (item["error"], item["detail"]) for item in reply.body["refused"]}
        assert refused[forged["uuid"]][0] == "bad_signature"
        assert refused[tampered["uuid"]][0] == "bad_signature"
        assert refused[stranger["uuid"]][0] == "unknown_origin"
        assert refused[broken["uuid"]][0] == "bad_record" and refused[broken["uuid"]][1].startswith("slot: ")
        assert await rig.stored() == sorted(r["uuid"] for r in good)


async def test_a_large_push_is_verified_and_judged_the_same(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        records = [rig.record("gate-b", f"L-{n:04d}") for n in range(40)]
        records[17] = {**records[17], "wall": records[17]["wall"] + 1}  # altered on the way
        reply = await rig.signed("gate-b", PUSH, {"records": records})
        assert reply.body["applied"] == 39
        assert [item["uuid"] for item in reply.body["refused"]] == [records[17]["uuid"]]


async def test_records_colliding_in_their_origins_log_are_refused_by_name(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        first = rig.record("gate-b", "L-0001")
        await rig.signed("gate-b", PUSH, {"records": [first]})
        rig.seqs["gate-b"] = 0
        same_seq = rig.record("gate-b", "L-0002")
        reply = await rig.signed("gate-b", PUSH, {"records": [same_seq]})
        assert reply.status == 200 and reply.body["applied"] == 0
        assert [(i["uuid"], i["error"]) for i in reply.body["refused"]] == [(same_seq["uuid"], "seq_taken")]
        assert await rig.stored() == [first["uuid"]]


# ------------------------------------------------------------------ bad bodies, never a 5xx


async def test_a_body_that_is_not_json_is_named(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        for raw in (b"", b"{", b"\xff\xfe\x00", b"records", b"[" * 100_000):
            reply = await rig.signed("gate-b", PUSH, None, raw=raw)
            assert (reply.status, reply.error) == (400, "not_json"), raw[:10]


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        (PUSH, [], "the body must be a JSON object"),
        (PUSH, "records", "the body must be a JSON object"),
        (PUSH, {}, "records:"),
        (PUSH, {"records": {}}, "records:"),
        (PUSH, {"records": None}, "records:"),
        (PUSH, {"records": [], "more": 1}, "records:"),
        (PUSH, {"records": [{}] * (MAX_BATCH + 1)}, "records:"),
        (PULL, [1], "the body must be a JSON object"),
        (PULL, {"since": 1}, "since:"),
        (PULL, {"limit": 0}, "limit:"),
        (PULL, {"limit": MAX_BATCH + 1}, "limit:"),
        (PULL, {"limit": True}, "limit:"),
        (PULL, {"limit": "10"}, "limit:"),
        (PULL, {"known": {}}, "known:"),
        (PULL, {"known": [1]}, "known[0]:"),
        (PULL, {"known": [{"origin": "gate-b", "epoch": "e"}]}, "known[0]:"),
        (PULL, {"known": [{"origin": "gate-b", "epoch": "e", "seq": 1, "x": 1}]}, "known[0]:"),
        (PULL, {"known": [{"origin": "", "epoch": "e", "seq": 1}]}, "known[0].origin:"),
        (PULL, {"known": [{"origin": "g", "epoch": "e" * 65, "seq": 1}]}, "known[0].epoch:"),
        (PULL, {"known": [{"origin": "g", "epoch": "e", "seq": -1}]}, "known[0].seq:"),
        (PULL, {"known": [{"origin": "g", "epoch": "e", "seq": 1.5}]}, "known[0].seq:"),
        (
            PULL,
            {"known": [{"origin": "g", "epoch": "e", "seq": 0}, {"origin": 5, "epoch": "e", "seq": 0}]},
            "known[1].origin:",
        ),
    ],
)
async def test_a_body_of_the_wrong_shape_names_the_field(
    tmp_path: Path, path: str, body: object, where: str
) -> None:
    async with serving(tmp_path) as rig:
        reply = await rig.signed("gate-b", path, body)
        assert (reply.status, reply.error) == (400, "bad_request")
        assert reply.body["detail"].startswith(where), reply.body["detail"]


async def test_a_body_too_large_is_refused_before_it_is_verified(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        big = json.dumps({"records": [], "pad": "x" * MAX_BODY}).encode()
        signed = await rig.signed("gate-b", PUSH, None, raw=big)
        assert (signed.status, signed.error) == (413, "too_large")
        # Without the headers, the body is not even read: the cheap checks come first.
        unsigned = await rig.raw("POST", PULL, big, {"Content-Type": "application/json"})
        assert (unsigned.status, unsigned.error) == (401, "unsigned")


#: Records that are bad in ways a parser may trip on: each must be refused by name.
HOSTILE_RECORDS: list[tuple[str, Any]] = [
    ("huge-int-wall", {"wall": 10**400}),
    ("huge-int-hlc", {"hlc": 10**400}),
    ("huge-int-seq", {"seq": -(10**300)}),
    ("nan-wall", {"wall": float("nan")}),
    ("inf-wall", {"wall": float("inf")}),
    ("nested-ticket", {"ticket_id": [[[["x"]]]]}),
    ("surrogate-ticket", {"ticket_id": "\ud800"}),
    ("nul-origin", {"origin": "gate-b\x00"}),
    ("object-kind", {"kind": {"entry": 1}}),
]


async def test_hostile_records_are_refused_by_name_never_a_5xx(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        items: list[object] = [1, None, "x", [], {}]
        for _name, changes in HOSTILE_RECORDS:
            items.append({**rig.record("gate-b", "L-0001"), **changes})
        good = rig.record("gate-b", "L-0002")
        items.append(good)
        # Non-standard JSON a Python peer may send (NaN) is still JSON to the parser.
        raw = json.dumps({"records": items}).encode()
        reply = await rig.signed("gate-b", PUSH, None, raw=raw)
        assert reply.status == 200, reply
        assert reply.body["applied"] == 1
        errors = [item["error"] for item in reply.body["refused"]]
        assert errors == ["bad_record"] * (len(items) - 1)
        assert await rig.stored() == [good["uuid"]]


async def test_garbage_headers_are_named_never_a_5xx(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        nonce = await rig.challenge()
        base = rig.headers("gate-b", PUSH, b"{}", nonce)
        cases: list[tuple[dict[str, str], int, str]] = [
            ({**base, "Gate-Time": "soon"}, 400, "bad_request"),
            ({**base, "Gate-Id": "gate-é"}, 403, "unknown_gate"),
            ({**base, "Gate-Id": "x" * 4000}, 403, "unknown_gate"),
            ({**base, HEADER_NONCE: "garbage"}, 401, "bad_nonce"),
            ({**base, HEADER_NONCE: "é" * 48}, 401, "bad_nonce"),
            ({**base, "Gate-Signature": "%%%"}, 401, "bad_signature"),
        ]
        for headers, status, name in cases:
            reply = await rig.raw("POST", PUSH, b"{}", headers)
            assert (reply.status, reply.error) == (status, name), headers
        # Raw bytes that are no text at all, in a header and in the query of a signed route.
        for request in (
            b"POST /v1/redemptions HTTP/1.1\r\nHost: x\r\nGate-Id: \xff\xfe\r\nGate-Time: 1\r\n"
            b"Gate-Nonce: \xc3\r\nGate-Signature: x\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /v1/redemptions?\xff=\xfe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
            writer.write(request)
            await writer.drain()
            head = await reader.read(4096)
            writer.close()
            await writer.wait_closed()
            status = int(head.split(b" ", 2)[1])
            assert 400 <= status < 500, head[:200]
        assert await rig.stored() == []


async def test_a_request_signed_with_a_weird_query_is_still_checked(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig:
        # The query is part of what is signed: a valid signature over it passes, an altered one fails.
        nonce = await rig.challenge()
        data = json.dumps({"records": []}).encode()
        path = PUSH + "?via=gate-b"
        headers = rig.headers("gate-b", path, data, nonce)
        reply = await rig.raw("POST", path, data, headers)
        assert reply.status == 200
        nonce = await rig.challenge()
        headers = rig.headers("gate-b", path, data, nonce)
        altered = await rig.raw("POST", PUSH + "?via=gate-c", data, headers)
        assert (altered.status, altered.error) == (401, "bad_signature")


# ------------------------------------------------------------------ rate limits


async def test_challenges_are_rate_limited_but_signed_requests_are_not(tmp_path: Path) -> None:
    async with serving(tmp_path, rate=1) as rig:
        rig.challenges["gate-b"] = await rig.challenge()
        codes = [(await rig.raw("GET", "/v1/challenge")).status for _ in range(4)]
        assert codes[0] == 200 and codes[-1] == 429  # a burst of two, then slow down
        limited = await rig.raw("GET", "/v1/challenge")
        assert (limited.status, limited.error) == (429, "rate_limited")
        # A gate that holds a challenge keeps going on the ones its answers carry.
        for n in range(8):
            reply = await rig.signed("gate-b", PUSH, {"records": [rig.record("gate-b", f"L-{n:04d}")]})
            assert reply.status == 200, reply
        assert len(await rig.stored()) == 8
        # The status routes are limited as before.
        assert (await rig.raw("GET", "/v1/status")).status == 429


# ------------------------------------------------------------------ the peer link, the client of these routes


@contextlib.asynccontextmanager
async def linked(rig: Rig, tmp_path: Path, address: str | None = None) -> AsyncIterator[Peer]:
    """Gate-b's link to gate-a (or to ``address``), as its replicator makes it."""
    ledger = await Ledger.open(tmp_path / "b.sqlite", "gate-b")
    replication = Replication(ledger, rig.keys["gate-b"], lambda: rig.manifest[0])
    transport = AiohttpTransport(per_host=LINK_CONNECTIONS, keepalive=KEEPALIVE)
    try:
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            yield Peer(address or f"127.0.0.1:{rig.server.port}", replication, client, timeout=30.0)
    finally:
        await ledger.close()


def redemption(rig: Rig, ticket: str) -> Redemption:
    """A record of gate-b's log, to offer to its link."""
    record, _signature = parse_record(rig.record("gate-b", ticket))
    return record


async def test_a_link_signs_on_the_challenge_each_answer_carries(tmp_path: Path) -> None:
    async with serving(tmp_path, rate=1) as rig, linked(rig, tmp_path) as peer:
        # Challenges are limited to a burst of two: five pushes get through only on the
        # challenges the answers carry.
        for n in range(5):
            peer.offer(redemption(rig, f"K-{n:04d}"))
            await peer.push()
        assert (peer.state.pushed, peer.state.gate_id) == (5, "gate-a")  # the challenge answer named it
        assert len(await rig.stored()) == 5 and rig.replication.refusals == {}


async def test_a_link_retries_once_with_a_fresh_challenge_when_its_own_is_unknown(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig, linked(rig, tmp_path) as peer:
        peer.offer(redemption(rig, "K-0001"))
        await peer.push()
        rig.replication.challenges = Challenges()  # gate-a restarted: the challenge gate-b holds is foreign
        peer.offer(redemption(rig, "K-0002"))
        await peer.push()
        assert rig.replication.refusals == {"bad_nonce": 1}
        assert len(await rig.stored()) == 2


async def test_a_challenge_refused_twice_fails_the_call_by_its_name(tmp_path: Path) -> None:
    async with serving(tmp_path) as rig, linked(rig, tmp_path) as peer:
        rig.replication.challenges = Challenges(ttl=-1.0)  # every challenge stale as it arrives
        peer.offer(redemption(rig, "K-0001"))
        with pytest.raises(PeerError) as caught:
            await peer.push()
        assert (caught.value.name, caught.value.status) == ("stale_nonce", 401)
        assert rig.replication.refusals == {"stale_nonce": 2}  # one retry, not more
        assert await rig.stored() == [] and peer.state.dropped == 1


async def test_a_link_to_no_one_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        async with serving(tmp_path) as rig, linked(rig, tmp_path, address) as peer:
            with pytest.raises(PeerError) as caught:
                await peer.pull()
    assert caught.value.name == "unreachable" and caught.value.status is None
    assert str(caught.value).startswith("unreachable: ConnectError: ")


@contextlib.asynccontextmanager
async def impostor(answer: bytes | None) -> AsyncIterator[str]:
    """A listener on 127.0.0.1 that reads a request and writes ``answer`` (None: nothing), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "unreachable: not an HTTP answer: "),
        (None, "unreachable: not an HTTP answer: "),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "unreachable: "),
    ],
    ids=["not-http", "hangs-up", "cut-short"],
)
async def test_a_peer_that_is_no_gate_is_unreachable_not_a_timeout(
    tmp_path: Path, answer: bytes | None, detail: str
) -> None:
    # What aiohttp raises for each (a response error, a disconnection, a payload error)
    # must reach the link as the httpx error of the same failure, never as a timeout.
    async with impostor(answer) as address, serving(tmp_path) as rig, linked(rig, tmp_path, address) as peer:
        with pytest.raises(PeerError) as caught:
            await peer.pull()
    assert caught.value.name == "unreachable" and caught.value.status is None
    assert str(caught.value).startswith(detail), str(caught.value)
