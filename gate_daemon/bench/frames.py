"""Camera frames for the decode benchmark and tests: 640x480 grey, made from a seed.

Each frame shows one ticket's QR code as a phone or a printout shows it to a gate's
camera, on a lit background with some clutter, spoilt in one named way (``VARIANTS``);
``empty`` frames show no code at all. A frame carries the text its code holds, so a
decoder's answer can be checked. The same seed always makes the same frames, so
figures from two runs or two machines are about the same pictures.

The payloads look like real ones: signed tickets (``GD1:`` and about 130 base32
characters), reference codes (24 base32 characters) and legacy ``ORDER-SEAT`` codes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import segno
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from gate_daemon.core import base32
from gate_daemon.hardware.decoders import frame_from_image
from gate_daemon.hardware.ports import Frame

WIDTH, HEIGHT = 640, 480
#: Ink and paper of a clean code: a phone screen at full brightness, a laser print.
DARK, LIGHT = 24, 236
#: The quiet zone a ticket app or a printout leaves around the code, in modules.
BORDER = 4


@dataclass(frozen=True, slots=True)
class BenchFrame:
    """One generated frame and the text its code holds (None: there is no code)."""

    variant: str
    frame: Frame
    expected: str | None


def payload(rng: random.Random) -> str:
    """A ticket payload of one of the three formats, in their real proportions and lengths."""
    kind = rng.random()
    if kind < 0.6:
        # A v1 signed ticket: 10 header bytes, a ticket id of 4..16 bytes with its length
        # byte, and the 64-byte signature (gate_daemon.core.tokens).
        return "GD1:" + base32.encode(rng.randbytes(10 + 1 + rng.randint(4, 16) + 64))
    if kind < 0.8:
        return base32.encode(rng.randbytes(15))  # a 120-bit reference code
    return f"{rng.choice('ABCO')}{rng.randint(100, 99999)}-{rng.randint(1, 40)}"


def _background(rng: random.Random) -> Image.Image:
    """A lit scene: an uneven gradient with a few flat shapes (turnstile, sleeve, badge)."""
    low, high = rng.randint(70, 130), rng.randint(170, 220)
    ramp = Image.linear_gradient("L").rotate(rng.uniform(0, 360), Image.Resampling.BILINEAR, expand=True)
    side = ramp.width
    ramp = ramp.crop((side // 4, side // 4, side - side // 4, side - side // 4))
    scene = ramp.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR).point(
        lambda v: low + (high - low) * v // 255
    )
    draw = ImageDraw.Draw(scene)
    for _ in range(rng.randint(2, 5)):
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        w, h = rng.randint(20, 220), rng.randint(20, 160)
        shade = rng.randint(30, 240)
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + w, y + h), fill=shade)
        else:
            draw.ellipse((x, y, x + w, y + h), fill=shade)
    return scene


def _card(text: str, module: float, dark: int, light: int) -> Image.Image:
    """The code with its quiet zone, ``module`` pixels a module."""
    code = segno.make_qr(text, error="m")
    side = int(code.symbol_size(scale=1, border=BORDER)[0])
    sharp = Image.new("L", (side, side))
    sharp.putdata([dark if bit else light for row in code.matrix_iter(scale=1, border=BORDER) for bit in row])
    # Drawn sharp at 8 pixels a module, then brought down to size with a filter that
    # averages, as a lens and a sensor do: edges a pixel soft, modules of any width.
    size = max(side, round(side * module))
    large = sharp.resize((side * 8, side * 8), Image.Resampling.NEAREST)
    return large.resize((size, size), Image.Resampling.BILINEAR)


def _place(scene: Image.Image, card: Image.Image, mask: Image.Image, rng: random.Random) -> tuple[int, int]:
    """Paste ``card`` through ``mask`` somewhere on ``scene``, wholly inside; returns its top left."""
    x = rng.randint(0, max(0, WIDTH - card.width))
    y = rng.randint(0, max(0, HEIGHT - card.height))
    scene.paste(card, (x, y), mask)
    return x, y


def _perspective(size: int, corners: list[tuple[float, float]]) -> tuple[float, ...]:
    """Pillow's PERSPECTIVE coefficients that put a ``size`` square's corners at ``corners``.

    Pillow maps each output pixel back into the input, so the system solved is output
    corner -> input corner (eight equations, eight unknowns; Gauss-Jordan, no numpy).
    """
    source = [(0.0, 0.0), (float(size), 0.0), (float(size), float(size)), (0.0, float(size))]
    rows: list[list[float]] = []
    for (x, y), (u, v) in zip(corners, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -x * u, -y * u, u])
        rows.append([0, 0, 0, x, y, 1, -x * v, -y * v, v])
    for col in range(8):
        pivot = max(range(col, 8), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [value / lead for value in rows[col]]
        for r in range(8):
            if r != col and rows[r][col]:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return tuple(row[8] for row in rows)


def _code_frame(
    rng: random.Random,
    text: str,
    *,
    module: float,
    dark: int = DARK,
    light: int = LIGHT,
    angle: float = 0.0,
    tilt: float = 0.0,
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A scene with the code on it, turned by ``angle`` degrees and tilted back by ``tilt`` (0..1).

    Returns the frame and the box the code's card covers, for spoiling part of it.
    """
    scene = _background(rng)
    card = _card(text, module, dark, light)
    mask = Image.new("L", card.size, 255)
    if tilt:
        # The top edge further from the camera: shorter, and the code foreshortened.
        s = card.width
        inset, drop = s * tilt / 2, s * tilt / 3
        corners = [(inset, drop), (s - inset, drop), (float(s), float(s)), (0.0, float(s))]
        coefficients = _perspective(s, corners)
        card = card.transform(card.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
        mask = mask.transform(mask.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
    if angle:
        card = card.rotate(angle, Image.Resampling.BILINEAR, expand=True)
        mask = mask.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    x, y = _place(scene, card, mask, rng)
    return scene, (x, y, x + card.width, y + card.height)


def _clean(rng: random.Random, text: str) -> Image.Image:
    return _code_frame(rng, text, module=rng.uniform(3.0, 4.5))[0]


def _small(rng: random.Random, text: str) -> Image.Image:
    # About 70 pixels across the code itself (quiet zone aside), as from an arm's length.
    modules = len(segno.make_qr(text, error="m").matrix)
    return _code_frame(rng, text, module=rng.uniform(66, 74) / modules)[0]


def _blurred(rng: random.Random, text: str) -> Image.Image:
    image = _code_frame(rng, text, module=rng.uniform(3.0, 4.5))[0]
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.0)))


