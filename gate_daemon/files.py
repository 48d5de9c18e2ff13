"""Reading and writing the files gate-daemon is given or makes.

Reads accept only regular files (a FIFO would block, a device would never end) and read
a bounded amount; writes are whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from gate_daemon.errors import GateError


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file.

    Raises ``OSError`` (with ``strerror`` "not a regular file" for a FIFO, device or
    directory), which every caller already turns into its own named error.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int) -> bytes:
    """The contents of a regular file of at most ``limit`` bytes."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


def write_atomic(path: Path, *parts: bytes | bytearray | memoryview, mode: int = 0o644) -> None:
    """Write ``parts`` beside ``path``, flush them to disk, then rename over ``path``.

    Readers see the old file or the new one, whole; a crash leaves at most a stray
    temporary file (named ``.NAME.*``), never a torn ``path``. Only a regular file is
    ever replaced: not a device, a directory or a symbolic link.
    """
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise GateError(f"cannot write {path}: {exc.strerror}") from None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise GateError(f"{path} exists and is not a regular file; refusing to replace it")
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable; the file is already in place if this fails.
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
