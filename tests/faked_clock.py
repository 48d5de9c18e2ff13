"""A child process's system clock made wrong with libfaketime, its monotonic clock left real.

``faked("-1d")`` or ``faked("@1970-01-01 00:00:00")`` is the environment to give a process
(a gate, as a Pi without a battery clock boots): ``LD_PRELOAD`` of libfaketime with
``FAKETIME`` set, and the drill's flags (``FAKETIME_DONT_FAKE_MONOTONIC`` so that only the wall
clock lies, ``FAKETIME_FORCE_MONOTONIC_FIX=0`` so that the GIL's timed wait is not broken).
``scripts/bootstrap test`` installs the library (Debian package ``libfaketime``). Python's
``time.sleep`` does not work under it (libfaketime 0.9.10 mistranslates the absolute
monotonic deadline Python 3.11 sleeps to); the gate never calls it, and asyncio's waits work.
"""

from __future__ import annotations

import glob

from gate_daemon.drill.venue import FAKETIME_FLAGS

#: Where Debian installs the library, for any architecture.
_LIBRARY = "/usr/lib/*/faketime/libfaketime.so.1"


def faked(faketime: str) -> dict[str, str]:
    """The environment for a process whose system clock reads ``faketime`` (libfaketime's syntax)."""
    found = sorted(glob.glob(_LIBRARY))
    assert found, f"libfaketime is not installed ({_LIBRARY}): run scripts/bootstrap test"
    return {"LD_PRELOAD": found[0], "FAKETIME": faketime, **FAKETIME_FLAGS}
