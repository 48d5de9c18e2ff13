"""Opening a manifest file from disk: mapped, verified, then searched in place."""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from gate_daemon.core.delta import apply_delta, rebuild
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import Manifest, accept_manifest, open_manifest
from gate_daemon.errors import ManifestRefused
from gate_daemon.files import open_regular, read_regular, write_atomic

#: Deltas are read whole; one larger than this is not a delta worth applying.
MAX_DELTA = 1 << 30
#: A dropped manifest larger than this is refused before it can fill the state directory.
MAX_MANIFEST = 1 << 30


def read_manifest(path: Path, trusted: Sequence[PublicKey]) -> Manifest:
    """Map ``path`` read-only and verify it.

    Verification hashes every page once; afterwards the mapping is advised away so the
    resident set holds only the pages that lookups touch. Keep the verified file private
    to the gate (the daemon copies it into its state directory): the mapping reads the
    file as it is, so only the gate should be able to write it.
    """
    try:
        with open_regular(path) as handle:
            if not os.fstat(handle.fileno()).st_size:
                raise ManifestRefused("malformed", f"{path} is empty")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot read {path}: {exc.strerror}") from None
    manifest = open_manifest(mapped, trusted)
    settle(manifest)
    return manifest


def install_manifest(
    source: Path,
    dest: Path,
    trusted: Sequence[PublicKey],
    *,
    now: float,
    last_version: int = 0,
    last_sha256: str | None = None,
    check: Callable[[Manifest], None] | None = None,
) -> Manifest:
    """Copy ``source`` beside ``dest``, verify the copy, and only then rename it over ``dest``.

    The bytes verified are the bytes used afterwards: the copy is private to the gate, so
    whoever may write ``source`` cannot change a manifest after it was checked. ``check``
    may refuse it further (another event, another zone) by raising ``ManifestRefused``.
    A refused manifest leaves ``dest`` as it was.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot write in {dest.parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as out:
            try:
                with open_regular(source) as handle:
                    if os.fstat(handle.fileno()).st_size > MAX_MANIFEST:
                        raise ManifestRefused(
                            "malformed", f"{source} is larger than {MAX_MANIFEST >> 20} MiB"
                        )
                    copied = 0
                    while chunk := handle.read(1 << 20):
                        copied += len(chunk)
                        if copied > MAX_MANIFEST:
                            raise ManifestRefused("malformed", f"{source} grew past {MAX_MANIFEST >> 20} MiB")
                        out.write(chunk)
            except OSError as exc:
                raise ManifestRefused("unreadable", f"cannot copy {source}: {exc.strerror}") from None
            try:
                out.flush()
                os.fsync(out.fileno())
                if not out.tell():
                    raise ManifestRefused("malformed", f"{source} is empty")
                mapped = mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as exc:  # the state directory's disk (full, failing)
                raise ManifestRefused(
                    "unreadable", f"cannot write the copy of {source}: {exc.strerror}"
                ) from None
        manifest = accept_manifest(
            mapped, trusted, now=now, last_version=last_version, last_sha256=last_sha256
        )
        if check is not None:
            check(manifest)
        try:
            tmp.replace(dest)
        except OSError as exc:
            raise ManifestRefused(
                "unreadable", f"cannot install {source} as {dest}: {exc.strerror}"
            ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    settle(manifest)
    return manifest


def sweep_partial_installs(dest: Path) -> None:
    """Remove copies that a crash left beside ``dest`` while installing (``.NAME.*``)."""
    with contextlib.suppress(OSError):
        for stray in dest.parent.glob(f".{dest.name}.*"):
            with contextlib.suppress(OSError):
                stray.unlink()


def settle(manifest: Manifest) -> None:
    """Drop a mapped manifest's pages from the resident set after a pass over all of them.

    Clean file pages come back from the page cache on the next lookup that needs them.
    """
    mapped = manifest.envelope.payload.obj
    if isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


def apply_delta_file(base: Manifest, path: Path, trusted: Sequence[PublicKey]) -> bytes:
    """Read a delta file and return the full manifest it produces from ``base``."""
    try:
        data = read_regular(path, MAX_DELTA)
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot read {path}: {exc.strerror}") from None
    return apply_delta(base, data, trusted)


def write_delta_result(
    base: Manifest, delta_path: Path, out_path: Path, trusted: Sequence[PublicKey]
) -> None:
    """Apply a delta file to ``base`` and write the full manifest it produces, atomically.

    The result is written in two parts rather than assembled in memory once more.
    """
    try:
        data = read_regular(delta_path, MAX_DELTA)
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot read {delta_path}: {exc.strerror}") from None
    prefix, body = rebuild(base, data, trusted)
    write_atomic(out_path, prefix, *body.parts)
    del body  # it holds views of the base's pages
    settle(base)
