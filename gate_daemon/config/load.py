"""The gate's configuration file, validated at load into frozen objects.

Unknown keys are refused, every number is bounded, and every problem names the file,
the key and its line (``SourceError``). Relative paths are relative to the config
file's folder. A path may start with ``${CREDENTIALS_DIRECTORY}``, ``${STATE_DIRECTORY}``
or ``${RUNTIME_DIRECTORY}``, which systemd sets for the service (``LoadCredential=``,
``StateDirectory=``, ``RuntimeDirectory=``). ``config/gate.example.toml`` documents
every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import urllib.parse
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from gate_daemon.config.pins import gpio_pins, no_shared_pins, pin_value
from gate_daemon.config.screen import screen_section
from gate_daemon.config.sections import (
    ButtonAction,
    BuzzerKind,
    CameraSettings,
    ControlSection,
    DecoderKind,
    GateConfig,
    GateSection,
    InputKind,
    InputSection,
    LanSection,
    ManifestSection,
    SignalsKind,
    SignalsSection,
    TurnstileSection,
    UpstreamSection,
)
from gate_daemon.config.toml import SYSTEMD_DIRS, Checker, KeyPath, expand_dirs, load
from gate_daemon.core.decision import ScanKind

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOP_KEYS = {"gate", "manifest", "input", "signals", "turnstile", "control", "lan", "upstream", "screen"}
GATE_KEYS = {"id", "event", "zone", "session", "state_dir", "mode", "repeat_window_ms", "decision"}
GATE_KEYS |= {"confirm_timeout_ms"}
GATE_KEYS |= {"operator_idle_s", "override_window_s"}
UPSTREAM_KEYS = {
    "url",
    "timeout_ms",
    "batch",
    "push_interval_ms",
    "pull_interval_ms",
    "manifest_interval_s",
    "manifest_timeout_s",
    "heartbeat_interval_s",
    "validate_timeout_ms",
    "breaker_latency_ms",
    "breaker_failures",
    "probe_interval_ms",
    "probes",
    "clock_warn_s",
}
_E = TypeVar("_E", bound=StrEnum)


def load_config(path: Path, environ: dict[str, str] | None = None) -> GateConfig:
    """Read and validate a gate config file; raises ``SourceError`` listing every problem."""
    doc, text = load(path)
    env = dict(os.environ) if environ is None else environ
    check = Checker(path, text, TOP_KEYS)
    check.table(doc, (), TOP_KEYS, required={"gate", "manifest"})
    paths = _Paths(check, path.parent, env)
    gate = _gate(check, doc.get("gate", {}), paths)
    manifest = _manifest(check, doc.get("manifest", {}), paths)
    inputs = _input(check, doc.get("input", {}), paths)
    signals = _signals(check, doc.get("signals", {}))
    turnstile = _turnstile(check, doc.get("turnstile", {}), ("turnstile",))
    no_shared_pins(check, signals, turnstile)
    socket = _socket(check, doc.get("control", {}), paths, gate.state_dir)
    lan = _lan(check, doc.get("lan", {}), ("lan",))
    if isinstance(doc.get("lan"), dict) and "key" in doc["lan"]:
        lan = dataclasses.replace(lan, key=paths.value(doc["lan"], ("lan",), "key"))
    for wanted in ("peers", "discover"):
        if getattr(lan, wanted) and not lan.replicates:
            check.problem(
                ("lan", wanted), f"{wanted} need this gate's key ([lan] key) and an address ([lan] listen)"
            )
    upstream = _upstream(check, doc.get("upstream", {}), ("upstream",))
    if upstream.url is not None and lan.key is None:
        check.problem(
            ("upstream", "url"),
            "the central needs this gate's key ([lan] key): it signs requests and records",
        )
    if gate.decision == "online-first" and upstream.url is None:
        check.problem(("gate", "decision"), '"online-first" needs the central: set [upstream] url')
    screen = screen_section(check, doc.get("screen"), _LISTEN, paths.resolve)
    check.finish()
    return GateConfig(
        source=path,
        gate=gate,
        manifest=manifest,
        input=inputs,
        signals=signals,
        control=ControlSection(socket=socket),
        turnstile=turnstile,
        lan=lan,
        upstream=upstream,
        screen=screen,
    )


def load_pins_config(path: Path) -> GateConfig:
    """A config read for its devices alone (``safe-state``, ``hwtest``), in or out of the unit.

    systemd's directory variables may be unset there (a tech at a shell, or after the
    service stopped): they stand for placeholders, since no path is used.
    """
    environ = dict(os.environ)
    for name in SYSTEMD_DIRS:
        environ.setdefault(name, f"/nonexistent/{name}")
    return load_config(path, environ)


@dataclasses.dataclass(frozen=True)
class _Paths:
    """Reads the config's paths: relative to its folder, with systemd's directories put in."""

    check: Checker
    base: Path
    env: dict[str, str]

    def resolve(self, raw: str, where: KeyPath) -> Path:
        """``raw`` as a path, or an empty one after a problem naming ``where``."""
        if not raw or "\0" in raw:
            self.check.problem(where, "a path must not be empty or hold a NUL character")
            return Path()
        try:
            return self.base / expand_dirs(raw, self.env)
        except ValueError as exc:
            self.check.problem(where, f"{raw!r}: {exc}")
            return Path()

    def value(self, tbl: dict[str, Any], at: KeyPath, key: str) -> Path:
        """The path at ``key`` of a table; an empty one when absent or wrong."""
        if key not in tbl:
            return Path()  # a required key's absence is reported by check.table
        raw = tbl[key]
        if not isinstance(raw, str):
            self.check.string(tbl, at, key)  # names the wrong type
            return Path()
        if len(raw.encode("utf-8", "surrogatepass")) > 1024:
            self.check.problem((*at, key), "longer than 1024 bytes")
            return Path()
        return self.resolve(raw, (*at, key))


def _gate(check: Checker, value: object, paths: _Paths) -> GateSection:
    g = check.table(
        value,
        ("gate",),
        GATE_KEYS,
        required={"id", "event", "state_dir"},
    )
    at: KeyPath = ("gate",)
    mode_text = check.string(g, at, "mode", default="entry")
    if mode_text not in {"entry", "exit"}:
        check.problem((*at, "mode"), f'{mode_text!r} must be "entry" or "exit"')
        mode_text = "entry"
    decision = check.string(g, at, "decision", default="local")
    if decision not in {"local", "online-first"}:
        check.problem((*at, "decision"), f'{decision!r} must be "local" or "online-first"')
        decision = "local"
    return GateSection(
        id=check.string(g, at, "id", pattern=IDENT, max_bytes=64),
        event=check.string(g, at, "event", pattern=IDENT, max_bytes=64),
        zone=check.string(g, at, "zone", pattern=IDENT, max_bytes=16) or None,
        session=check.string(g, at, "session", pattern=IDENT, max_bytes=16) or None,
        state_dir=paths.value(g, at, "state_dir"),
        kind=ScanKind(mode_text),
        repeat_window_ms=check.integer(g, at, "repeat_window_ms", low=0, high=600_000, default=3000),
        decision=decision,
        confirm_timeout_ms=check.integer(g, at, "confirm_timeout_ms", low=1000, high=600_000, default=15000),
        operator_idle_s=check.integer(g, at, "operator_idle_s", low=10, high=86_400, default=1800),
        override_window_s=check.integer(g, at, "override_window_s", low=1, high=3600, default=60),
    )


def _manifest(check: Checker, value: object, paths: _Paths) -> ManifestSection:
    m = check.table(
        value,
        ("manifest",),
        {"path", "trusted_keys", "poll_ms"},
        required={"path", "trusted_keys"},
    )
    at: KeyPath = ("manifest",)
    keys: list[Path] = []
    raw_keys = check.strings(m, at, "trusted_keys")
    if m.get("trusted_keys") == []:
        check.problem((*at, "trusted_keys"), "list at least one .pub file")
    for index, raw in enumerate(raw_keys):
        keys.append(paths.resolve(raw, (*at, "trusted_keys", index)))
    return ManifestSection(
        path=paths.value(m, at, "path"),
        trusted_keys=tuple(keys),
        poll_ms=check.integer(m, at, "poll_ms", low=100, high=3_600_000, default=2000),
    )


def _input(check: Checker, value: object, paths: _Paths) -> InputSection:
    i = check.table(
        value,
        ("input",),
        {"kind", "path", "poll_ms", "decoder", "device", "baud", "grab", "camera"},
    )
    at: KeyPath = ("input",)
    kind = _choice(check, i, at, "kind", InputKind, InputKind.NONE)
    images = paths.value(i, at, "path") if "path" in i else None
    if kind is InputKind.IMAGES and images is None:
        check.problem((*at, "path"), 'missing (required for kind = "images": the folder to watch)')
    device = paths.value(i, at, "device") if "device" in i else None
    if kind in {InputKind.HID, InputKind.SERIAL} and device is None:
        check.problem(
            (*at, "device"), f'missing (required for kind = "{kind.value}": the scanner\'s device node)'
        )
    return InputSection(
        kind=kind,
        path=images,
        poll_ms=check.integer(i, at, "poll_ms", low=10, high=60_000, default=100),
        decoder=_choice(check, i, at, "decoder", DecoderKind, DecoderKind.AUTO),
        device=device,
        baud=_baud(check, i, at),
        grab=check.boolean(i, at, "grab", default=True),
        camera=_camera(check, i.get("camera", {}), (*at, "camera")),
    )


def _signals(check: Checker, value: object) -> SignalsSection:
    s = check.table(value, ("signals",), {"kind", "color", "hold_ms", "pins", "buzzer"})
    at: KeyPath = ("signals",)
    color = check.string(s, at, "color", default="auto")
    if color not in {"auto", "always", "never"}:
        check.problem((*at, "color"), f'{color!r} must be "auto", "always" or "never"')
    return SignalsSection(
        kind=_choice(check, s, at, "kind", SignalsKind, SignalsKind.CONSOLE),
        color=color,
        hold_ms=check.integer(s, at, "hold_ms", low=100, high=60_000, default=1500),
        pins=gpio_pins(check, s.get("pins", {}), (*at, "pins")),
        buzzer=_choice(check, s, at, "buzzer", BuzzerKind, BuzzerKind.PLAIN),
    )


def _socket(check: Checker, value: object, paths: _Paths, state_dir: Path) -> Path:
    """The control socket's path: ``[control] socket``, else in the state directory."""
    c = check.table(value, ("control",), {"socket"})
    socket = paths.value(c, ("control",), "socket") if "socket" in c else state_dir / "control.sock"
    if len(os.fsencode(socket)) > 100:
        check.problem(
            ("control", "socket"), f"{socket} is too long for a unix socket path (at most 100 bytes)"
        )
    return socket


