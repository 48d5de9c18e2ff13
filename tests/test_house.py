"""The package's house rules, read from its source with ``ast``: sizes and floors.

Modules stay under ``MAX_MODULE_LINES`` and functions under ``MAX_FUNCTION_LINES``;
imports run down the floors (docs/ARCHITECTURE.md), never up, and no two folders of
one floor import each other both ways. Imports under ``if TYPE_CHECKING:`` and inside
functions count: they are the same dependency, only later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gate_daemon

PACKAGE = Path(gate_daemon.__file__).parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

#: The floors, bottom first: a module may import its own floor and those below it.
#: Top-level modules (errors.py, files.py) count by their name without ``.py``.
FLOORS = {
    "errors": 0,
    "files": 0,
    "core": 1,
    "store": 2,
    "config": 2,
    "hardware": 3,
    "provision": 3,
    "gate": 4,
    "net": 5,
    "daemon": 6,
    "central": 7,
    "bench": 8,
    "drill": 8,
    "cli": 9,
}

#: Modules allowed over MAX_MODULE_LINES ("folder/module.py": why). None so far.
LONG_MODULES: dict[str, str] = {}

#: Functions allowed over MAX_FUNCTION_LINES ("folder/module.py:Qual.name": why). None so far.
LONG_FUNCTIONS: dict[str, str] = {}


@dataclass(frozen=True)
class Source:
    """One module of the package, parsed."""

    name: str  # its path below the package, "core/manifest.py"
    path: Path
    tree: ast.Module
    lines: int

    @property
    def floor_name(self) -> str | None:
        """Its first folder, or its own name for a top-level module; None for the package's own."""
        first = self.name.split("/")[0].removesuffix(".py")
        return None if first == "__init__" else first


def _sources() -> list[Source]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE).as_posix()
        out.append(Source(name, path, ast.parse(text, str(path)), len(text.splitlines())))
    return out


SOURCES = _sources()


