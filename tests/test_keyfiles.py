"""Key files: modes, refusals, and the one-line text forms."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gate_daemon.core.keys import KeyFormatError, PublicKey, SecretKey, key_id_bytes
from gate_daemon.errors import KeyFileError
from gate_daemon.provision.keyfiles import public_key_ref, read_public, read_secret, write_keypair


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_keypair_writes_a_private_secret_and_a_public_file(tmp_path: Path) -> None:
    secret_path, public_path, key = write_keypair(tmp_path / "gate-a")
    assert (secret_path.name, public_path.name) == ("gate-a.key", "gate-a.pub")
    assert mode(secret_path) == 0o600
    assert read_secret(secret_path) == key
    assert read_public(public_path) == key.public
    assert secret_path.read_text().startswith("ed25519-secret:")
    assert public_path.read_text() == key.public.text() + "\n"


def test_write_keypair_refuses_to_overwrite(tmp_path: Path) -> None:
    secret_path, _, key = write_keypair(tmp_path / "gate-a")
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path / "gate-a")
    assert read_secret(secret_path) == key  # untouched
    _, _, new = write_keypair(tmp_path / "gate-a", overwrite=True)
    assert new != key and read_secret(secret_path) == new


def test_refuses_to_overwrite_when_only_the_public_half_exists(tmp_path: Path) -> None:
    (tmp_path / "gate-a.pub").write_text("something\n")
    with pytest.raises(KeyFileError, match=r"gate-a\.pub already exists"):
        write_keypair(tmp_path / "gate-a")
    assert not (tmp_path / "gate-a.key").exists()


def test_overwrite_makes_an_open_file_private_again(tmp_path: Path) -> None:
    secret_path, _, _ = write_keypair(tmp_path / "gate-a")
    secret_path.chmod(0o644)
    write_keypair(tmp_path / "gate-a", overwrite=True)
    assert mode(secret_path) == 0o600


@pytest.mark.parametrize("open_mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o010])
def test_read_secret_refuses_a_file_others_can_read(tmp_path: Path, open_mode: int) -> None:
    secret_path, _, _ = write_keypair(tmp_path / "gate-a")
    secret_path.chmod(open_mode)
    with pytest.raises(KeyFileError) as caught:
        read_secret(secret_path)
    assert f"chmod 600 {secret_path}" in str(caught.value)
    assert f"{open_mode:04o}" in str(caught.value)


def test_read_secret_accepts_owner_only_modes(tmp_path: Path) -> None:
    secret_path, _, key = write_keypair(tmp_path / "gate-a")
    secret_path.chmod(0o400)
    assert read_secret(secret_path) == key


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"ed25519:AAAA\n", "expected a secret key"),
        (b"ed25519-secret:AAAA\n", "must be 32 bytes"),
        (b"ed25519-secret:****\n", "not valid base64"),
        (b"\xff\xfe\x00", "not a gate-daemon key file"),
        (b"", "expected a secret key"),
    ],
)
def test_read_secret_refuses_what_is_not_a_secret_key(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "x.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=words):
        read_secret(path)


def test_read_secret_of_a_public_key_file_says_it_is_not_a_secret_key(tmp_path: Path) -> None:
    """The format is checked before the mode: a .pub is 0644, and chmod would be the wrong advice."""
    _, public_path, _ = write_keypair(tmp_path / "gate-a")
    assert mode(public_path) & 0o044  # readable by others, as a public key should be
    with pytest.raises(KeyFileError) as caught:
        read_secret(public_path)
    assert str(caught.value).startswith(f"{public_path}: expected a secret key")
    assert "chmod" not in str(caught.value)


def test_read_secret_checks_the_mode_of_a_real_secret_key(tmp_path: Path) -> None:
    secret_path, _, _ = write_keypair(tmp_path / "gate-a")
    secret_path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_secret(secret_path)


def test_read_secret_of_a_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read secret key"):
        read_secret(tmp_path)


def test_public_file_mode(tmp_path: Path) -> None:
    _, public_path, _ = write_keypair(tmp_path / "gate-a")
    assert mode(public_path) == 0o644


@pytest.mark.parametrize("half", ["key", "pub"])
def test_overwrite_never_follows_a_symlink(tmp_path: Path, half: str) -> None:
    write_keypair(tmp_path / "gate-a")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / f"gate-a.{half}"
    link.unlink()
    link.symlink_to(victim)
    with pytest.raises(KeyFileError, match=f"{link} is a symbolic link"):
        write_keypair(tmp_path / "gate-a", overwrite=True)
    assert victim.read_text() == "precious\n"
    assert link.is_symlink()


@pytest.mark.parametrize("half", ["key", "pub"])
def test_no_overwrite_refuses_a_dangling_symlink(tmp_path: Path, half: str) -> None:
    target = tmp_path / "would-be-created"
    (tmp_path / f"gate-a.{half}").symlink_to(target)
    with pytest.raises(KeyFileError, match=rf"gate-a\.{half} is a symbolic link"):
        write_keypair(tmp_path / "gate-a")
    assert not target.exists()


def test_read_public_of_a_secret_key_file_says_so(tmp_path: Path) -> None:
    secret_path, _, _ = write_keypair(tmp_path / "gate-a")
    with pytest.raises(KeyFileError, match="found a secret key"):
        read_public(secret_path)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read public key"):
        read_public(tmp_path / "absent.pub")
    with pytest.raises(KeyFileError, match="cannot read secret key"):
        read_secret(tmp_path / "absent.key")
    with pytest.raises(KeyFileError, match="cannot read public key"):
        read_public(tmp_path)
    with pytest.raises(KeyFileError):
        read_public(tmp_path / "nul\x00byte.pub")
    with pytest.raises(KeyFileError):
        read_secret(tmp_path / "nul\x00byte.key")


def test_public_key_ref_inline_or_relative(tmp_path: Path) -> None:
    _, public_path, key = write_keypair(tmp_path / "issuer")
    assert public_key_ref(key.public.text(), tmp_path) == key.public
    assert public_key_ref(public_path.name, tmp_path) == key.public
    with pytest.raises(KeyFileError, match="32 bytes"):
        public_key_ref("ed25519:AAAA", tmp_path)


def test_text_forms_round_trip_and_ids() -> None:
    key = SecretKey.generate()
    assert SecretKey.parse(key.text()) == key
    assert PublicKey.parse("  " + key.public.text() + "\n") == key.public
    assert key.public.kid == key_id_bytes(key.public.raw).hex()
    assert len(key.public.kid) == 8
    assert key.text() not in repr(key) and key.public.kid in repr(key)


def test_signatures_are_domain_separated() -> None:
    key = SecretKey.generate()
    signature = key.sign(b"domain-a\x00", b"message")
    assert key.public.verify(b"domain-a\x00", b"message", signature)
    assert not key.public.verify(b"domain-b\x00", b"message", signature)
    assert not key.public.verify(b"domain-a\x00", b"message", signature[:-1])


@pytest.mark.parametrize("text", ["", "ed25519:", "ed25519-secret:" + "A" * 44, "ed25519:é", "rsa:AAAA"])
def test_public_parse_errors_are_key_format_errors(text: str) -> None:
    with pytest.raises(KeyFormatError):
        PublicKey.parse(text)
