"""Key files on disk: ``NAME.key`` (secret, mode 0600) and ``NAME.pub``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gate_daemon.core.keys import KeyFormatError, PublicKey, SecretKey
from gate_daemon.errors import KeyFileError
from gate_daemon.files import open_regular, read_regular


def write_keypair(stem: Path, *, overwrite: bool = False) -> tuple[Path, Path, SecretKey]:
    """Create ``stem.key`` (0600) and ``stem.pub`` for a fresh key; never clobber by default.

    Neither file is written through a symbolic link, and without ``overwrite`` an existing
    file (even one that appears between the check and the write) is never touched.
    """
    secret_path = stem.with_name(stem.name + ".key")
    public_path = stem.with_name(stem.name + ".pub")
    for path in (secret_path, public_path):
        if path.is_symlink():
            raise KeyFileError(f"{path} is a symbolic link; refusing to write a key through it")
        if path.exists() and not overwrite:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key (use --force)")
    key = SecretKey.generate()
    _write_key_file(secret_path, key.text(), 0o600, overwrite=overwrite)
    _write_key_file(public_path, key.public.text(), 0o644, overwrite=overwrite)
    return secret_path, public_path, key


def _write_key_file(path: Path, text: str, mode: int, *, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), mode)
            out.write(text + "\n")
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}") from None


def read_secret(path: Path) -> SecretKey:
    """Load a secret key, refusing one that group or others can read (as ssh does)."""
    try:
        with open_regular(path) as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read(4096).decode()
    except OSError as exc:
        raise KeyFileError(f"cannot read secret key {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a gate-daemon key file") from None
    except ValueError as exc:  # a path with a NUL byte
        raise KeyFileError(f"cannot read secret key {path!r}: {exc}") from None
    try:
        key = SecretKey.parse(text)
    except KeyFormatError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"secret key {path} has mode {stat.S_IMODE(mode):04o}; run: chmod 600 {path}")
    return key


def read_public(path: Path) -> PublicKey:
    """Load a public key file."""
    try:
        text = read_regular(path, 4096).decode()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a gate-daemon key file") from None
    except ValueError as exc:  # a path with a NUL byte (it can come from a TOML string)
        raise KeyFileError(f"cannot read public key {path!r}: {exc}") from None
    try:
        return PublicKey.parse(text)
    except KeyFormatError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def public_key_ref(ref: str, base: Path) -> PublicKey:
    """A public key given inline (``ed25519:...``) or as a path relative to ``base``."""
    if ref.startswith("ed25519:"):
        try:
            return PublicKey.parse(ref)
        except KeyFormatError as exc:
            raise KeyFileError(str(exc)) from None
    return read_public(base / ref)
