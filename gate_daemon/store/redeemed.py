"""Which tickets may have redemptions: a Bloom filter in a fixed 2 MiB.

The ledger answers "no entries yet" for a ticket the filter has never seen without a
trip to the database. A Bloom filter never says "no" for a ticket added to it, and says
"maybe" for a ticket it has not seen only rarely (about 0.0006% of lookups with 100,000
tickets added, 0.44% with a million: (1 - e^(-3n/2^24))^3); a "maybe" just costs the
read the filter saves otherwise. Its size does not grow with the ledger.
"""

from __future__ import annotations

import hashlib

#: Bits in the filter (2 MiB of memory).
BITS = 1 << 24
#: Positions set per ticket.
HASHES = 3


class RedeemedFilter:
    """A set of ticket ids that may answer "maybe" for one it does not hold, never "no" for one it does."""

    def __init__(self) -> None:
        self._bits = bytearray(BITS // 8)

    @staticmethod
    def _positions(ticket_id: str) -> list[int]:
        digest = hashlib.blake2b(ticket_id.encode("utf-8", "surrogatepass"), digest_size=4 * HASHES).digest()
        return [int.from_bytes(digest[4 * i : 4 * i + 4], "little") % BITS for i in range(HASHES)]

    def add(self, ticket_id: str) -> None:
        """Remember that ``ticket_id`` has a redemption."""
        for pos in self._positions(ticket_id):
            self._bits[pos >> 3] |= 1 << (pos & 7)

    def __contains__(self, ticket_id: object) -> bool:
        if not isinstance(ticket_id, str):
            return False
        return all(self._bits[pos >> 3] & (1 << (pos & 7)) for pos in self._positions(ticket_id))
