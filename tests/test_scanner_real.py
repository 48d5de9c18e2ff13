"""A real USB or serial scanner, read through its adapter: run by a tech with the scanner in hand.

Skipped unless ``GATE_HW_SCANNER`` names the device node and ``GATE_HW_SCANNER_KIND`` is
``hid`` or ``serial`` (a person has to scan a code within 30 seconds). On the Pi, with
the gate stopped:

    sudo systemctl stop gate-daemon
    GATE_HW_SCANNER=/dev/gate-scanner GATE_HW_SCANNER_KIND=hid \\
        .venv/bin/python -m pytest -q -s tests/test_scanner_real.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

DEVICE = os.environ.get("GATE_HW_SCANNER")
KIND = os.environ.get("GATE_HW_SCANNER_KIND")

pytestmark = pytest.mark.skipif(
    DEVICE is None or KIND not in {"hid", "serial"},
    reason="needs a scanner: set GATE_HW_SCANNER=/dev/... and GATE_HW_SCANNER_KIND=hid|serial",
)


async def test_one_code_scanned_by_hand_comes_out() -> None:
    assert DEVICE is not None
    if KIND == "hid":
        from gate_daemon.hardware.hid_scanner import HidScannerInput

        source = HidScannerInput(Path(DEVICE))
    else:
        from gate_daemon.hardware.serial_scanner import SerialScannerInput

        source = SerialScannerInput(Path(DEVICE), int(os.environ.get("GATE_HW_SCANNER_BAUD", "9600")))
    print(f"\nscan any QR code or barcode with the scanner on {DEVICE} (30 s)")
    payloads = source.payloads()
    try:
        payload = await asyncio.wait_for(anext(payloads), timeout=30)
    finally:
        await source.aclose()
        await payloads.aclose()
    assert payload.strip() and "\ufffd" not in payload, "the scanner's keyboard layout is not US?"
    assert source.problem is None
