"""A ``gate-central`` bridging the test session's real pretix, and gates that sync with it.

Each test gets its own central (its own state, its own pretix device made from a fresh
initialization token), talking to pretix through a ``tests.link_proxy.Link`` the test can
cut (pretix down) and heal, and gates in zone ``main`` or ``vip`` that sync with the
central on quick loops.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.central_process import SYNC, CentralProcess
from tests.gate_process import GateProcess, Launcher
from tests.link_proxy import Link
from tests.live import EVENT_ID, LiveWorld, make_live_world, write_gate_config
from tests.loop_thread import LoopThread
from tests.pretix_server import PretixServer

GATES = ("north-1", "south-1")
#: The bridge's sync interval in these tests: quick, so a test converges in seconds.
INTERVAL_S = 0.5


@dataclass
class BridgeWorld:
    """The files, the link to pretix and the running central."""

    root: Path
    live: LiveWorld
    pretix: PretixServer
    link: Link
    loop: LoopThread
    central: CentralProcess

    def cut(self, mode: str = "refuse") -> None:
        """pretix is down, as the bridge sees it."""
        self.loop.run(self.link.cut(mode))  # type: ignore[arg-type]

    def heal(self) -> None:
        """pretix answers again."""
        self.loop.run(self.link.heal())

    def gate(
        self,
        launch: Launcher,
        gate_id: str,
        *,
        zone: str = "main",
        upstream: dict[str, Any] | None = None,
        **options: Any,
    ) -> GateProcess:
        """A gate of zone ``zone`` syncing with the central (``decision`` etc. as ``write_gate_config``)."""
        folder = self.root / gate_id
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            "[lan]",
            f'key = "{self.live.gate_keys[gate_id]}"',
            "[upstream]",
            f'url = "{self.central.url}"',
            *(f"{key} = {json.dumps(value)}" for key, value in {**SYNC, **(upstream or {})}.items()),
        ]
        config = write_gate_config(
            folder / "gate.toml",
            self.live,
            gate_id=gate_id,
            zone=zone,
            extra="\n".join(lines) + "\n",
            **options,
        )
        return launch(config, name=gate_id)

    def restart_central(self) -> None:
        """Stop the central and start it again on the same state (its device, cursors and records)."""
        self.central.close()
        self.central = CentralProcess(
            self.central.config, self.root, name=f"{self.central.name}-again"
        ).start(60)

    def forget_uploads(self) -> None:
        """Make the bridge forget what it sent (as a crash before it kept pretix's answers would)."""
        with contextlib.closing(sqlite3.connect(self.central.database, timeout=10)) as db:
            db.execute("DELETE FROM pretix_uploads")
            db.execute("UPDATE pretix_meta SET value = '0' WHERE key = 'upload_cursor'")
            db.commit()

    def uploads(self) -> dict[str, tuple[str, str | None]]:
        """The bridge's upload answers by record uuid: (status, reason)."""
        return {
            str(u): (str(s), r) for u, s, r in self._query("SELECT uuid, status, reason FROM pretix_uploads")
        }

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        uri = f"file:{urllib.parse.quote(str(self.central.database))}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            return conn.execute(sql).fetchall()


def venue_toml(gates: tuple[str, ...]) -> str:
    """The venue file: the event id the gates name, zones main and vip, the gate roster."""
    roster = "".join(f'\n[[gates]]\nid = "{gate}"\npub = "{gate}.pub"\n' for gate in gates)
    return f"""\
[event]
id = "{EVENT_ID}"

[[zones]]
id = "main"
name = "Main entrance"

[[zones]]
id = "vip"
name = "VIP lounge"
{roster}"""


def central_toml(pretix: PretixServer, url: str, interval_s: float = INTERVAL_S) -> str:
    """A central config bridging ``pretix`` (reached at ``url``)."""
    return f"""\
[central]
id = "pretix-central"
listen = "127.0.0.1:0"
state_dir = "state"
event = "venue.toml"
key = "signer.key"

[source]
kind = "pretix"
url = "{url}"
organizer = "{pretix.organizer}"
event = "{pretix.event}"
init_token = "pretix-init-token"
interval_s = {interval_s}
timeout_s = 5
online_timeout_ms = 4000

[source.lists]
main = {pretix.lists["main"]}
vip = {pretix.lists["vip"]}
"""


@contextlib.contextmanager
def bridge_world(root: Path, pretix: PretixServer, *, start: bool = True) -> Iterator[BridgeWorld]:
    """Keys, venue.toml, the init token, a link to pretix and (with ``start``) the central, running."""
    live = make_live_world(root, GATES)
    (root / "venue.toml").write_text(venue_toml(GATES))
    token = root / "pretix-init-token"
    token.write_text(pretix.new_device_token(f"gate-central {root.name}") + "\n")
    token.chmod(0o600)
    host, port = urllib.parse.urlsplit(pretix.url).netloc.split(":")
    with contextlib.closing(LoopThread("pretix-link")) as loop:
        link = loop.run(Link((host, int(port)), name="pretix").start())
        config = root / "central.toml"
        config.write_text(central_toml(pretix, f"http://{link.address}"))
        world = BridgeWorld(root, live, pretix, link, loop, CentralProcess(config, root))
        try:
            if start:
                world.central.start(timeout=60)
            yield world
        finally:
            world.central.close()
            loop.run(link.aclose())


def pretix_time(text: str) -> float:
    """A pretix time as seconds since 1970."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
