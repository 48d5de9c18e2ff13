"""``gatectl fleet --gates FILE``: the file of gate addresses, read or refused by name."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate_daemon.cli.fleet_commands import MAX_GATES, read_gates
from gate_daemon.errors import GateError


def test_addresses_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "gates.txt"
    path.write_text("# north stand\n10.0.0.21:8710\n\n  http://10.0.0.22:8710/  # by the bar\n[::1]:8443\n")
    assert read_gates(path) == ["http://10.0.0.21:8710", "http://10.0.0.22:8710", "http://[::1]:8443"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no gate addresses"),
        ("# only a comment\n", "no gate addresses"),
        ("10.0.0.21\n", "line 1: '10.0.0.21' is not HOST:PORT"),
        ("10.0.0.21:8710\n10.0.0.22:70000\n", "line 2: '10.0.0.22:70000' is not HOST:PORT"),
        ("10.0.0.21:0\n", "line 1: '10.0.0.21:0' is not HOST:PORT"),
        ("ftp://10.0.0.21:21\n", "line 1: 'ftp://10.0.0.21:21' is not HOST:PORT"),
        ("".join(f"10.0.{n // 250}.{n % 250}:8710\n" for n in range(MAX_GATES + 1)), "more than 1000 gates"),
    ],
)
def test_mistakes_are_named_with_file_and_line(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "gates.txt"
    path.write_text(text)
    with pytest.raises(GateError, match=r"gates\.txt") as caught:
        read_gates(path)
    assert said in str(caught.value)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_file_is_read_or_refused_by_name(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gates.txt"
        path.write_bytes(data)
        try:
            urls = read_gates(path)
        except GateError as exc:
            assert str(path) in str(exc)
        else:
            assert urls and all(url.startswith(("http://", "https://")) for url in urls)