def _choice(check: Checker, tbl: dict[str, Any], at: KeyPath, key: str, enum: type[_E], default: _E) -> _E:
    text = check.string(tbl, at, key, default=default.value)
    try:
        return enum(text)
    except ValueError:
        allowed = ", ".join(f'"{e.value}"' for e in enum)
        check.problem((*at, key), f"{text!r} is not one of {allowed}")
        return default


#: Line speeds a serial scanner is set to.
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>[0-9]{1,5})")


def _lan(check: Checker, value: object, at: KeyPath) -> LanSection:
    tbl = check.table(
        value, at, {"listen", "rate", "key", "peers", "pull_interval_ms", "timeout_ms", "discover"}
    )
    plain = LanSection(
        rate=check.integer(tbl, at, "rate", low=1, high=10_000, default=20),
        peers=_peers(check, tbl, at),
        pull_interval_ms=check.integer(tbl, at, "pull_interval_ms", low=100, high=3_600_000, default=1000),
        timeout_ms=check.integer(tbl, at, "timeout_ms", low=50, high=60_000, default=2000),
        discover=check.boolean(tbl, at, "discover", default=False),
    )
    listen = check.string(tbl, at, "listen", max_bytes=100)
    if not listen:
        return plain
    match = _LISTEN.fullmatch(listen)
    port = int(match.group("port")) if match else 0
    if match is None or not 0 <= port <= 65535:  # 0: a free port the system picks
        check.problem(
            (*at, "listen"), f"{listen!r} must be HOST:PORT (0.0.0.0:8443, [::]:8443, 192.168.1.20:8443)"
        )
        return plain
    return dataclasses.replace(plain, host=match.group("v6") or match.group("host"), port=port)


