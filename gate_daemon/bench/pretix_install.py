"""A real pretix, installed once per machine: its own venv and a migrated empty database.

pretix pins Django and about ninety packages, so it never goes into the project's venv. The
cache (``cache_dir()``) holds ``venv/`` (``pip install pretix==PRETIX_VERSION``) and
``template.sqlite3`` (``python -m pretix migrate`` on an empty database, about two minutes of
CPU); ``ready`` is written last, so a build cut short is built again. ``GATE_PRETIX_CACHE``
names another folder. Run ``python -m gate_daemon.bench.pretix_install`` (scripts/pretix-cache)
to build it ahead of the tests and the bench.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gate_daemon.errors import GateError

PRETIX_VERSION = "2026.8.0"
_MARKER = "ready"


def cache_dir() -> Path:
    """Where the venv and the template live: GATE_PRETIX_CACHE, else a per-machine cache."""
    named = os.environ.get("GATE_PRETIX_CACHE")
    if named:
        return Path(named)
    if os.geteuid() == 0:
        return Path("/var/cache/gate-daemon-tests") / f"pretix-{PRETIX_VERSION}"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gate-daemon-tests" / f"pretix-{PRETIX_VERSION}"


def is_ready(where: Path | None = None) -> bool:
    """Whether a complete cache is there (its marker is written last)."""
    return ((where or cache_dir()) / _MARKER).is_file()


def python_of(where: Path) -> Path:
    """The pretix venv's interpreter."""
    return where / "venv" / "bin" / "python"


def template_of(where: Path) -> Path:
    """The migrated empty database each session copies."""
    return where / "template.sqlite3"


def write_config(datadir: Path, port: int) -> Path:
    """pretix's config for one server on 127.0.0.1:``port`` with its data in ``datadir``."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / "pretix.cfg"
    path.write_text(
        "[pretix]\ninstance_name=gate-daemon tests\n"
        f"url=http://127.0.0.1:{port}\ncurrency=EUR\ndatadir={datadir}\n"
        "[locale]\ndefault=en\ntimezone=UTC\n"
        f"[database]\nbackend=sqlite3\nname={datadir / 'db.sqlite3'}\n"
        "[django]\ndebug=false\n"
        "[mail]\nfrom=gate@localhost\nhost=127.0.0.1\nport=1\n",
        encoding="utf-8",
    )
    (datadir / f"{_SETTINGS}.py").write_text(_SETTINGS_TEXT, encoding="utf-8")
    return path


#: pretix's settings, with SQLite taking its write lock when a transaction begins and
#: waiting for it: else two check-ins at once (a bridge's uploads beside another device)
#: fail with pretix's 500 "database is locked". pretix offers no config key for it.
_SETTINGS = "gate_pretix_settings"
_SETTINGS_TEXT = """from pretix.settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 60}  # noqa: F405
"""


def pretix_env(config: Path) -> dict[str, str]:
    """The environment a pretix command runs in (its config, and the settings beside it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PRETIX_CONFIG_FILE"] = str(config)
    env["PYTHONPATH"] = str(config.parent)
    env["DJANGO_SETTINGS_MODULE"] = _SETTINGS
    return env


#: The longest each step of the build may take (seconds): generous, for a slow mirror or a Pi.
PIP_TIMEOUT = 900.0
MIGRATE_TIMEOUT = 600.0
VENV_TIMEOUT = 300.0


class PretixBuildTimeout(GateError):
    """A step of the pretix cache build did not finish in its time (a hung mirror, a stuck migration)."""


def _run(argv: list[str], what: str, env: dict[str, str] | None = None, *, timeout: float) -> None:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PretixBuildTimeout(f"pretix cache: {what} did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise GateError(f"pretix cache: {what} failed ({done.returncode}):\n" + "\n".join(tail))


def build(where: Path | None = None) -> Path:
    """Build the cache if it is not complete; answer its folder. Idempotent."""
    where = where or cache_dir()
    if is_ready(where):
        return where
    where.mkdir(parents=True, exist_ok=True)
    venv = where / "venv"
    if venv.exists():
        shutil.rmtree(venv)
    _run([sys.executable, "-m", "venv", str(venv)], "python -m venv", timeout=VENV_TIMEOUT)
    pip = [str(python_of(where)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip", "wheel"], "pip upgrade", timeout=PIP_TIMEOUT)
    _run([*pip, f"pretix=={PRETIX_VERSION}"], f"pip install pretix=={PRETIX_VERSION}", timeout=PIP_TIMEOUT)
    with tempfile.TemporaryDirectory(prefix="pretix-migrate-") as tmp:
        datadir = Path(tmp)
        config = write_config(datadir, 8000)
        migrate = [str(python_of(where)), "-m", "pretix", "migrate", "--noinput"]
        _run(migrate, "migrate", pretix_env(config), timeout=MIGRATE_TIMEOUT)
        shutil.copyfile(datadir / "db.sqlite3", template_of(where))
    (where / _MARKER).write_text(f"pretix {PRETIX_VERSION}\n", encoding="utf-8")
    return where


def main() -> int:
    """Build the cache and say where it is and how long it took."""
    started = time.monotonic()
    try:
        where = build()
    except GateError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"pretix {PRETIX_VERSION} ready in {where} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
