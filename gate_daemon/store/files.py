"""Files the gate and its tools write: whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gate_daemon.errors import GateError


def write_atomic(path: Path, *parts: bytes | bytearray | memoryview, mode: int = 0o644) -> None:
    """Write ``parts`` beside ``path``, flush them to disk, then rename over ``path``.

    Readers see the old file or the new one, whole; a crash leaves at most a stray
    temporary file (named ``.NAME.*``), never a torn ``path``.
    """
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        raise GateError(f"cannot write in {folder}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                out.write(part)
            os.fchmod(out.fileno(), mode)  # mkstemp makes 0600
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise GateError(f"cannot write {path}: {exc.strerror}") from None
    # Make the rename itself durable; the file is already in place if this fails.
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