_URL = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/\-]*)?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/\-]*)?"
)


def _upstream(check: Checker, value: object, at: KeyPath) -> UpstreamSection:
    tbl = check.table(value, at, UPSTREAM_KEYS)

    def ms(key: str, low: int, high: int, default: int) -> int:
        return check.integer(tbl, at, key, low=low, high=high, default=default)

    section = UpstreamSection(
        timeout_ms=ms("timeout_ms", 100, 600_000, 10_000),
        batch=ms("batch", 1, 500, 500),
        push_interval_ms=ms("push_interval_ms", 50, 3_600_000, 1000),
        pull_interval_ms=ms("pull_interval_ms", 100, 3_600_000, 5000),
        manifest_interval_s=ms("manifest_interval_s", 5, 86_400, 60),
        manifest_timeout_s=ms("manifest_timeout_s", 5, 3600, 300),
        heartbeat_interval_s=ms("heartbeat_interval_s", 1, 86_400, 15),
        validate_timeout_ms=ms("validate_timeout_ms", 20, 10_000, 500),
        breaker_latency_ms=ms("breaker_latency_ms", 10, 10_000, 300),
        breaker_failures=ms("breaker_failures", 1, 1000, 3),
        probe_interval_ms=ms("probe_interval_ms", 100, 600_000, 5000),
        probes=ms("probes", 1, 100, 2),
        clock_warn_s=ms("clock_warn_s", 1, 86_400, 5),
    )
    if section.breaker_latency_ms > section.validate_timeout_ms:
        check.problem(
            (*at, "breaker_latency_ms"),
            f"{section.breaker_latency_ms} is longer than validate_timeout_ms"
            f" ({section.validate_timeout_ms}): a call that slow has already timed out",
        )
    url = check.string(tbl, at, "url", max_bytes=512)
    if not url:
        return section
    if _URL.fullmatch(url) is None or not _url_port_ok(url):
        check.problem((*at, "url"), f"{url!r} must be http(s)://HOST[:PORT][/PATH] (http://central.lan:8700)")
        return section
    return dataclasses.replace(section, url=url)


