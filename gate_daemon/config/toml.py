"""Reading TOML files so that every error can name its file, key path and line.

``tomllib`` gives values but no positions; ``line_of`` finds the line of a key path
(``("sessions", 1, "starts_at")``) by following table headers, which is what a person
needs to find the mistake. ``expand_dirs`` puts systemd's directories into a path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gate_daemon.errors import Problem, SourceError
from gate_daemon.files import read_regular

KeyPath = tuple[str | int, ...]
#: A configuration or event file larger than this is not one.
MAX_TOML = 16 << 20

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")
#: What systemd sets for a service with ``LoadCredential=``, ``StateDirectory=``, ``RuntimeDirectory=``.
SYSTEMD_DIRS = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "RUNTIME_DIRECTORY")
_VARIABLE = re.compile(r"\$\{([A-Z_]+)\}")


def load(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; any failure is a ``SourceError`` naming the file (and line)."""
    try:
        text = read_regular(path, MAX_TOML).decode("utf-8")
    except OSError as exc:
        raise SourceError(str(path), [Problem("", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise SourceError(str(path), [Problem("", f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise SourceError(str(path), [Problem("", f"not valid TOML: {exc}", line)]) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise SourceError(str(path), [Problem("", "not valid TOML: values nested too deeply")]) from None


def expand_dirs(raw: str, env: Mapping[str, str], names: Sequence[str] = SYSTEMD_DIRS) -> str:
    """``raw`` with each ``${NAME}`` of ``names`` replaced by its value in ``env``.

    ``ValueError`` saying which variable is unset or not allowed, and which are allowed.
    """
    wrong: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            wrong.append(f"${{{name}}} is not allowed")
        elif not env.get(name):
            wrong.append(f"${{{name}}} is not set")
        else:
            # systemd may list several directories separated by ':'; the first is ours.
            return env[name].split(":")[0]
        return ""

    expanded = _VARIABLE.sub(substitute, raw)
    if wrong or "${" in expanded:
        allowed = ", ".join(f"${{{n}}}" for n in names)
        raise ValueError("; ".join([*wrong, f"only {allowed} may be used, and only when set"]))
    return expanded


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in dotted.split(".")]


def line_of(text: str, path: KeyPath) -> int | None:
    """The 1-based line where ``path`` is set, or its nearest enclosing table's header."""
    counters: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    best: tuple[int, int] | None = None  # (matched length, line)

    def consider(candidate: tuple[str | int, ...], line: int) -> None:
        nonlocal best
        if candidate == path[: len(candidate)] and (best is None or len(candidate) > best[0]):
            best = (len(candidate), line)

    # Only LF ends a line in TOML; str.splitlines() would also split at U+0085 or U+2028
    # inside a string or a comment.
    for number, raw in enumerate(text.split("\n"), start=1):
        header = _HEADER.match(raw)
        if header:
            names = _parts(header.group(2))
            resolved: list[str | int] = []
            for name in names[:-1]:
                resolved.append(name)
                if tuple(resolved) in counters:
                    resolved.append(counters[tuple(resolved)])
            resolved.append(names[-1])
            if header.group(1) == "[[":
                key = tuple(resolved)
                counters[key] = counters.get(key, -1) + 1
                resolved.append(counters[key])
            table = tuple(resolved)
            consider(table, number)
            continue
        assignment = _KEY.match(raw)
        if assignment:
            consider((*table, *_parts(assignment.group(1))), number)
    if best is None:
        return None
    return best[1]


def render_path(path: KeyPath) -> str:
    """``("sessions", 1, "starts_at")`` as ``sessions[1].starts_at``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_MISSING = object()


class Checker:
    """Walks a parsed TOML document against a closed schema, collecting every problem.

    Each accessor returns a usable value (its default when the input is wrong) so that a
    single pass reports all mistakes; ``finish()`` raises them together.
    """

    def __init__(self, path: Path, text: str, top_level: frozenset[str] | set[str] = frozenset()) -> None:
        self.file = str(path)
        self.text = text
        self.top_level = top_level
        self.problems: list[Problem] = []

    def problem(self, path: KeyPath, message: str) -> None:
        """Record a problem at ``path``."""
        self.problems.append(Problem(render_path(path), message, line_of(self.text, path)))

    def table(
        self,
        value: object,
        path: KeyPath,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        """A table with only ``allowed`` keys and all ``required`` ones."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a table, got {_kind(value)}")
            return {}
        for key in value:
            if key in allowed:
                continue
            if path and key in self.top_level:
                # TOML puts a key written after a [table] header into that table.
                self.problem((*path, key), "belongs at the top of the file, before the first [table]")
            else:
                self.problem((*path, key), f"unknown key (allowed here: {', '.join(sorted(allowed))})")
        for key in sorted(required - value.keys()):
            self.problem((*path, key), "missing (required)")
        return value

    def tables(self, value: object, path: KeyPath) -> list[dict[str, Any]]:
        """An array of tables (``[[name]]``); absent means empty."""
        if value is _MISSING or value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(path, "expected an array of tables ([[...]])")
            return []
        return value

    def string(
        self,
        tbl: dict[str, Any],
        path: KeyPath,
        key: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        max_bytes: int = 200,
    ) -> str:
        """A string, optionally matching ``pattern`` and at most ``max_bytes`` of UTF-8."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return default or ""
        if not isinstance(value, str):
            self.problem((*path, key), f"expected a string, got {_kind(value)}")
            return default or ""
        if len(value.encode()) > max_bytes:
            self.problem((*path, key), f"longer than {max_bytes} bytes")
        elif pattern is not None and not pattern.fullmatch(value):
            self.problem((*path, key), f"{value!r} must match {pattern.pattern}")
        return value

    def integer(
        self, tbl: dict[str, Any], path: KeyPath, key: str, *, low: int, high: int, default: int
    ) -> int:
        """An integer within ``low..high``."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem((*path, key), f"expected an integer, got {_kind(value)}")
            return default
        if not low <= value <= high:
            self.problem((*path, key), f"{value} is outside {low}..{high}")
            return default
        return value

    def number(
        self, tbl: dict[str, Any], path: KeyPath, key: str, *, low: float, high: float, default: float
    ) -> float:
        """A number (integer or float) within ``low..high``."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            self.problem((*path, key), f"expected a number, got {_kind(value)}")
            return default
        if not low <= value <= high:
            self.problem((*path, key), f"{value} is outside {low:g}..{high:g}")
            return default
        return float(value)

    def boolean(self, tbl: dict[str, Any], path: KeyPath, key: str, *, default: bool) -> bool:
        """true or false."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problem((*path, key), f"expected true or false, got {_kind(value)}")
            return default
        return value

    def strings(self, tbl: dict[str, Any], path: KeyPath, key: str) -> list[str]:
        """An array of strings; absent means empty."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem((*path, key), "expected an array of strings")
            return []
        return value

    def raw(self, tbl: dict[str, Any], key: str) -> object:
        """The value at ``key`` or a marker for absent (for types the caller checks)."""
        return tbl.get(key, _MISSING)

    def finish(self) -> None:
        """Raise every recorded problem at once."""
        if self.problems:
            raise SourceError(self.file, self.problems)


def _kind(value: object) -> str:
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)
