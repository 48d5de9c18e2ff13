"""A real pretix on 127.0.0.1, seeded with a gate event: for the tests and ``gatectl bench pretix``.

``running_pretix(workdir)`` copies the cached template database (``bench.pretix_install``),
starts ``python -m pretix runserver 127.0.0.1:PORT --noreload`` in its own process group,
waits until it answers, seeds it (``seed.seed_event``) and kills the group on exit. What it
yields, a ``PretixServer``, is the contract the tests code against:

* ``url``, ``organizer`` ("gateorg"), ``event`` ("gate2026"), ``team_token`` (all
  permissions), ``device_init_token`` (an unused initialization token of a device with the
  ``pretixscan`` profile: what a venue tech gives the bridge), ``lists``
  ({"main": id, "vip": id}), ``items`` ({"ticket": id, "vip": id}), ``valid_keys`` (the
  event's ``valid_keys.pretix_sig1``: base64 PEM, as pretix answers them);
* ``positions``: the seeded positions by name, each a ``SeededPosition`` (``order``,
  ``position_id``, ``item``, ``secret``, ``state``): ``paid``, ``paid2``, ``paid3``,
  ``vip`` (paid, item vip), ``pending``, ``canceled`` (the buyer's secret, revoked by the
  cancellation), ``blocked`` (paid, blocked by the admin), ``revoked`` (a paid position
  re-keyed: ``secret`` is the revoked old one, ``current_secret`` the new one);
* helpers: ``api(method, path, json=None)`` (team token; path relative to ``/api/v1/``),
  ``event_api(...)`` (relative to the event), ``make_order(item="ticket", status="paid")``,
  ``make_positions(count)`` (``count`` paid positions, 500 to an order: their secrets),
  ``cancel_order(code)``, ``block(position)``, ``new_device_token()``,
  ``checkin_as_other_device(secret, list_name="main", kind="entry", nonce=None,
  when=None, force=False)`` (a second device, initialized once, calls ``checkinrpc/redeem``
  and gets pretix's status code and answer back), ``checkins_of(position_id)``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gate_daemon.bench.pretix_install import (
    cache_dir,
    is_ready,
    pretix_env,
    python_of,
    template_of,
    write_config,
)
from gate_daemon.bench.pretix_seed import SeededPosition, seed_event
from gate_daemon.errors import GateError

__all__ = ["PretixServer", "SeededPosition", "running_pretix"]

ORGANIZER = "gateorg"
EVENT = "gate2026"
#: The most positions pretix takes in one order.
MAX_ORDER_POSITIONS = 500
#: Starting and migrating a cold pretix is slow on a loaded machine; this only bounds a failure.
START_DEADLINE_S = 180.0


@dataclass
class PretixServer:
    """A running, seeded pretix (see the module docstring for the contract)."""

    url: str
    datadir: Path
    python: Path
    config: Path
    organizer: str = ORGANIZER
    event: str = EVENT
    team_token: str = ""
    device_init_token: str = ""
    lists: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    valid_keys: list[str] = field(default_factory=list)
    positions: dict[str, SeededPosition] = field(default_factory=dict)
    _other_device: str = ""

    # ---------------------------------------------------------------- HTTP

    def api(self, method: str, path: str, json: Any = None, token: str | None = None) -> httpx.Response:
        """One call to ``/api/v1/<path>`` with the team token (or ``token``, e.g. ``Device ...``)."""
        auth = token or f"Token {self.team_token}"
        with httpx.Client(timeout=60.0) as client:
            return client.request(
                method, f"{self.url}/api/v1/{path}", json=json, headers={"Authorization": auth}
            )

    def event_api(self, method: str, path: str, json: Any = None) -> Any:
        """A call relative to the event, whose 2xx answer (JSON, or None) is returned; else GateError."""
        answer = self.api(method, f"organizers/{self.organizer}/events/{self.event}/{path}", json)
        if answer.status_code >= 300:
            raise GateError(f"pretix {method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    def shell(self, script: str) -> str:
        """Run ``script`` in pretix's Django shell (scopes disabled); its standard output."""
        wrapped = "from django_scopes import scopes_disabled\nwith scopes_disabled():\n" + "".join(
            f"    {line}\n" for line in script.splitlines()
        )
        done = subprocess.run(
            [str(self.python), "-m", "pretix", "shell", "-c", wrapped],
            stdin=subprocess.DEVNULL,
            env=pretix_env(self.config),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise GateError(f"pretix shell failed: {done.stderr.strip()[-1500:]}")
        return done.stdout

    # ---------------------------------------------------------------- helpers

    def make_order(
        self, item: str = "ticket", status: str = "paid", name: str = "Ada Gate"
    ) -> SeededPosition:
        """A new order of one position; ``status`` is ``paid`` or ``pending``."""
        order = self.event_api(
            "POST",
            "orders/",
            {
                "email": "buyer@example.org",
                "locale": "en",
                "sales_channel": "web",
                "status": "p" if status == "paid" else "n",
                "payment_provider": "manual",
                "send_email": False,
                "positions": [{"item": self.items[item], "price": "10.00", "attendee_name": name}],
            },
        )
        pos = order["positions"][0]
        return SeededPosition(name, order["code"], pos["id"], item, pos["secret"], status, pos["secret"])

    def make_positions(self, count: int, item: str = "ticket", name: str = "Ada Gate") -> list[str]:
        """``count`` paid positions in as few orders as pretix allows (500 each); their secrets."""
        secrets: list[str] = []
        while len(secrets) < count:
            size = min(MAX_ORDER_POSITIONS, count - len(secrets))
            order = self.event_api(
                "POST",
                "orders/",
                {
                    "email": "buyer@example.org",
                    "locale": "en",
                    "sales_channel": "web",
                    "status": "p",
                    "payment_provider": "manual",
                    "send_email": False,
                    "positions": [
                        {
                            "item": self.items[item],
                            "price": "10.00",
                            "attendee_name": f"{name} {len(secrets) + n}",
                        }
                        for n in range(size)
                    ],
                },
            )
            secrets += [str(p["secret"]) for p in order["positions"]]
        return secrets

    def cancel_order(self, code: str) -> None:
        """Cancel an order (pretix re-keys its positions and revokes the old secrets)."""
        self.event_api("POST", f"orders/{code}/mark_canceled/", {"send_email": False})

    def block(self, position_id: int) -> None:
        """Block a position as the admin does."""
        self.event_api("POST", f"orderpositions/{position_id}/add_block/", {"name": "admin"})

    def regenerate_secret(self, position_id: int) -> str:
        """Re-key a position (its old secret goes on the revocation list); the new secret."""
        return str(self.event_api("POST", f"orderpositions/{position_id}/regenerate_secrets/")["secret"])

    def position(self, position_id: int) -> dict[str, Any]:
        """A position as pretix answers it now."""
        answer: dict[str, Any] = self.event_api("GET", f"orderpositions/{position_id}/")
        return answer

    def checkins_of(self, position_id: int) -> list[dict[str, Any]]:
        """A position's check-ins as pretix stores them (``datetime``, ``list``, ``type``, ``device``...)."""
        return list(self.position(position_id)["checkins"])

    def new_device_token(self, name: str = "gate-central") -> str:
        """An initialization token of a new ``pretixscan`` device for all events."""
        answer = self.api(
            "POST",
            f"organizers/{self.organizer}/devices/",
            {"name": name, "all_events": True, "limit_events": [], "security_profile": "pretixscan"},
        )
        if answer.status_code != 201:
            raise GateError(f"pretix: making a device answered {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["initialization_token"])

    def initialize_device(self, token: str, brand: str = "gate-daemon tests") -> dict[str, Any]:
        """``device/initialize`` with an initialization token: the device's answer (``api_token``...)."""
        answer = self.api(
            "POST",
            "device/initialize",
            {
                "token": token,
                "hardware_brand": brand,
                "hardware_model": "test",
                "software_brand": brand,
                "software_version": "1",
            },
            token="",
        )
        if answer.status_code != 200:
            raise GateError(f"pretix: device/initialize answered {answer.status_code} {answer.text[:300]}")
        result: dict[str, Any] = answer.json()
        return result

    def other_device_token(self) -> str:
        """The API token of a second device (a box office phone), made and initialized once."""
        if not self._other_device:
            device = self.initialize_device(self.new_device_token("box-office-phone"), "box office")
            self._other_device = str(device["api_token"])
        return self._other_device

    def checkin_as_other_device(
        self,
        secret: str,
        list_name: str = "main",
        kind: str = "entry",
        nonce: str | None = None,
        when: str | None = None,
        force: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """``checkinrpc/redeem`` as the second device: pretix's status code and answer."""
        answer = self.api(
            "POST",
            f"organizers/{self.organizer}/checkinrpc/redeem/",
            {
                "secret": secret,
                "lists": [self.lists[list_name]],
                "type": kind,
                "nonce": nonce,
                "datetime": when,
                "force": force,
                "ignore_unpaid": False,
                "questions_supported": False,
            },
            token=f"Device {self.other_device_token()}",
        )
        body: dict[str, Any] = answer.json()
        return answer.status_code, body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_answering(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise GateError(f"pretix exited with {proc.returncode} while starting:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v1/", timeout=2.0).status_code < 500:
                return
        time.sleep(0.2)
    raise GateError(f"pretix did not answer on {url} within {START_DEADLINE_S:.0f} s (log: {log})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running_pretix(workdir: Path, cache: Path | None = None) -> Iterator[PretixServer]:
    """A pretix started in ``workdir`` from the cache's template, seeded; stopped on exit."""
    where = cache or cache_dir()
    if not is_ready(where):
        raise GateError(f"no pretix cache in {where}: run scripts/pretix-cache")
    port = _free_port()
    datadir = workdir / "pretix-data"
    config = write_config(datadir, port)
    shutil.copyfile(template_of(where), datadir / "db.sqlite3")
    # Readers must not block writers: in SQLite's default journal, a bridge polling pretix
    # while another request checks in gets pretix's 500 "database is locked".
    with contextlib.closing(sqlite3.connect(datadir / "db.sqlite3")) as db:
        db.execute("PRAGMA journal_mode=WAL")
    log = datadir / "server.log"
    server = PretixServer(f"http://127.0.0.1:{port}", datadir, python_of(where), config)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(server.python), "-m", "pretix", "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=pretix_env(config),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_answering(server.url, proc, log)
        seed_event(server)
        yield server
    finally:
        _stop(proc)
