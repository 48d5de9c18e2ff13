"""The upstream contract (docs/upstream.openapi.yaml) run by schemathesis against a real gate-central.

Two runs of ``schemathesis run`` with every check, a bounded number of cases each: unsigned
(every signed route must refuse by name) and signed as roster gate ``north-1``
(``tests/contract_hooks.py``), so that bodies and queries reach the parsers. Any 5xx, any
answer whose status, headers or body the contract does not describe, any schema-valid
request refused or schema-invalid one accepted fails the test, with schemathesis's report
and the seed to replay it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gate_daemon.central.wire import parse_heartbeat
from tests.central_fixtures import CentralWorld, make_central_world
from tests.central_process import CentralProcess
from tests.gate_process import BIN

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "upstream.openapi.yaml"
SETTINGS = ROOT / "tests" / "contract.schemathesis.toml"
#: Cases per operation and phase: every declared limit is met, and the two runs stay well
#: under a minute on a 2-core machine.
EXAMPLES = 25
#: Only bounds a hung run.
HANG = 300


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CentralProcess, CentralWorld]]:
    """One gate-central for both runs (the live event, roster north-1 and south-1)."""
    root = tmp_path_factory.mktemp("contract")
    world = make_central_world(root / "central")
    with CentralProcess(world.config_path, root) as process:
        process.start()
        yield process, world


def _schemathesis(url: str, workdir: Path, **env: str) -> str:
    """``schemathesis run`` over the contract; its report, after asserting it found nothing."""
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(SETTINGS),
        "run",
        str(CONTRACT),
        "--url",
        url,
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--no-color",
    ]
    variables = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    workdir.mkdir(exist_ok=True)
    done = subprocess.run(
        command, cwd=workdir, env=variables, capture_output=True, text=True, timeout=HANG, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    return report


def test_unsigned_requests_get_what_the_contract_says(
    central: tuple[CentralProcess, CentralWorld], tmp_path: Path
) -> None:
    process, _ = central
    report = _schemathesis(process.url, tmp_path / "unsigned")
    assert "10 selected / 10 total" in report
    assert "Traceback" not in process.stderr()


def test_signed_requests_get_what_the_contract_says(
    central: tuple[CentralProcess, CentralWorld], tmp_path: Path
) -> None:
    process, world = central
    key = world.live.gate_keys["north-1"]
    report = _schemathesis(process.url, tmp_path / "signed", CONTRACT_SIGN_AS=f"north-1:{key}")
    assert "10 selected / 10 total" in report
    # The run was authenticated: the central kept north-1's heartbeats.
    assert "north-1" in process.heartbeats()
    assert "Traceback" not in process.stderr()


def test_a_counter_sent_as_a_whole_float_is_the_integer_json_schema_says_it_is() -> None:
    beat = parse_heartbeat({"sent_at": 1.5e9, "counters": {"scans": 7.0, "conflicts": 1e3}, "status": {}})
    assert beat.counters == {"scans": 7, "conflicts": 1000}
    assert all(type(value) is int for value in beat.counters.values())
    for value in (7.5, 2.0**63, True, "7"):
        with pytest.raises(Exception, match=r"counters\.scans: must be a whole number"):
            parse_heartbeat({"sent_at": 1.5e9, "counters": {"scans": value}, "status": {}})
