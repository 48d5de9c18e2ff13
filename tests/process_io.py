"""How many bytes this process has moved through read and write calls, from ``/proc/self/io``.

A file copied or read whole shows here as its size, whatever the page cache or a sparse
file saves the disk: so a test can say "nothing was copied" without timing anything.
"""

from __future__ import annotations

from pathlib import Path

#: More than a manifest's header and a few ledger writes, far less than a gigabyte.
LITTLE = 64 << 20


def bytes_moved() -> tuple[int, int]:
    """Bytes this process (all its threads) has read and written so far: ``rchar``, ``wchar``."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])
