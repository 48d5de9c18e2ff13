"""Hypothesis against the running central: any push or validate body is answered or named, never a 500."""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.central_fixtures import GateClient, Running, make_central_world, serving
from tests.loop_thread import LoopThread

NAMED = {"not_json", "bad_request", "too_large"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
record_fields = st.sampled_from(
    [
        "uuid",
        "ticket_id",
        "kind",
        "slot",
        "origin",
        "epoch",
        "seq",
        "hlc",
        "wall",
        "operator",
        "mode",
        "forced",
        "voids",
        "sig",
    ]
)


class Harness:
    """A central served on a loop of its own, driven from synchronous hypothesis examples."""

    def __init__(self, loop: LoopThread, tmp_path: Path) -> None:
        self.loop = loop
        world = make_central_world(tmp_path)
        self._context = serving(world)
        self.running: Running = loop.run(self._context.__aenter__())
        self.north: GateClient = self.running.gates["north-1"]

    def post(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        answer = self.loop.run(self.north.request("POST", path, raw=raw))
        return answer.status_code, answer.json()

    def close(self) -> None:
        self.loop.run(self._context.__aexit__(None, None, None))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with LoopThread("central-fuzz") as loop:
        made = Harness(loop, tmp_path)
        try:
            yield made
        finally:
            made.close()


def _answered(status: int, body: dict[str, Any]) -> None:
    assert status != 500, body
    if status != 200:
        assert body["error"] in NAMED and isinstance(body["detail"], str), body


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(data=st.data())
def test_push_bodies_never_fail(harness: Harness, data: st.DataObject) -> None:
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        raw = data.draw(st.binary(max_size=64))
    elif choice == 1:
        raw = json.dumps(data.draw(json_values)).encode()
    else:
        record = harness.north.wire(harness.north.record("L-0007"))
        for name in data.draw(st.lists(record_fields, max_size=3)):
            record[name] = data.draw(json_values)
        raw = json.dumps({"records": [record]}).encode()
    status, body = harness.post("/v1/checkins", raw)
    _answered(status, body)
    if status == 200:
        (result,) = body["results"]
        assert result["status"] in ("applied", "duplicate", "conflict", "rejected")
        if result["status"] == "rejected":
            assert result["reason"] in (
                "bad_record",
                "unknown_origin",
                "bad_signature",
                "seq_taken",
                "already_voided",
            )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(
    uuid=st.one_of(st.just(None), json_values),
    payload=st.one_of(
        st.text(max_size=60), st.sampled_from(["A100-2", "REF-LIVE-FLOOR-000001"]), json_values
    ),
    kind=st.one_of(st.sampled_from(["entry", "exit"]), json_values),
    zone=st.one_of(st.sampled_from([None, "floor", "balcony"]), json_values),
)
def test_validate_bodies_never_fail(
    harness: Harness, uuid: object, payload: object, kind: object, zone: object
) -> None:
    body = {
        "uuid": str(uuidlib.uuid4()) if uuid is None else uuid,
        "payload": payload,
        "kind": kind,
        "zone": zone,
    }
    status, answer = harness.post("/v1/validate", json.dumps(body).encode())
    assert status != 500, answer
    if status == 200:
        assert answer["decision"]["outcome"] in ("allow", "deny", "already_used", "too_early")
    else:
        assert answer["error"] in NAMED | {"uuid_reused"}, answer