def _rotated(rng: random.Random, text: str) -> Image.Image:
    angle = rng.choice((20.0, 45.0, -20.0, -45.0)) + rng.uniform(-3, 3)
    return _code_frame(rng, text, module=rng.uniform(3.0, 4.0), angle=angle)[0]


def _low_contrast(rng: random.Random, text: str) -> Image.Image:
    # A dimmed phone screen behind a scratched visor: about 40 grey levels between ink and paper.
    middle = rng.randint(110, 150)
    return _code_frame(rng, text, module=rng.uniform(3.0, 4.5), dark=middle - 20, light=middle + 20)[0]


def _inverted(rng: random.Random, text: str) -> Image.Image:
    # A dark-themed ticket app: light modules on a dark screen.
    return _code_frame(rng, text, module=rng.uniform(3.0, 4.5), dark=LIGHT, light=DARK)[0]


def _glare(rng: random.Random, text: str) -> Image.Image:
    image, (left, top, right, bottom) = _code_frame(rng, text, module=rng.uniform(3.0, 4.5))
    # A reflection on the screen: washed out towards white at its heart, fading to
    # nothing at its rim, over a part of the code.
    side = right - left
    radius = round(side * rng.uniform(0.15, 0.25))
    cx = left + round(side * rng.uniform(0.3, 0.7))
    cy = top + round((bottom - top) * rng.uniform(0.3, 0.7))
    peak = rng.uniform(0.75, 0.95)
    fade = ImageChops.invert(Image.radial_gradient("L")).resize((2 * radius, 2 * radius))
    strength = fade.point(lambda v: round(peak * v))
    image.paste(255, (cx - radius, cy - radius), strength)
    return image


