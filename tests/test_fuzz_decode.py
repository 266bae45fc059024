"""Fuzzing the two places that decode untrusted image bytes: the server's upload decoding
(`ColorizeService.decode`) and prepare's image check (`colorjax.data.images.check_image`).

Inputs are small real PNG, JPEG, WebP, TIFF, BMP and GIF files made with PIL, then mutated
(bits flipped, bytes overwritten, inserted, deleted, the file truncated) and often given
forged dimensions in their headers (huge, extreme aspect ratios, zero). For every input:
no crash, no exception but the documented ones (`RequestError` 400/413/415; a `Checked`
with a known reason), and PIL never allocates an image over the pixel limit: the limit
checks fire on the header, before anything is decoded.

Bounded: a fixed number of examples, derandomized (the same inputs on every run).
"""

import contextlib
import io
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data as skdata

from colorjax.data.images import REASONS, Checked, check_image
from colorjax.serve import ColorizeService, RequestError

MAX_PIXELS, MAX_SIDE = 100_000, 2_000  # the server's limits here: small, so decoding is cheap
PIL_LIMIT = 50_000  # Image.MAX_IMAGE_PIXELS for check_image: bombs from 2x this (100,000)
EXAMPLES = 1500
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class _Stub:
    model_name, metadata, size, samples = "stub", {}, 32, False


SERVICE = ColorizeService(_Stub(), max_pixels=MAX_PIXELS, max_side=MAX_SIDE)


# --- real images, and forging their dimensions ----------------------------------------


def _bases() -> dict[str, bytes]:
    rgb = Image.fromarray(skdata.astronaut()).resize((24, 16), Image.BILINEAR)
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize((24, 16)))
    cases = {
        "PNG-rgb": (rgb, "PNG", {}), "PNG-rgba": (rgba, "PNG", {}),
        "PNG-gray16": (rgb.convert("I").point(lambda v: v * 256).convert("I;16"), "PNG", {}),
        "PNG-palette": (rgb.convert("P"), "PNG", {}),
        "JPEG-rgb": (rgb, "JPEG", {}), "JPEG-progressive": (rgb, "JPEG", {"progressive": True}),
        "JPEG-gray": (rgb.convert("L"), "JPEG", {}),
        "WEBP-lossy": (rgb, "WEBP", {}), "WEBP-lossless": (rgb, "WEBP", {"lossless": True}),
        "WEBP-alpha": (rgba, "WEBP", {}),
        "TIFF-raw": (rgb, "TIFF", {}), "TIFF-lzw": (rgb, "TIFF", {"compression": "tiff_lzw"}),
        "TIFF-deflate": (rgba, "TIFF", {"compression": "tiff_adobe_deflate"}),
        "BMP-rgb": (rgb, "BMP", {}), "GIF-palette": (rgb, "GIF", {}),
    }
    out = {}
    for name, (im, fmt, kw) in cases.items():
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    return out


BASES = _bases()


def _forge_png(d: bytearray, w: int, h: int) -> None:
    d[16:24] = struct.pack(">II", w, h)
    d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))  # a valid IHDR CRC


def _forge_jpeg(d: bytearray, w: int, h: int) -> None:
    for sof in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        i = d.find(sof)
        if i >= 0:
            d[i + 5:i + 9] = struct.pack(">HH", h & 0xFFFF, w & 0xFFFF)
            return


def _forge_webp(d: bytearray, w: int, h: int) -> None:
    chunk = bytes(d[12:16])
    if chunk == b"VP8X":  # canvas size minus one, 24 bits each
        d[24:30] = struct.pack("<I", (w - 1) & 0xFFFFFF)[:3] + \
            struct.pack("<I", (h - 1) & 0xFFFFFF)[:3]
    elif chunk == b"VP8 ":  # after the frame tag and start code: 14-bit width and height
        d[26:30] = struct.pack("<HH", w & 0x3FFF, h & 0x3FFF)
    elif chunk == b"VP8L":  # after the signature: 14 bits width-1, 14 bits height-1
        bits = int.from_bytes(d[21:25], "little")
        bits = (bits & ~0xFFFFFFF) | ((w - 1) & 0x3FFF) | (((h - 1) & 0x3FFF) << 14)
        d[21:25] = bits.to_bytes(4, "little")


def _forge_tiff(d: bytearray, w: int, h: int) -> None:
    endian = "<" if d[:2] == b"II" else ">"
    (ifd,) = struct.unpack(endian + "I", d[4:8])
    (count,) = struct.unpack(endian + "H", d[ifd:ifd + 2])
    for k in range(count):
        at = ifd + 2 + 12 * k
        tag = struct.unpack(endian + "H", d[at:at + 2])[0]
        if tag in (256, 257):  # ImageWidth, ImageLength, rewritten as LONG
            d[at + 2:at + 12] = struct.pack(endian + "HII", 4, 1,
                                            (w if tag == 256 else h) & 0xFFFFFFFF)


def _forge_bmp(d: bytearray, w: int, h: int) -> None:
    d[18:26] = struct.pack("<ii", max(-2**31, min(w, 2**31 - 1)), max(-2**31, min(h, 2**31 - 1)))


FORGERS = {"PNG": _forge_png, "JPEG": _forge_jpeg, "WEBP": _forge_webp, "TIFF": _forge_tiff,
           "BMP": _forge_bmp}


def forge(name: str, data: bytes, w: int, h: int) -> bytes:
    """`data` with its header claiming w x h pixels (unchanged for formats not forged)."""
    d = bytearray(data)
    forger = FORGERS.get(name.split("-")[0])
    if forger is not None:
        with contextlib.suppress(struct.error, IndexError, ValueError):
            forger(d, w, h)
    return bytes(d)