def _url_port_ok(url: str) -> bool:
    """Whether a URL's port, if it names one, is 1..65535 (the pattern takes any five digits)."""
    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError:  # out of range
        return False
    return port is None or port > 0


def _unspecified(match: re.Match[str]) -> bool:
    """Whether a HOST:PORT names "every interface" (0.0.0.0, ::): fine to listen on, no peer."""
    try:
        return ipaddress.ip_address(match.group("v6") or match.group("host")).is_unspecified
    except ValueError:
        return False  # a host name


#: Peers one gate may list.
MAX_PEERS = 256


def _peers(check: Checker, tbl: dict[str, Any], at: KeyPath) -> tuple[str, ...]:
    out: list[str] = []
    for index, peer in enumerate(check.strings(tbl, at, "peers")[: MAX_PEERS + 1]):
        match = _LISTEN.fullmatch(peer)
        if index == MAX_PEERS:
            check.problem((*at, "peers"), f"at most {MAX_PEERS} peers; use zones (docs/LAN.md)")
        elif match is None or not 1 <= int(match.group("port")) <= 65535 or _unspecified(match):
            check.problem((*at, "peers", index), f"{peer!r} must be HOST:PORT of a gate (10.0.0.12:8443)")
        elif peer in out:
            check.problem((*at, "peers", index), f"{peer!r} is listed twice")
        else:
            out.append(peer)
    return tuple(out)


