"""The scenario's faults, made and healed on the timeline while the crowd scans.

Each fault becomes a ``Window`` (start, end, label, the gates it touches) for the report's
KPIs and its chart. Commands that touch the network or wait on a process run on a thread,
so the crowd's driver never waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gate_daemon.drill import network
from gate_daemon.drill.driver import Driver
from gate_daemon.drill.network import CENTRAL_PORT, RELAY_BASE_PORT
from gate_daemon.drill.relay import Relay
from gate_daemon.drill.scenario import Fault, Scenario
from gate_daemon.drill.venue import Venue

#: What heals a fault (None: nothing to heal).
Heal = Callable[[], Awaitable[None]] | None


@dataclass(frozen=True)
class Window:
    """When a fault was on, and which gates it touched (``()``: all of them)."""

    start_ms: int
    end_ms: int
    label: str
    gates: tuple[str, ...] = ()
    kind: str = ""


def gates_of(fault: Fault, size: int) -> tuple[int, ...]:
    """The venue's gate numbers a fault names (numbers past the venue's size wrap around)."""
    return tuple(sorted({(n - 1) % size + 1 for n in fault.gates}))


def islands_of(fault: Fault, size: int) -> list[list[int]]:
    """The gates of each island, in contiguous runs; the central stays with the first."""
    count = min(fault.islands, size)
    return [[n for n in range(1, size + 1) if (n - 1) * count // size == i] for i in range(count)]


def skewed_gates(scenario: Scenario, size: int) -> dict[int, str]:
    """Gates whose clock is off from the start, with their offset (libfaketime's syntax)."""
    return {n: f.offset for f in scenario.faults if f.kind == "clock-skew" for n in gates_of(f, size)}


class Timeline:
    """Runs the scenario's faults against a venue and a driver."""

    def __init__(self, scenario: Scenario, venue: Venue, driver: Driver) -> None:
        self.scenario = scenario
        self.venue = venue
        self.driver = driver
        self.windows: list[Window] = []
        self.relays: list[Relay] = []
        self.notes: list[str] = []

    async def run(self) -> None:
        """Every fault at its time, each healed at its end; returns when the last is healed."""
        cancels = iter(self.venue.plan.cancellations)
        tasks = []
        for index, fault in enumerate(self.scenario.faults):
            batch = next(cancels) if fault.kind == "cancel" else ()
            tasks.append(asyncio.create_task(self._one(index, fault, batch)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for relay in self.relays:
                await relay.aclose()

    async def _one(self, index: int, fault: Fault, batch: tuple[str, ...]) -> None:
        start = self.driver.doors_open + fault.at_s
        await asyncio.sleep(max(0.0, start - time.time()))
        started = int(time.time() * 1000)
        tag = f"fault-{index}"
        numbers = gates_of(fault, self.venue.size) if fault.gates else ()
        if fault.kind == "split":
            numbers = ()
        heal = await self._make(fault, tag, numbers, batch)
        await asyncio.sleep(max(0.0, self.driver.doors_open + fault.end_s - time.time()))
        if heal is not None:
            await heal()
        ids = tuple(self.venue.gate_id(n) for n in numbers)
        self.windows.append(Window(started, int(time.time() * 1000), fault.label(), ids, fault.kind))

    async def _make(self, fault: Fault, tag: str, numbers: tuple[int, ...], batch: tuple[str, ...]) -> Heal:
        venue = self.venue
        machines = [venue.machines[n] for n in numbers]
        if fault.kind == "central-down":
            return await self._central_down(fault.how)
        if fault.kind == "split":
            return await self._split(fault, tag)
        if fault.kind == "loss":
            for machine in machines:
                await asyncio.to_thread(network.lose, machine, fault.percent, tag)
            return self._clearer(machines, tag)
        if fault.kind == "bandwidth":
            for machine in machines:
                await asyncio.to_thread(network.throttle, machine, fault.rate_kbit)

            async def unthrottle() -> None:
                for machine in machines:
                    await asyncio.to_thread(network.unthrottle, machine)

            return unthrottle
        if fault.kind == "latency":
            return await self._latency(fault, tag, numbers)
        if fault.kind == "power-cut":
            return await self._power_cut(numbers)
        if fault.kind == "cancel":
            await asyncio.to_thread(venue.cancel, batch)
            self.notes.append(f"manifest with {len(batch)} cancellations published")
        return None

    def _clearer(self, machines: list[network.Machine], tag: str) -> Heal:
        async def clear() -> None:
            for machine in machines:
                await asyncio.to_thread(network.clear, machine, tag)

        return clear

    async def _central_down(self, how: str) -> Heal:
        central = self.venue.central
        assert central is not None
        if how == "hang":
            central.signal(signal.SIGSTOP)

            async def resume() -> None:
                central.signal(signal.SIGCONT)

            return resume
        await asyncio.to_thread(central.kill)

        async def restart() -> None:
            await asyncio.to_thread(central.start)

        return restart

    async def _split(self, fault: Fault, tag: str) -> Heal:
        venue = self.venue
        islands = islands_of(fault, venue.size)
        for i, island in enumerate(islands):
            others = [venue.machines[n].address for other in islands if other is not island for n in other]
            if i != 0:
                others.append(network.CENTRAL_ADDRESS)
            for n in island:
                await asyncio.to_thread(network.isolate, venue.machines[n], others, tag)
        away = [venue.machines[n].address for island in islands[1:] for n in island]
        await asyncio.to_thread(network.isolate, venue.central_machine, away, tag)
        return self._clearer([venue.central_machine, *venue.machines.values()], tag)

    async def _latency(self, fault: Fault, tag: str, numbers: tuple[int, ...]) -> Heal:
        started: list[tuple[network.Machine, Relay]] = []
        for n in numbers:
            port = RELAY_BASE_PORT + n
            relay = Relay(
                (network.HOST_ADDRESS, port),
                (network.CENTRAL_ADDRESS, CENTRAL_PORT),
                fault.delay_ms,
                fault.jitter_ms,
            )
            await relay.start()
            self.relays.append(relay)
            machine = self.venue.machines[n]
            await asyncio.to_thread(
                network.through_relay, machine, (network.CENTRAL_ADDRESS, CENTRAL_PORT), port, tag
            )
            started.append((machine, relay))
        self.notes.append(
            f"latency by the user-space relay (no netem): {fault.delay_ms}±{fault.jitter_ms} ms"
        )

        async def heal() -> None:
            for machine, relay in started:
                await asyncio.to_thread(network.clear, machine, tag)
                await relay.aclose()
                with contextlib.suppress(ValueError):
                    self.relays.remove(relay)

        return heal

    async def _power_cut(self, numbers: tuple[int, ...]) -> Heal:
        for n in numbers:
            self.driver.gate_down(n)
            await asyncio.to_thread(self.venue.gates[n].kill)

        async def restore() -> None:
            for n in numbers:
                await asyncio.to_thread(self.venue.restart_gate, n)
                self.driver.gate_back(n)

        return restore
