"""Staff keys and badges for a test world: a manifest listing a staff key, and badges signed by it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gate_daemon.core.badges import BadgeClaims, Role, encode_badge
from gate_daemon.core.keys import SecretKey
from gate_daemon.core.tokens import event_tag
from gate_daemon.provision.keyfiles import write_keypair
from tests.support import EVENT_ID, World


@dataclass
class Staff:
    """A world's staff key (listed in ``manifest``) and the badges it signs."""

    key: SecretKey
    key_path: Path
    pub_path: Path
    manifest: bytes

    def badge(
        self,
        operator: str,
        role: Role = Role.STEWARD,
        *,
        name: str | None = None,
        key: SecretKey | None = None,
        event: str = EVENT_ID,
        valid_from: int | None = None,
        valid_until: int | None = None,
    ) -> str:
        """A badge for ``operator`` (signed by the staff key unless ``key`` is given)."""
        claims = BadgeClaims(
            operator, name or operator.title(), role, event_tag(event), valid_from, valid_until
        )
        return encode_badge(claims, key or self.key)


def staff_world(world: World, *, revoked: tuple[str, ...] = ("gone",)) -> Staff:
    """A staff key beside ``world``'s files and a v1 manifest that lists it (and ``revoked``)."""
    key_path, pub_path, key = write_keypair(world.dir / "staff")
    event = dataclasses.replace(world.event, staff_keys=(key.public,), revoked_staff=revoked)
    return Staff(key, key_path, pub_path, world.build(event=event))