def _baud(check: Checker, tbl: dict[str, Any], at: KeyPath) -> int:
    baud = check.integer(tbl, at, "baud", low=1, high=4_000_000, default=9600)
    if baud not in BAUDS:
        check.problem((*at, "baud"), f"{baud} is not a serial speed ({', '.join(map(str, BAUDS))})")
        return 9600
    return baud


def _camera(check: Checker, value: object, at: KeyPath) -> CameraSettings:
    tbl = check.table(
        value, at, {"width", "height", "fps", "focus", "focus_cm", "exposure_us", "gain", "index", "zoom"}
    )
    focus = check.string(tbl, at, "focus", default="continuous")
    if focus not in {"continuous", "fixed"}:
        check.problem((*at, "focus"), f'{focus!r} must be "continuous" or "fixed"')
        focus = "continuous"
    gain = check.number(tbl, at, "gain", low=0.0, high=16.0, default=0.0)
    if 0 < gain < 1:
        check.problem((*at, "gain"), f"{gain} must be 0 (automatic) or 1.0..16.0")
        gain = 0.0
    exposure = check.integer(tbl, at, "exposure_us", low=0, high=1_000_000, default=0)
    return CameraSettings(
        width=check.integer(tbl, at, "width", low=160, high=2304, default=640),
        height=check.integer(tbl, at, "height", low=120, high=1296, default=480),
        fps=check.integer(tbl, at, "fps", low=1, high=120, default=15),
        focus=focus,
        focus_cm=check.integer(tbl, at, "focus_cm", low=5, high=1000, default=25),
        exposure_us=exposure,
        gain=gain,
        index=check.integer(tbl, at, "index", low=0, high=7, default=0),
        zoom=check.number(tbl, at, "zoom", low=1.0, high=4.0, default=1.0),
    )


def _turnstile(check: Checker, value: object, at: KeyPath) -> TurnstileSection:
    tbl = check.table(
        value,
        at,
        {
            "relay", "relay_active_low", "pulse_ms", "passage", "passage_active_low", "pass_timeout_ms",
            "button", "button_action", "button_operator", "exit_arm_ms",
        },
    )  # fmt: skip
    section = TurnstileSection(
        relay=pin_value(check, tbl, at, "relay", None),
        relay_active_low=check.boolean(tbl, at, "relay_active_low", default=False),
        pulse_ms=check.integer(tbl, at, "pulse_ms", low=50, high=30_000, default=1000),
        passage=pin_value(check, tbl, at, "passage", None),
        passage_active_low=check.boolean(tbl, at, "passage_active_low", default=True),
        pass_timeout_ms=check.integer(tbl, at, "pass_timeout_ms", low=500, high=120_000, default=8000),
        button=pin_value(check, tbl, at, "button", None),
        button_action=_choice(check, tbl, at, "button_action", ButtonAction, ButtonAction.RELEASE),
        button_operator=check.string(
            tbl, at, "button_operator", default="button", pattern=IDENT, max_bytes=64
        ),
        exit_arm_ms=check.integer(tbl, at, "exit_arm_ms", low=1000, high=120_000, default=10_000),
    )
    if section.passage is not None and section.relay is None:
        check.problem((*at, "passage"), "a passage sensor needs a relay: nothing is released to pass through")
    if section.passage is not None and section.pass_timeout_ms < section.pulse_ms:
        # An admission taken back while the turnstile is still free: the person who then
        # passes is inside, and their ticket can be used again.
        check.problem(
            (*at, "pass_timeout_ms"),
            f"{section.pass_timeout_ms} is shorter than pulse_ms ({section.pulse_ms}): "
            "an entry would be taken back while the turnstile is still released",
        )
    if section.button is not None and section.button_action is ButtonAction.RELEASE and section.relay is None:
        check.problem((*at, "button"), 'button_action = "release" needs a relay to release')
    return section
