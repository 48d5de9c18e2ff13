"""The bridge as a pretix device: initialized once, its token kept in the central's state (0600).

``POST /api/v1/device/initialize`` spends the initialization token a venue admin made in
pretix (organizer settings, Devices); the answer's ``api_token`` is written to
``STATE/pretix-device.json`` with mode 0600 and used from then on. A token file already
there for the same pretix and organizer is used as it is, so the initialization token
(single use) is read only on the first start.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from gate_daemon.errors import GateError
from gate_daemon.files import read_regular, write_atomic

from .client import PretixClient, PretixError

log = logging.getLogger(__name__)

DEVICE_FILE = "pretix-device.json"
_MAX_FILE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Device:
    """The device pretix made for the bridge."""

    device_id: int
    name: str
    token: str


class DeviceError(GateError):
    """The bridge cannot be (or is no longer) a pretix device; the message says what to do."""


async def device(client: PretixClient, state_dir: Path, init_token: Path) -> Device:
    """The bridge's device: the one kept in ``state_dir``, or a new one made from ``init_token``."""
    path = state_dir / DEVICE_FILE
    kept = _read(path, client)
    if kept is not None:
        client.use_token(kept.token)
        return kept
    try:
        token = read_regular(init_token, 4096).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceError(f"{init_token}: cannot read the initialization token ({exc})") from None
    if not token:
        raise DeviceError(f"{init_token}: the initialization token file is empty")
    body = {
        "token": token,
        "hardware_brand": "gate-daemon",
        "hardware_model": "gate-central",
        "os_name": "Linux",
        "os_version": platform.release() or "unknown",
        "software_brand": "gate-daemon",
        "software_version": _version(),
    }
    try:
        _, answer = await client.post("/api/v1/device/initialize", body, answers=(200,))
    except PretixError as exc:
        if exc.name in ("refused", "denied"):
            raise DeviceError(
                f"pretix refused to initialize with the token in {init_token} ({exc.detail}); a token"
                " works once: make a new device in pretix and put its token in the file"
            ) from None
        raise
    if not isinstance(answer, dict) or not isinstance(answer.get("api_token"), str):
        raise PretixError("garbage", "POST /api/v1/device/initialize: no api_token in the answer")
    made = Device(int(answer.get("device_id") or 0), str(answer.get("name") or ""), answer["api_token"])
    record = {"url": client.url("/"), "organizer": client.organizer, "device_id": made.device_id}
    record |= {"name": made.name, "api_token": made.token}
    write_atomic(path, json.dumps(record).encode(), mode=0o600)
    log.info("initialized as pretix device %d (%s)", made.device_id, made.name)
    client.use_token(made.token)
    return made


def _read(path: Path, client: PretixClient) -> Device | None:
    try:
        raw = json.loads(read_regular(path, _MAX_FILE))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DeviceError(
            f"{path}: cannot read the kept device token ({exc}); remove it to initialize again"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("api_token"), str):
        raise DeviceError(f"{path}: not a device file; remove it to initialize again")
    if raw.get("url") != client.url("/") or raw.get("organizer") != client.organizer:
        raise DeviceError(
            f"{path} is a device of {raw.get('url')} organizer {raw.get('organizer')}, not of [source]:"
            " remove it to initialize against the new pretix"
        )
    return Device(int(raw.get("device_id") or 0), str(raw.get("name") or ""), raw["api_token"])


def _version() -> str:
    """This package's version, as pretix shows the device's software."""
    try:
        return metadata.version("gate-daemon")
    except metadata.PackageNotFoundError:
        return "unknown"
