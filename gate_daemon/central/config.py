"""The central's configuration file (``[central]``), validated at load into a frozen object.

Unknown keys are refused, numbers are bounded, and every problem names the file, the key
and its line (``SourceError``). Relative paths are relative to the config file's folder.
A path may start with ``${CREDENTIALS_DIRECTORY}`` or ``${STATE_DIRECTORY}``, which systemd
sets for the service (``LoadCredential=``, ``StateDirectory=``; systemd/gate-central.service).
``config/central.example.toml`` documents every key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate_daemon.config.toml import Checker, KeyPath, expand_dirs, load
from gate_daemon.core.fleet import Thresholds
from gate_daemon.provision.event import EventSpec, load_event

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>[0-9]{1,5})")
TOP_KEYS = {"central", "fleet", "source"}
CENTRAL_KEYS = {
    "id",
    "listen",
    "state_dir",
    "event",
    "tickets",
    "key",
    "poll_ms",
    "rate",
    "sop",
    "fleet_allow",
    "fleet_hosts",
}
FLEET_KEYS = {"silent_s", "manifest_age_s", "clock_s", "lag_s", "backlog"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_THRESHOLDS = Thresholds()
#: Who may read the fleet (``/fleet``, ``/v1/fleet``) unless ``fleet_allow`` says otherwise: this machine.
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_REQUIRED = {"state_dir", "event", "key"}
#: The directories systemd/gate-central.service gives the central (it has no runtime directory).
SYSTEMD_DIRS = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")


@dataclass(frozen=True, slots=True)
class CentralConfig:
    """Everything ``gate-central`` needs to run."""

    id: str
    host: str
    port: int
    state_dir: Path
    event: Path
    tickets: Path
    key: Path
    #: How often event.toml and tickets.csv are checked for changes.
    poll_ms: int = 2000
    #: ``GET /v1/challenge`` requests a second per client address (bursts of twice that).
    rate: int = 20
    #: The folder of SOP cards (``NAME.md`` per fleet condition); None: the page shows none.
    sop: Path | None = None
    #: The client networks that may read the fleet (the page and ``GET /v1/fleet``).
    fleet_allow: tuple[Network, ...] = LOOPBACK
    #: The host names (``Host``) the fleet and the command list answer to, beyond the listen
    #: host, the loopback names and any IP address: what a browser's address bar says.
    fleet_hosts: tuple[str, ...] = ()
    #: When a gate needs attention (``[fleet]``).
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    #: Where sessions and tickets come from (``[source]``): None for the files (event.toml + tickets.csv).
    source: PretixSource | None = None

    @property
    def database(self) -> Path:
        """The SQLite file."""
        return self.state_dir / "central.sqlite"

    def read_event(self) -> EventSpec:
        """The event file ``event`` names, read as this central reads it: a venue file with a pretix
        source (``[event] name`` optional, no sessions: they come from pretix), an event.toml otherwise."""
        return load_event(self.event, venue=self.source is not None)

    @property
    def manifests_dir(self) -> Path:
        """Where built manifests and cached deltas are kept."""
        return self.state_dir / "manifests"


def load_central_config(path: Path, environ: Mapping[str, str] | None = None) -> CentralConfig:
    """Read and validate a central config file; ``SourceError`` listing every problem otherwise.

    ``${...}`` in paths come from ``environ`` (the process environment when not given).
    """
    doc, text = load(path)
    env = os.environ if environ is None else environ
    check = Checker(path, text, TOP_KEYS)
    check.table(doc, (), TOP_KEYS, required={"central"})
    at: KeyPath = ("central",)
    tbl = check.table(doc.get("central", {}), at, CENTRAL_KEYS, _REQUIRED)

    def path_value(key: str) -> Path:
        raw = tbl.get(key)
        if raw is None:
            return Path()  # reported as missing by check.table
        if not isinstance(raw, str):
            check.string(tbl, at, key)  # names the wrong type
            return Path()
        if not raw or "\0" in raw or len(raw.encode("utf-8", "surrogatepass")) > 1024:
            check.problem((*at, key), "a path must be 1 to 1024 bytes without a NUL character")
            return Path()
        try:
            return path.parent / expand_dirs(raw, env, SYSTEMD_DIRS)
        except ValueError as exc:
            check.problem((*at, key), f"{raw!r}: {exc}")
            return Path()

    host, port = _listen(check, tbl, at)
    sop = path_value("sop") if "sop" in tbl else None
    source = _source(check, doc.get("source", {}), path, env)
    if source is None and "tickets" not in tbl:
        check.problem((*at, "tickets"), "missing (required unless [source] kind is pretix)")
    elif source is not None and "tickets" in tbl:
        check.problem((*at, "tickets"), 'not used with [source] kind = "pretix": tickets come from pretix')
    config = CentralConfig(
        id=check.string(tbl, at, "id", default="central", pattern=IDENT, max_bytes=64),
        host=host,
        port=port,
        state_dir=path_value("state_dir"),
        event=path_value("event"),
        tickets=path_value("tickets") if "tickets" in tbl else Path(),
        key=path_value("key"),
        poll_ms=check.integer(tbl, at, "poll_ms", low=100, high=3_600_000, default=2000),
        rate=check.integer(tbl, at, "rate", low=1, high=10_000, default=20),
        sop=sop,
        fleet_allow=_networks(check, tbl, at),
        fleet_hosts=_hosts(check, tbl, at),
        thresholds=_thresholds(check, doc.get("fleet", {})),
        source=source,
    )
    check.finish()
    return config


def _listen(check: Checker, tbl: dict[str, Any], at: KeyPath) -> tuple[str, int]:
    listen = check.string(tbl, at, "listen", default="127.0.0.1:8700", max_bytes=100)
    match = _LISTEN.fullmatch(listen)
    port = int(match.group("port")) if match else -1
    if match is None or not 0 <= port <= 65535:  # 0: a free port the system picks
        check.problem((*at, "listen"), f"{listen!r} must be HOST:PORT (127.0.0.1:8700, [::]:8700)")
        return "127.0.0.1", 8700
    return match.group("v6") or match.group("host"), port


def _networks(check: Checker, tbl: dict[str, Any], at: KeyPath) -> tuple[Network, ...]:
    if "fleet_allow" not in tbl:
        return LOOPBACK
    networks = []
    for text in check.strings(tbl, at, "fleet_allow"):
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError:
            check.problem((*at, "fleet_allow"), f"{text!r} is not a network (10.0.0.0/8, ::1/128, 127.0.0.1)")
    return tuple(networks)


def _thresholds(check: Checker, value: object) -> Thresholds:
    at: KeyPath = ("fleet",)
    tbl = check.table(value, at, FLEET_KEYS)
    default = Thresholds()
    return Thresholds(
        silent_s=check.number(tbl, at, "silent_s", low=1, high=86_400, default=default.silent_s),
        manifest_age_s=check.number(
            tbl, at, "manifest_age_s", low=60, high=366 * 86_400, default=default.manifest_age_s
        ),
        clock_s=check.number(tbl, at, "clock_s", low=0.1, high=86_400, default=default.clock_s),
        lag_s=check.number(tbl, at, "lag_s", low=1, high=86_400, default=default.lag_s),
        backlog=check.integer(tbl, at, "backlog", low=1, high=10_000_000, default=default.backlog),
    )


_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _hosts(check: Checker, tbl: dict[str, Any], at: KeyPath) -> tuple[str, ...]:
    names = []
    for text in check.strings(tbl, at, "fleet_hosts"):
        name = text.lower().rstrip(".")
        if _HOST_NAME.fullmatch(name) is None:
            check.problem((*at, "fleet_hosts"), f"{text!r} is not a host name (central.venue.example)")
        else:
            names.append(name)
    return tuple(names)


SOURCE_KEYS = {
    "kind", "url", "organizer", "event", "init_token", "interval_s", "timeout_s", "online_timeout_ms",
    "lists",
}  # fmt: skip
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,49}")
_URL = re.compile(r"https?://[^\s/?#]+(?:/[^\s?#]*)?")


@dataclass(frozen=True, slots=True)
class PretixSource:
    """``[source] kind = "pretix"``: the pretix event the central bridges (docs/PRETIX.md)."""

    url: str
    organizer: str
    event: str
    #: A file holding a device initialization token (used once; the device token is kept in ``state_dir``).
    init_token: Path
    #: Zone id -> the pretix check-in list that zone serves, in the order written.
    lists: tuple[tuple[str, int], ...]
    #: How often pretix is asked for changes, and the check-ins sent.
    interval_s: float = 10.0
    #: How long one request to pretix may take.
    timeout_s: float = 10.0
    #: How long an online-first validation waits for pretix's redeem (under the gates' own deadline).
    online_timeout_ms: int = 400


def _source(check: Checker, value: object, path: Path, env: Mapping[str, str]) -> PretixSource | None:
    """``[source]``: None for the file source (the default), the pretix event otherwise."""
    at: KeyPath = ("source",)
    tbl = check.table(value, at, SOURCE_KEYS)
    kind = check.string(tbl, at, "kind", default="file", max_bytes=16)
    if kind == "file":
        extra = sorted(set(tbl) - {"kind"})
        if extra:
            check.problem((*at, extra[0]), 'only [source] kind = "pretix" takes this key')
        return None
    if kind != "pretix":
        check.problem((*at, "kind"), f'{kind!r} must be "file" or "pretix"')
        return None
    for key in ("url", "organizer", "event", "init_token", "lists"):
        if key not in tbl:
            check.problem((*at, key), 'missing (required with kind = "pretix")')
    url = check.string(tbl, at, "url", default="", max_bytes=1024).rstrip("/")
    if "url" in tbl and _URL.fullmatch(url) is None:
        check.problem((*at, "url"), f"{url!r} must be an http(s) URL (https://pretix.example.org)")
    organizer = check.string(tbl, at, "organizer", default="x", pattern=_SLUG, max_bytes=50)
    event = check.string(tbl, at, "event", default="x", pattern=_SLUG, max_bytes=50)
    token = Path()
    raw = tbl.get("init_token")
    if isinstance(raw, str) and raw and "\0" not in raw:
        try:
            token = path.parent / expand_dirs(raw, env, SYSTEMD_DIRS)
        except ValueError as exc:
            check.problem((*at, "init_token"), f"{raw!r}: {exc}")
    elif raw is not None:
        check.problem((*at, "init_token"), "must be the path of a file holding the initialization token")
    return PretixSource(
        url=url,
        organizer=organizer,
        event=event,
        init_token=token,
        lists=_lists(check, tbl.get("lists", {})),
        interval_s=check.number(tbl, at, "interval_s", low=0.1, high=3600, default=10.0),
        timeout_s=check.number(tbl, at, "timeout_s", low=0.5, high=300, default=10.0),
        online_timeout_ms=check.integer(tbl, at, "online_timeout_ms", low=50, high=60_000, default=400),
    )


def _lists(check: Checker, value: object) -> tuple[tuple[str, int], ...]:
    """``[source.lists]``: zone id = check-in list id, at least one, each list once."""
    at: KeyPath = ("source", "lists")
    if not isinstance(value, dict):
        check.problem(at, "must be a table of zone id = check-in list id")
        return ()
    found: list[tuple[str, int]] = []
    for zone, list_id in value.items():
        if IDENT.fullmatch(zone) is None or len(zone.encode()) > 16:
            check.problem((*at, zone), "a zone id is 1 to 16 letters, digits, . _ -")
        elif isinstance(list_id, bool) or not isinstance(list_id, int) or not 1 <= list_id < 2**53:
            check.problem((*at, zone), f"{list_id!r} must be a check-in list id (a whole number)")
        elif any(list_id == other for _, other in found):
            check.problem((*at, zone), f"check-in list {list_id} serves another zone already")
        else:
            found.append((zone, list_id))
    if not found and not value:
        check.problem(at, "name at least one zone = check-in list")
    return tuple(found)
