"""Finding peer gates on the LAN with zeroconf (mDNS / DNS-SD, service type ``_gate._tcp``).

Optional (``[lan] discover = true``, the ``discovery`` extra). The gate announces itself
as ``<gate id>._gate._tcp.local.`` on its LAN port, with TXT ``gate`` and ``event``,
and browses for the others. A gate of the same event whose id is in the active
manifest's roster becomes a peer like a configured one. Discovery adds reachability,
never trust: a discovered gate is talked to with signed requests, and its records are
kept only if they verify against its roster key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from gate_daemon.errors import GateError

log = logging.getLogger(__name__)

SERVICE = "_gate._tcp.local."
#: How long to wait for a discovered service's address and TXT record.
RESOLVE_MS = 3000


class Discovery:
    """Announce this gate and report the gates found (``found(gate_id, "host:port")``)."""

    def __init__(
        self,
        *,
        gate_id: str,
        event_id: str,
        host: str,
        port: int,
        found: Callable[[str, str], None],
    ) -> None:
        self.gate_id = gate_id
        self.event_id = event_id
        self.host = host
        self.port = port
        self._found = found
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Announce and start browsing; ``GateError`` naming the address if it cannot."""
        specific = self.host not in ("0.0.0.0", "::")  # noqa: S104 (compared, not bound)
        addresses = [self.host] if specific else _ipv4_addresses()
        try:
            self._zeroconf = AsyncZeroconf(
                interfaces=[self.host] if specific else InterfaceChoice.All, ip_version=IPVersion.V4Only
            )
            info = AsyncServiceInfo(
                SERVICE,
                f"{self.gate_id}.{SERVICE}",
                addresses=[ipaddress.ip_address(a).packed for a in addresses],
                port=self.port,
                properties={"gate": self.gate_id, "event": self.event_id},
                server=f"{self.gate_id}.local.",
            )
            await self._zeroconf.async_register_service(info, allow_name_change=False)
        except (OSError, ValueError) as exc:
            await self.aclose()
            raise GateError(
                f"cannot announce the gate with zeroconf on {self.host} ([lan] discover): {exc}"
            ) from None
        self._browser = AsyncServiceBrowser(self._zeroconf.zeroconf, SERVICE, handlers=[self._changed])

    def _changed(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added and name != f"{self.gate_id}.{SERVICE}":
            task = asyncio.ensure_future(self._resolve(zeroconf, service_type, name))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, RESOLVE_MS):
            return
        props = {key: value for key, value in info.properties.items() if value is not None}
        gate = props.get(b"gate", b"").decode("utf-8", "replace")
        event = props.get(b"event", b"").decode("utf-8", "replace")
        ipv4 = [a for a in info.parsed_addresses() if ":" not in a]
        if event != self.event_id or not gate or gate == self.gate_id or not ipv4 or not info.port:
            return
        log.info("discovered gate %s at %s:%d", gate[:64], ipv4[0], info.port)
        self._found(gate[:64], f"{ipv4[0]}:{info.port}")

    async def aclose(self) -> None:
        """Stop browsing and withdraw the announcement."""
        for task in list(self._pending):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._zeroconf is not None:
            await self._zeroconf.async_unregister_all_services()
            await self._zeroconf.async_close()
            self._zeroconf = None


def _ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses, loopback aside: where a gate listening on 0.0.0.0 is reached."""
    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ip.ip.startswith("127.")
    ]
    return found or ["127.0.0.1"]
