"""Enrollment by a one-time token (docs/ENROLL.md), with a real central and real gates.

Three gates are enrolled from tokens into their own ``--etc``/``--state`` folders, started
as real processes from the config enrollment wrote, and share redemptions through the
roster addresses of the manifest the central built: no ``[[gates]]`` nor ``peers`` is
written by hand. A reused, expired, revoked or forged token and a wrong signer fingerprint
are refused by name, and nothing changes: no file written, the roster as it was.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.config.load import load_config
from gate_daemon.core.enrollment import (
    EnrollRefused,
    Token,
    check_answer,
    make_answer,
    make_request,
    parse_addr,
    parse_request,
    parse_token,
)
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.manifest import Manifest, peek_header
from gate_daemon.errors import SourceError
from gate_daemon.provision.build import build_manifest
from gate_daemon.provision.event import load_event
from gate_daemon.provision.gate_files import Enrolled, Placement, config_text, kept_tables
from gate_daemon.store.manifest_file import read_manifest
from tests.central_process import CentralProcess
from tests.enroll_fixtures import central_cli, enroll, enrolled_rows, new_token, refused, running_central
from tests.gate_process import (
    GateProcess,
    Launcher,
    free_port,
    redemptions,
    wait_until,
)
from tests.live import make_live_world, payload

CONVERGE = 30.0


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    """A running central whose event.toml lists no gates at all."""
    with running_central(tmp_path) as process:
        yield process


def latest_manifest(central: CentralProcess) -> Manifest:
    """The central's latest manifest version, verified with its key."""
    version = central.report()["manifest"]["version"]
    signer = SecretKey.parse((central.config.parent / "signer.key").read_text())
    return read_manifest(_central_state(central) / f"{version}.gdm", [signer.public])


def _central_state(central: CentralProcess) -> Path:
    return central.database.parent / "manifests"


# ---------------------------------------------------------------- the whole road


def test_three_gates_enrolled_by_token_share_redemptions(
    central: CentralProcess, tmp_path: Path, launch: Launcher
) -> None:
    gates = {}
    for name in ("north-1", "north-2", "north-3"):
        addr = f"127.0.0.1:{free_port()}"
        done = enroll(new_token(central, name, "--zone", "floor"), tmp_path / name, addr)
        assert done.returncode == 0, done.stderr
        config = Path(done.stdout.strip())
        assert config == tmp_path / name / "etc" / "gate.toml"
        loaded = load_config(config)
        assert loaded.lan.peers == () and not loaded.lan.discover  # no peer is written by hand
        assert (loaded.gate.id, loaded.gate.zone, loaded.lan.port) == (name, "floor", int(addr.split(":")[1]))
        key = tmp_path / name / "etc" / "keys" / "gate.key"
        assert key.stat().st_mode & 0o777 == 0o600
        gates[name] = config
    manifest = latest_manifest(central)
    assert {g.id for g in manifest.header.gates} == set(gates)
    assert all(g.addr is not None for g in manifest.header.gates)
    listing = central_cli(central, "gates")
    assert listing.returncode == 0 and listing.stdout.count("joined: token") == 3, listing.stdout

    running = {name: launch(config, name=name) for name, config in gates.items()}
    for gate in running.values():  # each gate fetches the manifest that lists all three
        wait_until(functools.partial(_version_is, gate, manifest.version), CONVERGE, "the manifest")
    first = running["north-1"].scan(payload(3))
    assert first["outcome"] == "allow", first
    for name in ("north-2", "north-3"):
        gate = running[name]
        wait_until(functools.partial(_linked, gate, 2), CONVERGE, f"{name} linked to its peers")
        wait_until(functools.partial(_held, gate, 3), CONVERGE, f"{name} learns the admission")
        again = gate.scan(payload(3))
        assert again["outcome"] == "already_used", again
    assert _peers(running["north-2"]) == {
        n: f"127.0.0.1:{load_config(gates[n]).lan.port}" for n in ("north-1", "north-3")
    }

    removed = central_cli(central, "gates", "--remove", "north-3")
    assert removed.returncode == 0, removed.stderr
    wait_until(
        lambda: latest_manifest(central).version > manifest.version, CONVERGE, "a manifest without north-3"
    )
    assert {g.id for g in latest_manifest(central).header.gates} == {"north-1", "north-2"}


def _peers(gate: GateProcess) -> dict[str, str]:
    """The gate's peer links: gate id to address."""
    return {p["gate"]: p["address"] for p in gate.status()["replication"]["peers"]}


def _version_is(gate: GateProcess, version: int) -> bool:
    return bool(gate.status()["manifest"].get("version") == version)


def _linked(gate: GateProcess, count: int) -> bool:
    return len(_peers(gate)) == count


def _held(gate: GateProcess, n: int) -> bool:
    return any(row[0] == f"P-{n:03d}" for row in redemptions(gate.ledger_path).values())