# Claimed sizes: bombs, extreme aspect ratios (16,000,000 x 1 is within 16 megapixels),
# just over and under the limits here, and degenerate ones.
HUGE_SIZES = [(16_000_000, 1), (1, 16_000_000), (65535, 65535), (16383, 16383),
              (2**24, 2**24), (2**31 - 1, 2**31 - 1), (MAX_SIDE + 1, 10), (400, 400)]
SIZES = st.sampled_from(HUGE_SIZES + [(0, 0), (0, 16), (24, 0), (1, 1), (300, 300)]) | \
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))


@st.composite
def mutated_images(draw):
    """(base name, bytes): a real small image, maybe forged dimensions, then 0-4 mutations."""
    name = draw(st.sampled_from(sorted(BASES)))
    data = BASES[name]
    if draw(st.booleans()):
        data = forge(name, data, *draw(SIZES))
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        n = len(data)
        # Headers are where parsers decide how much to allocate: aim there half the time,
        # mostly past the signature (a broken signature is just "not an image").
        at = draw(st.integers(min(12, n - 1), min(n - 1, 128)) | st.integers(0, n - 1))
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80]) | st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return name, bytes(data)


# --- watching PIL's allocations -------------------------------------------------------


@contextlib.contextmanager
def pil_allocations():
    """Records the (width, height) of every image PIL allocates (decoded images included:
    `ImageFile.load` allocates through `core.new`), as a list of pixel counts."""
    core, sizes = Image.core, []
    new, fill = core.new, core.fill

    def new_(mode, size, *args):
        sizes.append(size[0] * size[1])
        return new(mode, size, *args)

    def fill_(mode, size, *args):
        sizes.append(size[0] * size[1])
        return fill(mode, size, *args)

    core.new, core.fill = new_, fill_
    try:
        yield sizes
    finally:
        core.new, core.fill = new, fill


@contextlib.contextmanager
def pil_pixel_limit(limit: int):
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


# --- the server's upload decoding -----------------------------------------------------


def decode_upload(data: bytes):
    """ColorizeService.decode's outcome: a Photo or the status; asserts the bounds."""
    with pil_allocations() as sizes:
        try:
            photo = SERVICE.decode(data)
        except RequestError as e:
            assert e.status in (400, 413, 415), (e.status, e.message)
            outcome = e.status
        else:
            w, h = photo.size
            assert 0 < w * h <= MAX_PIXELS
            assert max(w, h) <= MAX_SIDE
            assert photo.l.dtype == np.float32
            assert np.isfinite(photo.l).all()
            assert photo.l.min() >= 0
            assert photo.l.max() <= 100.001
            outcome = photo
    assert max(sizes, default=0) <= MAX_PIXELS, f"PIL allocated {max(sizes):,} pixels"
    return outcome


@FUZZ
@given(mutated_images())
def test_upload_decoding_of_mutated_images(case):
    outcome = decode_upload(case[1])
    # The mix of outcomes: pytest --hypothesis-show-statistics.
    event(f"status {outcome}" if isinstance(outcome, int) else "decoded")


def test_upload_decoding_of_the_real_images():
    for name, data in BASES.items():
        photo = decode_upload(data)
        assert not isinstance(photo, int), name
        assert photo.size == (24, 16), name


@pytest.mark.parametrize("size", HUGE_SIZES[:6], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(n for n in BASES if n.split("-")[0] in FORGERS))
def test_forged_huge_dimensions_are_refused_from_the_header(name, size):
    data = forge(name, BASES[name], *size)
    assert data != BASES[name] or name.startswith("WEBP")  # VP8 dimensions are 14 bits
    outcome = decode_upload(data)
    assert outcome in (400, 413, 415), (name, size, outcome)


# --- prepare's image check ------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_file(scratch, name: str, data: bytes) -> Checked:
    path = scratch / ("x." + name.split("-")[0].lower())
    path.write_bytes(data)
    with pil_pixel_limit(PIL_LIMIT), pil_allocations() as sizes:
        checked = check_image(str(path), min_size=4, gray_threshold=2.0, want_bytes=True)
    assert isinstance(checked, Checked)
    assert checked.reason is None or checked.reason in REASONS, checked
    # PIL's bomb guard (2x MAX_IMAGE_PIXELS) fires on the header, before decoding.
    assert max(sizes, default=0) <= 2 * PIL_LIMIT, f"PIL allocated {max(sizes):,} pixels"
    if checked.reason is None:  # what prepare stores is a readable 8-bit RGB image
        with Image.open(io.BytesIO(checked.data)) as im:
            im.load()
            assert im.mode == "RGB"
            assert im.size == checked.size
    return checked


@pytest.mark.slow
@FUZZ
@given(case=mutated_images())
def test_prepare_check_of_mutated_images(scratch, case):
    event(f"reason {check_file(scratch, *case).reason}")


@pytest.mark.parametrize("size", HUGE_SIZES[2:6], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", sorted(n for n in BASES if n.split("-")[0] in FORGERS))
def test_prepare_check_of_forged_huge_dimensions(scratch, name, size):
    checked = check_file(scratch, name, forge(name, BASES[name], *size))
    assert checked.reason in ("too_large", "not_an_image", "corrupt"), (name, size, checked)


def test_fuzzing_peak_memory_stays_small(scratch):
    """A last, direct look at the process: the cases above grew its peak RSS by little."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc")
    before = _peak_rss_mb()
    for name, data in BASES.items():
        for size in HUGE_SIZES:
            forged = forge(name, data, *size)
            decode_upload(forged)
            check_file(scratch, name, forged)
    assert _peak_rss_mb() - before < 100
