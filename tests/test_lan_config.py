"""The ``[lan]`` section's replication keys: the gate key's path, peers, intervals; and a key file
too open to use stops the gate at start with an error naming the file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gate_daemon.config.load import MAX_PEERS, load_config
from gate_daemon.daemon import app
from gate_daemon.daemon.systemd import Notifier
from gate_daemon.errors import GateError, SourceError
from tests.live import LiveWorld, make_live_world, write_gate_config

BASE = """\
[gate]
id = "gate-a"
event = "demo-2026"
state_dir = "/srv/gate"

[manifest]
path = "m.gdm"
trusted_keys = ["signer.pub"]
"""
CREDENTIALS = "/run/credentials/gate-daemon.service"


def write(folder: Path, lan: str) -> Path:
    path = folder / "gate.toml"
    path.write_text(BASE + "\n[lan]\n" + lan)
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> SourceError:
    with pytest.raises(SourceError) as caught:
        load_config(path, environ or {})
    return caught.value


def line_of(path: Path, marker: str) -> int:
    lines = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if marker in line]
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------ the key


def test_a_relative_key_is_relative_to_the_configs_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = load_config(write(folder, 'listen = "127.0.0.1:8443"\nkey = "keys/gate-a.key"\n'), {})
    assert config.lan.key == folder / "keys/gate-a.key"
    assert config.lan.replicates and config.lan.enabled


def test_an_absolute_key_stays_where_it_is(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'listen = "127.0.0.1:8443"\nkey = "/etc/gate/gate-a.key"\n'), {})
    assert config.lan.key == Path("/etc/gate/gate-a.key")


def test_a_key_from_systemds_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "0.0.0.0:8443"\nkey = "${CREDENTIALS_DIRECTORY}/gate-a.key"\n')
    config = load_config(path, {"CREDENTIALS_DIRECTORY": CREDENTIALS})
    assert config.lan.key == Path(CREDENTIALS) / "gate-a.key"
    # Outside the unit (the variable unset): named, with the line.
    error = problems(path)
    assert [p.where for p in error.problems] == ["lan.key"]
    assert f"{path}:{line_of(path, 'key =')}: lan.key: " in str(error)
    assert "${CREDENTIALS_DIRECTORY}" in str(error)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('""', "must not be empty"),
        ("5", "expected a string"),
        ('"${HOME}/gate.key"', "only ${CREDENTIALS_DIRECTORY}"),
    ],
)
def test_a_bad_key_value_is_named(tmp_path: Path, value: str, words: str) -> None:
    path = write(tmp_path, f'listen = "127.0.0.1:8443"\nkey = {value}\n')
    error = problems(path)
    assert [p.where for p in error.problems] == ["lan.key"]
    assert words in str(error)


def test_without_a_key_or_an_address_the_gate_does_not_replicate(tmp_path: Path) -> None:
    keyless = load_config(write(tmp_path, 'listen = "127.0.0.1:8443"\n'), {})
    assert keyless.lan.enabled and not keyless.lan.replicates and keyless.lan.key is None
    deaf = load_config(write(tmp_path, 'key = "gate.key"\n'), {})
    assert not deaf.lan.enabled and not deaf.lan.replicates and deaf.lan.key == tmp_path / "gate.key"


# ------------------------------------------------------------------ peers


def test_peers_are_host_port_pairs(tmp_path: Path) -> None:
    peers = '["10.0.0.12:8443", "[fe80::1]:8443", "gate-b.local:1", "127.0.0.1:65535"]'
    config = load_config(write(tmp_path, f'listen = "0.0.0.0:8443"\nkey = "k"\npeers = {peers}\n'), {})
    assert config.lan.peers == ("10.0.0.12:8443", "[fe80::1]:8443", "gate-b.local:1", "127.0.0.1:65535")
    assert (config.lan.pull_interval_ms, config.lan.timeout_ms) == (1000, 2000)


@pytest.mark.parametrize(
    "peer",
    [
        "0.0.0.0:8443",
        "10.0.0.12",
        "10.0.0.12:0",
        "10.0.0.12:65536",
        "http://10.0.0.12:8443",
        "",
        ":8443",
        "a b:1",
    ],
)
def test_a_peer_that_is_not_a_gates_address_is_named(tmp_path: Path, peer: str) -> None:
    path = write(tmp_path, f'listen = "0.0.0.0:8443"\nkey = "k"\npeers = ["10.0.0.1:1", "{peer}"]\n')
    error = problems(path)
    assert [p.where for p in error.problems] == ["lan.peers[1]"]
    assert f"{path}:{line_of(path, 'peers =')}: lan.peers[1]: {peer!r} must be HOST:PORT" in str(error)


def test_the_ipv6_any_address_is_no_peer(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "[::]:8443"\nkey = "k"\npeers = ["[::]:8443"]\n')
    assert [p.where for p in problems(path).problems] == ["lan.peers[0]"]


def test_a_peer_listed_twice_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'listen = "0.0.0.0:8443"\nkey = "k"\npeers = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.1:1"]\n'
    )
    error = problems(path)
    assert [p.where for p in error.problems] == ["lan.peers[2]"]
    assert "listed twice" in str(error)


def test_at_most_so_many_peers(tmp_path: Path) -> None:
    many = ", ".join(f'"10.0.{n // 250}.{n % 250 + 1}:8443"' for n in range(MAX_PEERS + 1))
    path = write(tmp_path, f'listen = "0.0.0.0:8443"\nkey = "k"\npeers = [{many}]\n')
    error = problems(path)
    assert [p.where for p in error.problems] == ["lan.peers"]
    assert f"at most {MAX_PEERS} peers" in str(error)
    exactly = ", ".join(f'"10.0.{n // 250}.{n % 250 + 1}:8443"' for n in range(MAX_PEERS))
    config = load_config(write(tmp_path, f'listen = "0.0.0.0:8443"\nkey = "k"\npeers = [{exactly}]\n'), {})
    assert len(config.lan.peers) == MAX_PEERS


@pytest.mark.parametrize(
    ("lan", "missing"),
    [
        ('peers = ["10.0.0.1:8443"]\n', "without key or listen"),
        ('listen = "0.0.0.0:8443"\npeers = ["10.0.0.1:8443"]\n', "without key"),
        ('key = "gate.key"\npeers = ["10.0.0.1:8443"]\n', "without listen"),
    ],
)
def test_peers_need_a_key_and_an_address(tmp_path: Path, lan: str, missing: str) -> None:
    path = write(tmp_path, lan)
    error = problems(path)
    assert [p.where for p in error.problems] == ["lan.peers"], missing
    rendered = str(error)
    assert f"{path}:{line_of(path, 'peers =')}: lan.peers: " in rendered
    assert "[lan] key" in rendered and "[lan] listen" in rendered


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("pull_interval_ms", 99, False),
        ("pull_interval_ms", 100, True),
        ("pull_interval_ms", 3_600_000, True),
        ("pull_interval_ms", 3_600_001, False),
        ("pull_interval_ms", '"1000"', False),
        ("pull_interval_ms", 1.5, False),
        ("timeout_ms", 49, False),
        ("timeout_ms", 50, True),
        ("timeout_ms", 60_000, True),
        ("timeout_ms", 60_001, False),
        ("timeout_ms", -1, False),
        ("timeout_ms", "true", False),
    ],
)
def test_intervals_are_bounded(tmp_path: Path, key: str, value: object, ok: bool) -> None:
    path = write(tmp_path, f'listen = "0.0.0.0:8443"\nkey = "k"\n{key} = {value}\n')
    if ok:
        assert getattr(load_config(path, {}).lan, key) == value
    else:
        error = problems(path)
        assert [p.where for p in error.problems] == [f"lan.{key}"]
        assert f"{path}:{line_of(path, key)}: lan.{key}: " in str(error)


@pytest.mark.parametrize("value", ["5", '"mykey"'])
def test_a_lan_that_is_not_a_table_is_a_source_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(f"lan = {value}\n" + BASE)
    assert [p.where for p in problems(path).problems] == ["lan"]


# ------------------------------------------------------------------ the key file at start


@pytest.fixture
def roster_world(tmp_path: Path) -> LiveWorld:
    world = make_live_world(tmp_path / "world", gates=("gate-a", "gate-b"))
    (tmp_path / "drop.gdm").write_bytes(world.manifest(1))
    return world


def gate_config(tmp_path: Path, world: LiveWorld, key: Path) -> Path:
    lan = f'[lan]\nlisten = "127.0.0.1:0"\nkey = "{key}"\n'
    return write_gate_config(
        tmp_path / "gate.toml", world, gate_id="gate-a", manifest_path=tmp_path / "drop.gdm", extra=lan
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
async def test_a_key_others_can_read_stops_the_start_naming_the_file(
    tmp_path: Path, roster_world: LiveWorld, mode: int
) -> None:
    key = roster_world.gate_keys["gate-a"]
    os.chmod(key, mode)
    config = load_config(gate_config(tmp_path, roster_world, key), {})
    with pytest.raises(GateError) as caught:
        await app.start(config)
    assert str(key) in str(caught.value) and f"{mode:04o}" in str(caught.value)
    assert f"chmod 600 {key}" in str(caught.value)
    # Nothing was left open: once the key is private, the same state dir starts and shares.
    os.chmod(key, 0o600)
    running = await app.start(config)
    try:
        assert running.status.replication is not None and running.status.replication.problem is None
        assert running.lan is not None and running.lan.port > 0
    finally:
        await app.shutdown(running)


@pytest.mark.parametrize("content", [None, "ed25519:AAAA\n", "not a key\n"])
async def test_a_missing_or_malformed_key_stops_the_start_naming_the_file(
    tmp_path: Path, roster_world: LiveWorld, content: str | None
) -> None:
    key = tmp_path / "bad.key"
    if content is not None:
        key.write_text(content)
        key.chmod(0o600)
    config = load_config(gate_config(tmp_path, roster_world, key), {})
    with pytest.raises(GateError, match=str(key)):
        await app.start(config)


async def test_a_gate_with_a_private_key_serves_its_peers_challenges(
    tmp_path: Path, roster_world: LiveWorld
) -> None:
    import aiohttp

    config = load_config(gate_config(tmp_path, roster_world, roster_world.gate_keys["gate-a"]), {})
    running = await app.start(config)
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve(running, Notifier(None), stop))
    try:
        assert running.lan is not None
        url = f"http://127.0.0.1:{running.lan.port}/v1/challenge"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert (await response.json())["gate"] == "gate-a"
    finally:
        stop.set()
        assert await task == 0
