"""Counter names: built in one module, read back by the same module's parser."""

from __future__ import annotations

from gate_daemon.core.counters import (
    MANUAL_RELEASES,
    SCANS,
    Family,
    by_label,
    labelled,
    route_scans,
    scan_counters,
    split,
)
from gate_daemon.core.decision import ScanKind
from gate_daemon.core.reasons import Outcome, Reason


def test_a_scan_counts_its_route_outcome_reason_kind_and_resolution() -> None:
    names = scan_counters("offline", Outcome.ALLOW, Reason.OK, ScanKind.ENTRY, "admitted")
    assert names == (
        "scans",
        "offline_scans",
        "outcome:allow",
        "reason:ok",
        "kind:entry",
        "resolution:admitted",
    )
    assert scan_counters("online", "deny", "revoked", "exit", "refused")[1:3] == (
        "online_scans",
        "outcome:deny",
    )


def test_names_split_back_into_family_and_label() -> None:
    assert split(labelled(Family.PASSAGE, "not_passed")) == ("passage", "not_passed")
    assert split(labelled(Family.MANIFEST_REFUSED, "bad_signature")) == ("manifest_refused", "bad_signature")
    assert split(SCANS) == ("scans", None)
    assert split(route_scans("offline")) == ("offline_scans", None)
    # A label may hold a colon: only the first one separates.
    assert split(labelled(Family.UPSTREAM_REFUSED, "a:b")) == ("upstream_refused", "a:b")


def test_by_label_reads_one_family_in_order() -> None:
    counted = {
        "kind:entry": 4,
        MANUAL_RELEASES: 1,
        "outcome:allow": 3,
        "outcome:deny": 1,
        "outcomes": 9,  # another name that starts alike is not of the family
        "outcome:": 2,  # no label: not a labelled count
        SCANS: 4,
    }
    assert by_label(counted, Family.OUTCOME) == {"allow": 3, "deny": 1}
    assert list(by_label(counted, Family.OUTCOME)) == ["allow", "deny"]
    assert by_label(counted, Family.PEER) == {}