# ---------------------------------------------------------------- refusals change nothing


def test_a_token_works_once(central: CentralProcess, tmp_path: Path) -> None:
    token = new_token(central, "east-1")
    assert enroll(token, tmp_path / "first").returncode == 0
    refused(central, token, tmp_path / "again", "token_used")


def test_an_expired_token_isrefused(central: CentralProcess, tmp_path: Path) -> None:
    token = new_token(central, "east-1", "--valid", "1s")
    expires = parse_token(token).expires_at
    wait_until(lambda: time.time() > expires + 1, 10, "the token to expire")
    refused(central, token, tmp_path / "gate", "token_expired")


def test_a_revoked_token_isrefused(central: CentralProcess, tmp_path: Path) -> None:
    token = new_token(central, "east-1")
    done = central_cli(central, "token", "--revoke", "east-1")
    assert done.returncode == 0 and "revoked 1 open token" in done.stdout, done.stdout + done.stderr
    refused(central, token, tmp_path / "gate", "token_revoked")


def test_a_forged_token_isrefused(central: CentralProcess, tmp_path: Path) -> None:
    real = parse_token(new_token(central, "east-1"))
    forged = replace(real, secret=os.urandom(16))  # the central's address and key, a secret of its own
    refused(central, forged.text(), tmp_path / "gate", "token_unknown")
    assert enroll(real.text(), tmp_path / "real").returncode == 0, "the real token was not spent"


def test_a_wrong_signer_fingerprint_is_refused_before_the_token_is_spent(
    central: CentralProcess, tmp_path: Path
) -> None:
    real = parse_token(new_token(central, "east-1"))
    pinned_elsewhere = replace(real, fingerprint=bytes(16))
    refused(central, pinned_elsewhere.text(), tmp_path / "gate", "signer_mismatch")
    assert enroll(real.text(), tmp_path / "real").returncode == 0, "the token was not spent"


def test_a_kept_table_that_does_not_load_is_said_before_the_token_is_spent(
    central: CentralProcess, tmp_path: Path
) -> None:
    token = new_token(central, "east-1")
    etc = tmp_path / "gate" / "etc"
    etc.mkdir(parents=True)
    (etc / "gate.toml").write_text('[gate]\nid = "x"\n\n[input]\nkind = "teleport"\n')
    done = enroll(token, tmp_path / "gate")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert (
        f"{etc / 'gate.toml'} (as gatectl enroll would write it)" in done.stderr
        and "input.kind" in done.stderr
    )
    assert sorted(p.name for p in etc.iterdir()) == ["gate.toml"] and enrolled_rows(central) == []
    (etc / "gate.toml").write_text('[input]\nkind = "none"\n')
    assert enroll(token, tmp_path / "gate").returncode == 0, "the token was not spent"
    assert (etc / "gate.toml.bak").read_text() == '[input]\nkind = "none"\n'


def test_an_unreachable_central_is_named(tmp_path: Path) -> None:
    token = Token(
        os.urandom(16), bytes(16), int(time.time()) + 60, "east-1", f"http://127.0.0.1:{free_port()}"
    )
    done = enroll(token.text(), tmp_path / "gate")
    assert done.returncode == 1 and "EnrollRefused: central_unreachable:" in done.stderr, done.stderr
    assert not (tmp_path / "gate").exists()


def test_a_gate_listed_in_event_toml_gets_no_token(central: CentralProcess) -> None:
    event = central.config.parent / "event.toml"
    event.write_text(event.read_text() + '\n[[gates]]\nid = "west-1"\npub = "issuer.pub"\n')
    done = central_cli(central, "token", "--gate", "west-1", "--url", central.url)
    assert done.returncode == 1 and "[[gates]]" in done.stderr, done.stderr


def test_the_enroll_routes_answer_garbage_by_name(central: CentralProcess) -> None:
    import httpx

    with httpx.Client(base_url=central.url, trust_env=False) as http:
        assert http.get("/v1/enroll").json()["central"] == "venue-central"
        for body in (b"", b"[]", b'{"token": 1}', b"\xff" * 10):
            answer = http.post("/v1/enroll", content=body)
            assert answer.status_code == 400 and answer.json()["error"] == "bad_request", answer.text
    assert enrolled_rows(central) == []


# ---------------------------------------------------------------- the pieces


def test_the_answer_must_be_signed_by_the_pinned_key() -> None:
    signer, other = SecretKey.generate(), SecretKey.generate()
    token = Token(os.urandom(16), bytes(16), 1, "east-1", "http://127.0.0.1:8700")
    request = make_request(token, SecretKey.generate(), "10.0.5.11:8600")
    fields = {"gate_id": "east-1", "event_id": "demo", "zone": None, "central": "c", "version": 2}
    answer = make_answer(request, signer, **fields).wire()
    assert check_answer(answer, request, signer.public).version == 2
    with pytest.raises(EnrollRefused) as refused:
        check_answer(make_answer(request, other, **fields).wire(), request, signer.public)
    assert refused.value.name == "signer_mismatch"
    with pytest.raises(EnrollRefused) as refused:
        check_answer({**answer, "version": 3}, request, signer.public)
    assert refused.value.name == "signer_mismatch"


