"""Opening a manifest file from disk: mapped, verified, then searched in place."""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from gate_daemon.core.delta import apply_delta, rebuild
from gate_daemon.core.keys import PublicKey
from gate_daemon.core.manifest import MAX_HEAD, Head, Manifest, accept_manifest, open_head, open_manifest
from gate_daemon.core.manifest_header import Header
from gate_daemon.errors import ManifestRefused
from gate_daemon.files import open_regular, write_atomic

#: Deltas are read whole; one larger than this is not a delta worth applying.
MAX_DELTA = 1 << 30
#: A dropped manifest larger than this is refused before it can fill the state directory.
MAX_MANIFEST = 1 << 30


def check_head(handle: BinaryIO, path: Path, trusted: Sequence[PublicKey], limit: int) -> Head:
    """Verify the header of an open manifest or delta file, and that the file is the size it declares.

    Reads the header only: an empty file, one over ``limit`` bytes, a header no trusted key
    signed, and a file longer or shorter than its signed header says are refused before a
    byte of the payload is copied, hashed or read into memory. Moves ``handle``'s position;
    ``OSError`` from reading is the caller's to name.
    """
    size = os.fstat(handle.fileno()).st_size
    if not size:
        raise ManifestRefused("malformed", f"{path} is empty")
    if size > limit:
        raise ManifestRefused("malformed", f"{path} is larger than {limit >> 20} MiB")
    head = open_head(handle.read(MAX_HEAD), trusted)
    head.check_payload_size(size - head.offset)
    return head


def read_signed_header(path: Path, trusted: Sequence[PublicKey]) -> Header:
    """The verified header of a manifest (or delta) file that is the size it declares; the payload unread.

    A delta's header is the header of the full manifest it produces, so either names the
    same version and body digest.
    """
    try:
        with open_regular(path) as handle:
            return check_head(handle, path, trusted, MAX_MANIFEST).header
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot read {path}: {exc.strerror}") from None


def read_delta(path: Path, trusted: Sequence[PublicKey]) -> bytes:
    """A delta file's bytes, read whole only after its signed header and its size agree."""
    try:
        with open_regular(path) as handle:
            head = check_head(handle, path, trusted, MAX_DELTA)
            handle.seek(0)
            # No more than was checked, should the file grow meanwhile.
            return handle.read(head.offset + head.payload_size)
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot read {path}: {exc.strerror}") from None


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
            _copy_checked(source, out, trusted)
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


def _copy_checked(source: Path, out: BinaryIO, trusted: Sequence[PublicKey]) -> None:
    """Copy ``source`` into ``out``, once its header says it is a manifest of the size it is."""
    try:
        with open_regular(source) as handle:
            head = check_head(handle, source, trusted, MAX_MANIFEST)
            handle.seek(0)
            # No more than was checked, should the file grow meanwhile: the copy is verified
            # whole afterwards, so one that shrank is refused there.
            left = head.offset + head.payload_size
            while left and (chunk := handle.read(min(left, 1 << 20))):
                out.write(chunk)
                left -= len(chunk)
    except OSError as exc:
        raise ManifestRefused("unreadable", f"cannot copy {source}: {exc.strerror}") from None


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
    return apply_delta(base, read_delta(path, trusted), trusted)


def write_delta_result(
    base: Manifest, delta_path: Path, out_path: Path, trusted: Sequence[PublicKey]
) -> None:
    """Apply a delta file to ``base`` and write the full manifest it produces, atomically.

    The result is written in two parts rather than assembled in memory once more.
    """
    prefix, body = rebuild(base, read_delta(delta_path, trusted), trusted)
    write_atomic(out_path, prefix, *body.parts)
    del body  # it holds views of the base's pages
    settle(base)
