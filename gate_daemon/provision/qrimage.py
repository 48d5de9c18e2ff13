"""QR images of ticket payloads (segno), as PNG or SVG by the file's suffix."""

from __future__ import annotations

from pathlib import Path

import segno

from gate_daemon.errors import GateError


def write_qr(payload: str, path: Path, *, scale: int = 8) -> str:
    """Write ``payload`` as a QR code image; returns the QR mode segno chose."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise GateError(f"{path}: QR images are written as .png or .svg")
    # Error correction M survives a scuffed printout or a cracked phone screen while
    # keeping a 150-character payload at a size cameras read from 20-40 cm.
    code = segno.make(payload, error="m", micro=False)
    try:
        code.save(str(path), scale=scale, border=4)
    except OSError as exc:
        raise GateError(f"cannot write {path}: {exc.strerror}") from None
    return str(code.mode)
