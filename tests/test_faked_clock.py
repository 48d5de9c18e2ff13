"""The faked clock of tests and of the drill lies about the wall clock only: a process under it
runs its threads as fast as one without it.

libfaketime 0.9.10, left to its default, "fixes" the deadline of a wait on a condition
variable bound to the monotonic clock; the GIL waits on one, so a thread waiting for the GIL
wakes at once, again and again, and asks the running thread to let go each time. A gate has
two threads (the event loop and SQLite's), so under the fix every handoff of the GIL costs a
forced switch, and the gate whose clock was a day off in the drill answered in seconds.
The test counts switches over a fixed amount of work, never time: two threads appending to
one list switch about once per switch interval (5 ms) without the fault, hundreds of times
more with it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.faked_clock import faked

#: Two threads append their name to one list, a fixed number of times each; the answer is how
#: many times the list changes hands.
SWITCHES = """
import threading
trace = []
def work(name):
    for _ in range(1_000_000):
        trace.append(name)
threads = [threading.Thread(target=work, args=(name,)) for name in "ab"]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sum(1 for x, y in zip(trace, trace[1:]) if x != y))
"""


def switches(env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SWITCHES],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_threads_under_the_faked_clock_switch_as_often_as_without_it() -> None:
    plain = switches({})
    skewed = switches(faked("-1d"))
    assert skewed <= 4 * plain + 100, f"{skewed} GIL switches under libfaketime, {plain} without"