def test_a_token_reads_back_whole() -> None:
    token = Token(os.urandom(16), os.urandom(16), 2_000_000_000, "north-3", "http://[fd00::1]:8700")
    assert parse_token(token.text()) == token
    assert "secret" not in repr(token) and token.text() not in repr(token)


@given(st.text(max_size=300))
def test_garbage_is_never_a_token(text: str) -> None:
    try:
        parse_token(text)
    except EnrollRefused as exc:
        assert exc.name == "bad_token"


@given(st.binary(max_size=200))
def test_garbage_after_the_prefix_is_named(data: bytes) -> None:
    from gate_daemon.core import base32

    try:
        parse_token("GDE1:" + base32.encode(data))
    except EnrollRefused as exc:
        assert exc.name == "bad_token"


@given(st.text(max_size=80))
def test_addresses_are_host_and_port_or_named(text: str) -> None:
    try:
        assert parse_addr(text) == text
    except ValueError as exc:
        assert str(exc)


def test_enrollment_keeps_the_config_tables_it_does_not_own(tmp_path: Path) -> None:
    existing = (
        '# installed from the example\n[gate]\nid = "x"\n\n[input]\nkind = "hid"  # the scanner\n'
        'device = "/dev/gate-scanner"\n\n[input.camera]\nfps = 15\n\n[lan]\npeers = ["10.0.0.9:8600"]\n'
        '\n[signals]\nkind = "gpio"\n'
    )
    kept = kept_tables(existing)
    assert 'kind = "hid"  # the scanner' in kept and "[input.camera]" in kept and 'kind = "gpio"' in kept
    assert "peers" not in kept and 'id = "x"' not in kept
    placement = Placement(Path("/etc/gate-daemon"), Path("/var/lib/gate-daemon"))
    text = config_text(
        placement, Enrolled("east-1", "demo", "floor", "10.0.5.11:8600", "http://c:8700"), existing
    )
    assert "${CREDENTIALS_DIRECTORY}/gate.key" in text and 'state_dir = "${STATE_DIRECTORY}"' in text


def test_a_roster_gate_may_give_its_address_in_event_toml(tmp_path: Path) -> None:
    world = make_live_world(tmp_path, ("north-1",))
    event = tmp_path / "event.toml"
    text = event.read_text()
    event.write_text(text.replace('pub = "north-1.pub"', 'pub = "north-1.pub"\naddr = "10.0.5.11:8600"'))
    spec = load_event(event)
    assert spec.gates[0].addr == "10.0.5.11:8600"
    data = build_manifest(spec, [], world.signer, version=1, issued_at=int(world.now))
    assert peek_header(data)[1].gates[0].addr == "10.0.5.11:8600"
    without = build_manifest(world.event, [], world.signer, version=1, issued_at=int(world.now))
    assert "addr" not in peek_header(without)[1].raw["gates"][0]  # no address: the header as before
    event.write_text(text.replace('pub = "north-1.pub"', 'pub = "north-1.pub"\naddr = "10.0.5.11"'))
    with pytest.raises(SourceError) as bad:
        load_event(event)
    assert "gates[0].addr" in str(bad.value) and "HOST:PORT" in str(bad.value)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=7),
    max_leaves=12,
)
_REQUEST_KEYS = ("token", "gate", "pub", "addr", "token_sig", "gate_sig")


@given(
    st.one_of(
        _JSON, st.fixed_dictionaries({k: st.one_of(_JSON, st.text(max_size=60)) for k in _REQUEST_KEYS})
    )
)
def test_garbage_is_never_an_enrollment_request(doc: object) -> None:
    try:
        request = parse_request(doc)
    except ValueError as exc:
        assert str(exc)
    else:
        assert not request.verify()  # nothing random carries two good signatures


@given(
    st.one_of(
        _JSON, st.dictionaries(st.sampled_from(("gate", "event", "zone", "version", "signer", "sig")), _JSON)
    )
)
def test_garbage_is_never_an_enrollment_answer(doc: object) -> None:
    token = Token(bytes(16), bytes(16), 1, "east-1", "http://127.0.0.1:8700")
    request = make_request(token, SecretKey(bytes(32)), "10.0.5.11:8600")
    with pytest.raises(EnrollRefused) as refused:
        check_answer(doc, request, SecretKey(bytes(range(32))).public)
    assert refused.value.name in ("bad_answer", "signer_mismatch")
