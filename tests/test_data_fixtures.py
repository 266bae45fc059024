"""Helpers (no tests) for the test_data_* modules: generated good images and every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def colorful(seed: int, h: int = 24, w: int = 24) -> np.ndarray:
    """A distinct, strongly coloured 8-bit RGB image (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0, 1, 3)
    rgb = np.stack([x + base[0], y + base[1], (x + y) / 2 + base[2]], -1) % 1.0
    rgb = rgb * 200 + rng.uniform(0, 55, (h, w, 3))
    return rgb.astype(np.uint8)


def png16_rgb(a16: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG, written by hand: PIL cannot write one."""
    h, w, _ = a16.shape
    raw = b"".join(b"\x00" + a16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# What make_messy_folder writes, and what prepare must say about it (min_size=20).
EXPECTED_REJECTED = {"corrupt": 1, "not_an_image": 1, "grayscale": 2, "near_gray": 1, "too_small": 1}
EXPECTED_CONVERTED = {"RGBA": 1, "P": 1, "CMYK": 1, "RGB;16": 1}
NUM_GOOD = 10  # plain good files; plus the 4 converted ones are kept


def make_messy_folder(root: Path) -> Path:
    """Good images in nested folders (all five formats) and one file of each bad kind."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "trip" / "day1").mkdir(parents=True)
    (root / "trip" / "day2").mkdir(parents=True)
    fmts = ["JPEG", "PNG", "BMP", "WEBP", "TIFF"]
    exts = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
    for i in range(NUM_GOOD):
        fmt = fmts[i % len(fmts)]
        sub = root / "trip" / ("day1" if i % 2 else "day2")
        kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        Image.fromarray(colorful(i)).save(sub / f"good_{i}{exts[fmt]}", fmt, **kw)
    # Bad files.
    buf = io.BytesIO()
    Image.fromarray(colorful(100, 64, 64)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()  # cut inside the entropy-coded data, well after the headers
    (root / "truncated.jpg").write_bytes(data[: len(data) * 3 // 4])
    (root / "notes.jpg").write_text("this is not an image\n")
    Image.fromarray(colorful(101)[..., 0]).save(root / "gray_L.png")  # mode L
    gray = np.repeat(colorful(102)[..., :1], 3, -1).astype(np.int16)
    noise = np.random.default_rng(0).integers(0, 2, gray.shape)  # chroma of at most 1 level
    Image.fromarray(np.clip(gray + noise, 0, 255).astype(np.uint8)).save(root / "near_gray.png")
    Image.fromarray(colorful(103, 16, 16)).save(root / "tiny.png")  # too small for min_size=20
    i16 = (np.linspace(0, 65535, 24 * 24).reshape(24, 24)).astype(np.uint16)
    Image.fromarray(i16).save(root / "gray16.png")  # mode I;16: grayscale
    # Converted and kept.
    rgba = np.concatenate([colorful(104), np.full((24, 24, 1), 200, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(root / "trip" / "alpha.png")
    Image.fromarray(colorful(105)).convert("P", palette=Image.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(colorful(106)).convert("CMYK").save(root / "trip" / "cmyk.jpg", quality=95)
    (root / "deep.png").write_bytes(png16_rgb(colorful(107).astype(np.uint16) * 257))
    # Ignored: hidden and other extensions.
    (root / ".DS_Store").write_bytes(b"\0\0")
    (root / "readme.txt").write_text("holiday photos")
    return root


def make_plain_folder(root: Path, n: int, start: int = 0, size=(40, 32)) -> Path:
    """``n`` distinct good JPEG/PNG images in two nested folders."""
    for i in range(start, start + n):
        sub = root / ("a" if i % 2 else "b") / f"s{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(colorful(1000 + i, size[1], size[0]))
        if i % 2:
            img.save(sub / f"img_{i:03d}.png")
        else:
            img.save(sub / f"img_{i:03d}.jpg", quality=95)
    return root