def _functions(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method, nested ones too, with its qualified name."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


@dataclass(frozen=True)
class Import:
    """One import of a package module, by the module that makes it."""

    source: str  # "net/peers.py"
    line: int
    module: str  # absolute: "gate_daemon.store.ledger"
    text: str  # as written

    @property
    def target(self) -> str | None:
        """The folder (or top-level module) imported, None for the package itself."""
        parts = self.module.split(".")
        return parts[1] if len(parts) > 1 else None


def imports_of(name: str, tree: ast.AST) -> list[Import]:
    """Every import of ``gate_daemon`` in a module, relative ones made absolute.

    ``name`` is the module's path below the package ("central/service.py").
    """
    package = ["gate_daemon", *name.split("/")[:-1]]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # "from gate_daemon import core" and "from . import search" import the names as modules.
            bare = module == "gate_daemon" or (node.level and not node.module)
            modules = [f"{module}.{a.name}" for a in node.names] if bare else [module]
        else:
            continue
        text = ast.unparse(node)
        for module in modules:
            if module == "gate_daemon" or module.startswith("gate_daemon."):
                found.append(Import(name, node.lineno, module, text))
    return found


def upward(source: str, floor_name: str, imports: list[Import]) -> list[str]:
    """The imports that run up the floors (same-floor folders are for ``loops``)."""
    mine = FLOORS[floor_name]
    out = []
    for imp in imports:
        target = imp.target
        if target is None or target == floor_name:
            continue
        theirs = FLOORS.get(target)
        if theirs is None:
            out.append(f"{source}:{imp.line}: {imp.text!r}: {target!r} has no floor in FLOORS")
        elif theirs > mine:
            out.append(
                f"{source}:{imp.line}: {imp.text!r} runs up the floors "
                f"({floor_name} {mine} -> {target} {theirs})"
            )
    return out


def loops(imports: list[Import], floors: dict[str, str]) -> list[str]:
    """Pairs of folders of one floor that import each other, each direction named once.

    ``floors`` maps a module path below the package to its folder.
    """
    edges: dict[tuple[str, str], Import] = {}
    for imp in imports:
        mine, target = floors[imp.source], imp.target
        if target is not None and target != mine and FLOORS.get(target) == FLOORS.get(mine):
            edges.setdefault((mine, target), imp)
    out = []
    for (a, b), there in sorted(edges.items()):
        back = edges.get((b, a))
        if back is not None and a < b:
            out.append(
                f"{a} <-> {b}: {there.source}:{there.line}: {there.text!r} and "
                f"{back.source}:{back.line}: {back.text!r}"
            )
    return out


def test_no_module_is_long() -> None:
    long = {s.name: s.lines for s in SOURCES if s.lines > MAX_MODULE_LINES}
    wrong = [
        f"{name}: {lines} lines (at most {MAX_MODULE_LINES})"
        for name, lines in sorted(long.items())
        if name not in LONG_MODULES
    ]
    stale = [name for name in sorted(LONG_MODULES) if name not in long]
    assert not wrong, "modules to split:\n" + "\n".join(wrong)
    assert not stale, "no longer over the limit, remove from the allow-lists: " + ", ".join(stale)


def test_no_function_is_long() -> None:
    long: dict[str, str] = {}
    for source in SOURCES:
        for qualname, node in _functions(source.tree):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > MAX_FUNCTION_LINES:
                key = f"{source.name}:{qualname}"
                long[key] = (
                    f"{source.name}:{node.lineno}: {qualname}: {size} lines (at most {MAX_FUNCTION_LINES})"
                )
    wrong = [text for key, text in sorted(long.items()) if key not in LONG_FUNCTIONS]
    stale = [key for key in sorted(LONG_FUNCTIONS) if key not in long]
    assert not wrong, "functions to split:\n" + "\n".join(wrong)
    assert not stale, "no longer over the limit, remove from the allow-lists: " + ", ".join(stale)


def test_every_folder_has_a_floor() -> None:
    folders = {s.floor_name for s in SOURCES} - {None}
    assert folders <= FLOORS.keys(), (
        f"give these a floor in FLOORS and docs/ARCHITECTURE.md: {folders - FLOORS.keys()}"
    )


def test_imports_run_down_the_floors() -> None:
    wrong = []
    for source in SOURCES:
        if source.floor_name is not None:
            wrong += upward(source.name, source.floor_name, imports_of(source.name, source.tree))
    assert not wrong, "imports against the floors:\n" + "\n".join(wrong)


def test_no_folder_loops_within_a_floor() -> None:
    floors = {s.name: s.floor_name for s in SOURCES if s.floor_name is not None}
    every = [imp for s in SOURCES if s.name in floors for imp in imports_of(s.name, s.tree)]
    found = loops(every, floors)
    assert not found, "folders of one floor that import each other:\n" + "\n".join(found)


# The checks themselves, on made-up modules: each must name what it finds.

MADE_UP = """
from typing import TYPE_CHECKING
from gate_daemon.errors import GateError
from . import ledger
from ..config import sections

if TYPE_CHECKING:
    from gate_daemon.net.peers import Replicator

def later() -> None:
    import gate_daemon.daemon.app
"""


def test_imports_are_found_under_type_checking_inside_functions_and_relative() -> None:
    found = imports_of("store/schema.py", ast.parse(MADE_UP))
    assert [(i.line, i.module) for i in found] == [
        (3, "gate_daemon.errors"),
        (4, "gate_daemon.store.ledger"),
        (5, "gate_daemon.config"),
        (8, "gate_daemon.net.peers"),
        (11, "gate_daemon.daemon.app"),
    ]


def test_an_upward_import_is_named_with_file_line_and_text() -> None:
    wrong = upward("store/schema.py", "store", imports_of("store/schema.py", ast.parse(MADE_UP)))
    assert wrong == [
        "store/schema.py:8: 'from gate_daemon.net.peers import Replicator' runs up the floors "
        "(store 2 -> net 5)",
        "store/schema.py:11: 'import gate_daemon.daemon.app' runs up the floors (store 2 -> daemon 6)",
    ]


def test_a_loop_between_folders_of_one_floor_is_named() -> None:
    there = imports_of("store/schema.py", ast.parse("from gate_daemon.config.sections import X"))
    back = imports_of("config/load.py", ast.parse("\n\nfrom gate_daemon.store import ledger"))
    one_way = loops(there, {"store/schema.py": "store"})
    both = loops(there + back, {"store/schema.py": "store", "config/load.py": "config"})
    assert one_way == []
    assert both == [
        "config <-> store: config/load.py:3: 'from gate_daemon.store import ledger' and "
        "store/schema.py:1: 'from gate_daemon.config.sections import X'"
    ]


def test_functions_are_found_nested_and_in_classes_by_qualified_name() -> None:
    tree = ast.parse(
        "class A:\n    def f(self):\n        def g():\n            pass\nasync def h():\n    pass\n"
    )
    assert [(name, node.lineno) for name, node in _functions(tree)] == [("A.f", 2), ("A.f.g", 3), ("h", 5)]