def _noisy(rng: random.Random, text: str) -> Image.Image:
    image = _code_frame(rng, text, module=rng.uniform(3.0, 4.5))[0]
    # Sensor noise in dim light: uniform, +-amplitude grey levels, from the seed (not
    # Pillow's effect_noise, which draws from the C library's generator).
    amplitude = rng.randint(28, 40)
    noise = Image.frombytes("L", image.size, rng.randbytes(WIDTH * HEIGHT))
    noise = noise.point(lambda v: v * 2 * amplitude // 255)
    return ImageChops.add(image, noise, 1.0, -amplitude)


def _perspective_frame(rng: random.Random, text: str) -> Image.Image:
    tilt = rng.uniform(0.25, 0.4)
    return _code_frame(rng, text, module=rng.uniform(3.5, 4.5), tilt=tilt, angle=rng.uniform(-10, 10))[0]


def _empty(rng: random.Random, text: str) -> Image.Image:
    return _background(rng)


_MAKERS: dict[str, Callable[[random.Random, str], Image.Image]] = {
    "clean": _clean,
    "small": _small,
    "blurred": _blurred,
    "rotated": _rotated,
    "low_contrast": _low_contrast,
    "inverted": _inverted,
    "glare": _glare,
    "noisy": _noisy,
    "perspective": _perspective_frame,
    "empty": _empty,
}
#: Every kind of frame, in the order the benchmark reports them.
VARIANTS: tuple[str, ...] = tuple(_MAKERS)


def make_frame(variant: str, index: int, seed: int = 0) -> BenchFrame:
    """Frame number ``index`` of ``variant``: the same arguments always give the same pixels."""
    try:
        maker = _MAKERS[variant]
    except KeyError:
        raise ValueError(f"unknown frame variant {variant!r}; one of {', '.join(VARIANTS)}") from None
    # A string seed is hashed with SHA-512, the same in every process (not hash()).
    rng = random.Random(f"gate-daemon/frames/{seed}/{variant}/{index}")
    text = payload(rng)
    image = maker(rng, text)
    assert image.size == (WIDTH, HEIGHT) and image.mode == "L"
    return BenchFrame(variant, frame_from_image(image), None if variant == "empty" else text)


#: The softening a camera module's lens and sensor add, in pixels (Gaussian radius).
LENS_BLUR = 0.6
#: Pixels per module for the density sweep: from too far (1.0) to near enough (3.0).
DENSITIES: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


#: The codes the density sweep draws: a signed ticket with the longest common ticket id
#: (10 header bytes, 17, the signature), and a rotating code of such a ticket with a
#: session and a zone (``core.rotating``: 43 header bytes, 17 + 4 + 6, two signatures
#: and the step): 41 and 61 modules across (versions 6 and 11) at error correction M.
DENSITY_CODES = {
    "signed": ("GD1:", 10 + 1 + 16 + 64),
    "rotating": ("GDR1:", 43 + 1 + 16 + 4 + 6 + 64 + 4 + 64),
}


def make_density_frame(module: float, index: int, seed: int = 0, code: str = "signed") -> BenchFrame:
    """A clean frame of a ``code`` (``DENSITY_CODES``) at ``module`` pixels a module.

    How far a code can be from the camera depends on how many pixels each module gets:
    ``stream width * code width / picture width / modules`` (hw/CAMERA.md).
    """
    rng = random.Random(f"gate-daemon/density/{seed}/{module}/{index}")
    prefix, size = DENSITY_CODES[code]
    text = prefix + base32.encode(rng.randbytes(size))
    # A module is never a whole number of pixels through a lens, and the lens softens
    # every edge by about half a pixel: without both, 1.0 would read as if drawn by hand.
    image, _ = _code_frame(rng, text, module=module * rng.uniform(1.0, 1.08))
    image = image.filter(ImageFilter.GaussianBlur(LENS_BLUR))
    return BenchFrame(f"{module:g} px/module", frame_from_image(image), text)


def make_frames(per_variant: int, seed: int = 0, variants: tuple[str, ...] = VARIANTS) -> list[BenchFrame]:
    """``per_variant`` frames of each of ``variants``, variant by variant."""
    return [make_frame(v, i, seed) for v in variants for i in range(per_variant)]
