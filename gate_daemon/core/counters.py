"""The names of the gate's persisted counters, built and read here only.

A counter is a plain total (``scans``, ``conflicts``) or one label of a family, written
``family:label`` (``outcome:allow``, ``passage:not_passed``). The ledger stores each name
with its value; metrics turn a family into one labelled Prometheus counter, and
``gatectl status`` reads some of them back. docs/LEDGER.md lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

#: Every scan, whatever its outcome.
SCANS = "scans"
#: Manifests verified and activated.
MANIFEST_ACTIVATIONS = "manifest_activations"
#: Files in the image input's folder that were not images.
UNREADABLE_IMAGES = "unreadable_images"
#: Turnstile releases by the steward's button.
MANUAL_RELEASES = "manual_releases"
#: Double entries found as records from other gates arrived.
CONFLICTS = "conflicts"
#: Refused entries a supervisor's badge admitted (forced entries, ``gate.staff``).
OVERRIDES = "overrides"

_SEPARATOR = ":"


class Family(StrEnum):
    """The counters counted by label, one name per label."""

    OUTCOME = "outcome"
    REASON = "reason"
    KIND = "kind"
    RESOLUTION = "resolution"
    MANIFEST_REFUSED = "manifest_refused"
    PASSAGE = "passage"
    PEER = "peer"
    UPSTREAM = "upstream"
    UPSTREAM_REFUSED = "upstream_refused"
    MODE_SWITCH = "mode_switch"
    COMMAND = "command"
    LANE = "lane"


def labelled(family: Family, label: str) -> str:
    """The name of ``family``'s counter for ``label`` (``outcome:allow``)."""
    return f"{family}{_SEPARATOR}{label}"


def route_scans(route: str) -> str:
    """The scans decided by ``route`` (``offline``: from the local manifest and ledger; ``online``)."""
    return f"{route}_scans"


def scan_counters(route: str, outcome: str, reason: str, kind: str, resolution: str) -> tuple[str, ...]:
    """What one committed scan adds one to."""
    return (
        SCANS,
        route_scans(route),
        labelled(Family.OUTCOME, outcome),
        labelled(Family.REASON, reason),
        labelled(Family.KIND, kind),
        labelled(Family.RESOLUTION, resolution),
    )


def split(name: str) -> tuple[str, str | None]:
    """A counter's name as (family, label); the label is None for a plain total."""
    head, separator, tail = name.partition(_SEPARATOR)
    return head, tail if separator else None


def by_label(counters: Mapping[str, int], family: Family) -> dict[str, int]:
    """``family``'s counts by label, in the order of ``counters``."""
    found = {}
    for name, value in counters.items():
        head, label = split(name)
        if head == family and label:
            found[label] = value
    return found
