"""The ``pretix`` fixture: one real pretix for the whole test session, seeded with a gate event.

Tests that use it carry ``@pytest.mark.pretix``. The server is pretix==2026.8.0 from PyPI
in its own venv, cached outside the clone (``gate_daemon.bench.pretix_install``;
``scripts/pretix-cache`` builds it, ``scripts/bootstrap test`` calls that). Each session
copies the cached migrated database into its own tmp folder, starts
``python -m pretix runserver 127.0.0.1:PORT --noreload``, seeds it and kills the process
group at the end (``gate_daemon.bench.pretix_lab.running_pretix``).

Without a cache the tests skip, saying how to build one, except in CI (``CI`` set to
true), where the fixture builds the cache and fails loudly if pretix cannot be set up.

What the fixture yields, a ``PretixServer`` (the bridge's tests code against this; it only
grows):

* ``url``, ``organizer`` ("gateorg"), ``event`` ("gate2026"), ``team_token``,
  ``device_init_token`` (an unused ``pretixscan`` device initialization token),
  ``lists`` ({"main": id, "vip": id}: main admits both products, vip only ``vip``; both
  ``allow_entry_after_exit``, neither ``allow_multiple_entries``), ``items``
  ({"ticket": id, "vip": id}), ``valid_keys`` (``valid_keys.pretix_sig1``, base64 PEM);
* ``positions[name]`` -> ``SeededPosition(name, order, position_id, item, secret, state,
  current_secret)`` for ``paid``, ``paid2``, ``paid3``, ``vip``, ``pending``,
  ``canceled`` (``secret`` is the buyer's code, revoked by the cancellation),
  ``blocked``, ``revoked`` (``secret`` revoked by a re-key, ``current_secret`` valid);
  every secret is a pretix_sig1 signed secret;
* ``api(method, path, json=None, token=None)``, ``event_api(method, path, json=None)``,
  ``shell(script)``, ``make_order(item="ticket", status="paid", name=...)``,
  ``make_positions(count, item="ticket", name=...)`` (paid, 500 to an order: their secrets),
  ``cancel_order(code)``, ``block(position_id)``, ``regenerate_secret(position_id)``,
  ``position(position_id)``, ``checkins_of(position_id)``, ``new_device_token(name)``,
  ``initialize_device(token)``, ``checkin_as_other_device(secret, list_name="main",
  kind="entry", nonce=None, when=None, force=False)`` -> (status code, answer).

The session's pretix is shared: a test that changes an order makes its own with
``make_order`` rather than changing a seeded one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gate_daemon.bench.pretix_install import build, cache_dir, is_ready
from gate_daemon.bench.pretix_lab import PretixServer, SeededPosition, running_pretix

__all__ = ["PretixServer", "SeededPosition", "in_ci", "pretix"]


def in_ci() -> bool:
    """Whether this run is CI's, where a missing pretix is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pretix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PretixServer]:
    """A real pretix on 127.0.0.1, seeded (see the module docstring); stopped after the session."""
    if not is_ready():
        if not in_ci():
            pytest.skip(f"no pretix cache in {cache_dir()}: run scripts/pretix-cache (CI builds it)")
        build()
    with running_pretix(tmp_path_factory.mktemp("pretix")) as server:
        yield server
