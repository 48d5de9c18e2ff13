"""The shipped Prometheus rules and Grafana dashboard: tested with promtool, in step with the code.

``promtool test rules`` runs the rules' own unit tests (config/prometheus/gate-alerts.test.yml);
promtool comes from Debian's ``prometheus`` (scripts/bootstrap test), and its absence fails
the test. Every fleet condition has its alert, labelled with the condition's name and its
SOP card; every metric a rule or a dashboard panel queries is one a gate's ``/metrics`` exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from gate_daemon.central.sop import FILES
from gate_daemon.core.fleet import Condition
from gate_daemon.net.metrics import render
from tests.test_fleet_rules import snapshot

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "prometheus" / "gate-alerts.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "gate-alerts.test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "gate-fleet.json"
#: PromQL words that are not metric names.
PROMQL = {
    "sum",
    "max",
    "min",
    "count",
    "avg",
    "rate",
    "increase",
    "abs",
    "by",
    "without",
    "or",
    "and",
    "unless",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: run scripts/bootstrap test (Debian's prometheus)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metrics a PromQL expression reads."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)", " ", expr)
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare) if word not in PROMQL}


def exposed() -> set[str]:
    """Every metric a gate exposes (its TYPE lines), with peers, online-first and a lane; and ``up``."""
    text = render(snapshot(decision="online-first", lane={"state": "closed"})).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")} | {"up"}


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_condition_has_its_alert_and_sop_card() -> None:
    by_condition = {rule["labels"]["condition"]: rule for rule in alerts()}
    assert set(by_condition) == {str(c) for c in Condition}
    for name, rule in by_condition.items():
        card = rule["annotations"]["sop"]
        assert card == f"sop/{FILES[name]}.md", rule["alert"]
        assert (ROOT / "config" / card).is_file(), card
    tested = {
        test["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for test in case["alert_rule_test"]
    }
    assert tested == {rule["alert"] for rule in alerts()}


def test_every_metric_queried_is_one_the_gates_expose() -> None:
    names = exposed()
    assert {"gate_lane_state", "gate_scans_total", "gate_peer_lag_seconds"} <= names
    for rule in alerts():
        assert metric_names(rule["expr"]) <= names, rule["alert"]
    dashboard = json.loads(DASHBOARD.read_text())
    queried = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queried) >= len(dashboard["panels"]) > 10
    for expr in queried:
        assert metric_names(expr), expr
        assert metric_names(expr) <= names, expr
    assert metric_names('sum by (instance, to) (increase(gate_x{job="gate"}[5m])) or up') == {"gate_x", "up"}
