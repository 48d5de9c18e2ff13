"""The QR decoders behind the ``Decoder`` port: zxing-cpp and ZBar (through pyzbar).

Both take a grey ``Frame`` as a camera delivers it, row padding included, and return
the text of every QR code in it. Neither raises for what a camera can see: noise, a
blank wall, a frame too small to hold a code all give ``[]``.

Text is the code's bytes read as UTF-8. Bytes that are not UTF-8 still come out as a
``str``, each such byte kept as a lone surrogate (``surrogateescape``, as the stdin
input does); the gate then names the payload ``invalid_payload``. ZBar guesses a
legacy character set and converts to UTF-8 itself, so the two decoders can spell
non-UTF-8 codes differently; no ticket format is anything but ASCII.

Wiring: ``make_decoder(config.input.decoder)`` builds the one the config names; the
library is imported then, never when this module is, and a missing one is a
``GateError`` that says what to install. ``auto`` takes the faster decoder that loads
(``AUTO_ORDER``). ``decode`` blocks for a few milliseconds and releases the GIL inside
the library: call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gate_daemon.config.sections import DecoderKind
from gate_daemon.errors import GateError
from gate_daemon.hardware.ports import Decoder, Frame

if TYPE_CHECKING:
    from PIL import Image

#: The order ``auto`` tries the decoders in: the first that loads is used. zxing-cpp
#: first: in ``gatectl bench decode --frames 50`` (500 frames, three runs) it took a
#: median of 0.48 ms a 640x480 frame to ZBar's 4.82 ms (p99 2.6 ms to 13.8 ms) and read
#: 95% of the frames to ZBar's 70%, inverted codes included (docs/PERFORMANCE.md).
AUTO_ORDER: tuple[DecoderKind, ...] = (DecoderKind.ZXING, DecoderKind.ZBAR)

#: The smallest QR code (version 1) is 21 modules a side: a narrower frame holds none,
#: and the libraries are not asked about degenerate images.
MIN_SIDE = 21
#: zxing-cpp refuses wider or taller images (ValueError); no camera makes one.
ZXING_MAX_SIDE = 65535


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class ZxingDecoder:
    """QR codes through zxing-cpp, reading the frame in place.

    An unpadded frame is handed over as a 2-D view of its buffer, without a copy; a
    padded one is copied row by row first (about 0.1 ms for 640x480 on the dev machine):
    zxing-cpp 2.2, the oldest the package allows, has no strided image view. Inverted
    (light on dark) codes are read too.
    """

    name = "zxing"

    def __init__(self) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise GateError(f"the zxing QR decoder cannot be loaded ({exc}): pip install zxing-cpp") from None
        self._read = zxingcpp.read_barcodes
        # Tickets are QR codes (model 2, what every issuer prints). zxing-cpp 3 made
        # "QRCode" a family that includes Micro QR, whose smallest size carries no error
        # correction: the modules of a real, tilted code then also read as a phantom
        # micro code (seen in the benchmark's perspective frames). zxing-cpp 2 has no
        # QRCodeModel2, and its QRCode is the plain QR code.
        qr = getattr(zxingcpp.BarcodeFormat, "QRCodeModel2", zxingcpp.BarcodeFormat.QRCode)
        self._formats = zxingcpp.BarcodeFormats(qr)

    def decode(self, frame: Frame) -> list[str]:
        """The text of every QR code in ``frame``; [] when there is none."""
        if min(frame.width, frame.height) < MIN_SIDE or max(frame.width, frame.height) > ZXING_MAX_SIDE:
            return []
        if frame.stride == frame.width:
            view = memoryview(frame.pixels).cast("B")[: frame.width * frame.height]
        else:
            view = memoryview(frame.rows())
        found = self._read(view.cast("B", (frame.height, frame.width)), formats=self._formats)
        return [_text(code.bytes) for code in found if code.valid]


class ZbarDecoder:
    """QR codes through ZBar (pyzbar): the second decoder, an optional extra.

    Needs Debian's ``libzbar0`` and ``pip install 'gate-daemon[zbar]'``. ZBar takes
    unpadded rows only, so every frame is copied into one (about 0.1 ms for 640x480
    when padded, a plain copy when not). Inverted (light on dark) codes are not read:
    pyzbar cannot turn on libzbar's ``test-inverted`` option.
    """

    name = "zbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar
        except ImportError as exc:  # pyzbar itself, or the libzbar0 it loads with ctypes
            raise GateError(
                f"the zbar QR decoder cannot be loaded ({exc}): "
                "apt install libzbar0 and pip install 'gate-daemon[zbar]'"
            ) from None
        self._decode = pyzbar.decode
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, frame: Frame) -> list[str]:
        """The text of every QR code in ``frame``; [] when there is none."""
        if frame.width < MIN_SIDE or frame.height < MIN_SIDE:
            return []
        found = self._decode((frame.rows(), frame.width, frame.height), symbols=self._symbols)
        return [_text(symbol.data) for symbol in found]


_DECODERS: dict[DecoderKind, type[ZxingDecoder] | type[ZbarDecoder]] = {
    DecoderKind.ZXING: ZxingDecoder,
    DecoderKind.ZBAR: ZbarDecoder,
}


def make_decoder(kind: DecoderKind) -> Decoder:
    """The decoder ``kind`` names, or for ``auto`` the first of ``AUTO_ORDER`` that loads."""
    if kind is not DecoderKind.AUTO:
        return _DECODERS[kind]()
    problems = []
    for choice in AUTO_ORDER:
        try:
            return _DECODERS[choice]()
        except GateError as exc:
            problems.append(str(exc))
    raise GateError("no QR decoder can be loaded: " + "; ".join(problems))


def frame_from_image(image: Image.Image) -> Frame:
    """The grey frame of a Pillow image; transparent parts count as white paper."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        # A code saved with a transparent background (segno's light=None) would
        # otherwise turn black on black.
        flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(flat, image.convert("RGBA"))
    grey = image if image.mode == "L" else image.convert("L")
    return Frame.tight(grey.tobytes(), grey.width, grey.height)
