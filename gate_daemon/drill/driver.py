"""The crowd at the turnstiles: an asyncio driver scanning through each gate's control socket.

One queue per gate. Each visit of the plan joins, at its time, the shortest queue of the
gates that are up (a friend with a screenshot avoids the gate the code was first shown
at). Each gate's worker scans the head of its queue through the gate's control socket
and waits for the answer; the next scan starts a turnstile's pace after this one began,
never sooner, and never before the answer. A scan the gate did not answer (it lost power
mid-scan) is sent again, with the same ``scan_id``, once the gate is back: the gate
records a retried scan once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gate_daemon.drill.crowd import Plan, Visit

#: How often each gate's status is read for its breaker's switches.
WATCH_S = 1.0


@dataclass
class Scan:
    """One visit as the driver saw it at a gate."""

    visit: int
    gate: int
    ticket_id: str
    purpose: str
    kind: str
    scan_id: str
    sent_ms: int = 0
    answered_ms: int | None = None
    outcome: str | None = None
    reason: str | None = None
    record_id: str | None = None
    recorded: bool = False
    #: How many times the scan was sent (more than once after a power cut).
    tries: int = 0

    @property
    def latency_ms(self) -> float | None:
        """From the last send to the answer."""
        return None if self.answered_ms is None else float(self.answered_ms - self.sent_ms)

    def as_dict(self) -> dict[str, object]:
        """For report.json's scan log."""
        return dict(self.__dict__)


class Driver:
    """Feeds the plan's visits to the gates and keeps what each answered."""

    def __init__(
        self,
        plan: Plan,
        sockets: dict[int, Path],
        payloads: dict[str, str],
        *,
        pace_s: float,
        seed: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self.sockets = sockets
        self.payloads = payloads
        self.pace_s = pace_s
        self.clock = clock
        self.rng = random.Random(seed)
        self.queues: dict[int, asyncio.Queue[Scan]] = {n: asyncio.Queue() for n in sockets}
        self.busy: dict[int, bool] = dict.fromkeys(sockets, False)
        self.up: dict[int, asyncio.Event] = {n: asyncio.Event() for n in sockets}
        for event in self.up.values():
            event.set()
        self.scans: list[Scan] = []
        #: Online-first's switches as each gate's status reports them: (gate, to mode, at ms by its clock).
        self.switches: set[tuple[int, str, int]] = set()
        self.gate_of: dict[int, int] = {}
        self.doors_open = 0.0

    def now_ms(self) -> int:
        """The host's wall clock in unix milliseconds."""
        return int(self.clock() * 1000)

    def gate_down(self, number: int) -> None:
        """A gate lost power: nobody new joins its queue, its worker waits."""
        self.up[number].clear()

    def gate_back(self, number: int) -> None:
        """The gate is up again."""
        self.up[number].set()

    async def run(self, deadline_s: float) -> None:
        """Dispatch every visit at its time and wait until the queues are empty (or the deadline)."""
        self.doors_open = self.clock()
        workers = [asyncio.create_task(self._worker(n), name=f"drill-gate-{n}") for n in self.sockets]
        workers += [asyncio.create_task(self._watch(n), name=f"drill-watch-{n}") for n in self.sockets]
        try:
            await asyncio.wait_for(self._dispatch_and_drain(), timeout=deadline_s)
        except TimeoutError:
            pass
        finally:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _dispatch_and_drain(self) -> None:
        for index, visit in enumerate(self.plan.visits):
            delay = self.doors_open + visit.at_s - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            gate = self._choose(visit)
            scan = Scan(index, gate, visit.ticket_id, visit.purpose, visit.kind, str(uuid.uuid4()))
            self.gate_of[index] = gate
            self.scans.append(scan)
            self.queues[gate].put_nowait(scan)
        for queue in self.queues.values():
            await queue.join()

    def _choose(self, visit: Visit) -> int:
        avoid = self.gate_of.get(visit.shared_from) if visit.shared_from is not None else None
        candidates = [n for n in self.sockets if self.up[n].is_set() and n != avoid] or [
            n for n in self.sockets if n != avoid
        ]
        candidates = candidates or list(self.sockets)
        length = {n: self.queues[n].qsize() + self.busy[n] for n in candidates}
        shortest = min(length.values())
        return self.rng.choice([n for n in candidates if length[n] == shortest])

    async def _worker(self, number: int) -> None:
        queue = self.queues[number]
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                scan = await queue.get()
                self.busy[number] = True
                started = self.clock()
                connection = await self._scan(number, scan, connection)
                self.busy[number] = False
                queue.task_done()
                rest = started + self.pace_s - self.clock()
                if rest > 0:
                    await asyncio.sleep(rest)
        finally:
            if connection is not None:
                connection[1].close()

    async def _watch(self, number: int) -> None:
        """Read the gate's breaker from its status every second: its last switch, when and to what."""
        while True:
            await asyncio.sleep(WATCH_S)
            if not self.up[number].is_set():
                continue
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.sockets[number]))
            except OSError:
                continue
            try:
                writer.write(b'{"op": "status"}\n')
                await writer.drain()
                answer = json.loads(await asyncio.wait_for(reader.readline(), timeout=10) or b"{}")
            except (OSError, TimeoutError, ValueError):
                continue
            finally:
                writer.close()
            online = (answer.get("status") or {}).get("online") or {}
            last = online.get("last_switch")
            if last:
                self.switches.add((number, str(last["to"]), int(float(last["at"]) * 1000)))

    async def _scan(
        self, number: int, scan: Scan, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        request = {"op": "scan", "payload": self.payloads[scan.ticket_id], "scan_id": scan.scan_id}
        if scan.kind == "exit":
            request["kind"] = "exit"
        line = json.dumps(request).encode() + b"\n"
        while True:
            await self.up[number].wait()
            try:
                if connection is None:
                    connection = await asyncio.open_unix_connection(str(self.sockets[number]))
                reader, writer = connection
                scan.tries += 1
                scan.sent_ms = self.now_ms()
                writer.write(line)
                await writer.drain()
                answer_line = await asyncio.wait_for(reader.readline(), timeout=30)
                if not answer_line:
                    raise ConnectionError("the gate closed the socket")
                answer = json.loads(answer_line)
            except (OSError, ConnectionError, TimeoutError, ValueError):
                if connection is not None:
                    connection[1].close()
                connection = None
                await asyncio.sleep(0.2)
                continue
            scan.answered_ms = self.now_ms()
            if answer.get("ok"):
                decision = answer["decision"]
                scan.outcome = str(decision.get("outcome"))
                scan.reason = str(decision.get("reason"))
                scan.record_id = decision.get("record_id")
                scan.recorded = bool(decision.get("recorded"))
            else:
                scan.outcome, scan.reason = "error", str(answer.get("error"))
            return connection
