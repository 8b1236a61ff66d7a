"""Corpus cases of broken media: images, band arrays, tables and shards, archives.

Each builder writes a small source (good rows around the broken one) and returns the commands a
user runs on it; see ``corpus_case.py`` for the contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from corpus_case import KEPT, QUARANTINE, Case, Expect
from PIL import Image


def _scene(value: int, size: int = 32) -> Image.Image:
    """A small RGB test scene of one shade with a bright square (distinct per ``value``)."""
    pixels = np.full((size, size, 3), value, dtype=np.uint8)
    pixels[size // 4: size // 2, size // 4: size // 2] = 255 - value
    return Image.fromarray(pixels)


def class_folder(case: Path, broken: str, write_broken) -> list[list[str]]:
    """A class-folder source of four good scenes in two classes plus ``broken`` (written by ``write_broken``).

    Returns:
        ``rsvl data ingest`` then ``rsvl data validate`` of the result.
    """
    source = case / "source"
    for index, label in enumerate(("forest", "forest", "river", "river")):
        (source / label).mkdir(parents=True, exist_ok=True)
        _scene(40 * index + 20).save(source / label / f"{label}_{index}.png")
    write_broken(source / "forest" / broken)
    return [["rsvl", "data", "ingest", "--format", "class-folder", "--source", "source", "--out", "out"],
            ["rsvl", "data", "validate", "out", "--max-bad-fraction", "0.5"]]


CASES: list[Case] = [
    Case("image-zero-byte", "images", "a zero-byte `.png` among good scenes",
         lambda case: class_folder(case, "empty.png", lambda path: path.write_bytes(b"")),
         Expect(QUARANTINE, stage="validate", rule="image_decodes", rows_in=5, kept=4, quarantined=1)),
]


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width``×``height`` RGB pixels but whose data is a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def _image_case(kind: str, what: str, name: str, data, rule: str, outcome: str = QUARANTINE) -> Case:
    """A class-folder case whose fifth image is ``data`` (bytes, or a function of nothing returning bytes)."""
    def write(path: Path) -> None:
        path.write_bytes(data() if callable(data) else data)

    counts = dict(rows_in=5, kept=4, quarantined=1) if outcome == QUARANTINE else dict(rows_in=5, kept=5)
    return Case(kind, "images", what, lambda case: class_folder(case, name, write),
                Expect(outcome, stage="validate" if outcome == QUARANTINE else None, rule=rule, **counts))


CASES += [
    _image_case("image-truncated-png", "a PNG cut to half its bytes", "cut.png",
                lambda: _png_bytes(_scene(90))[: len(_png_bytes(_scene(90))) // 2], "image_decodes"),
    _image_case("image-truncated-jpeg", "a JPEG cut to half its bytes", "cut.jpg",
                lambda: _jpeg_bytes(_scene(90))[: len(_jpeg_bytes(_scene(90))) // 2], "image_decodes"),
    _image_case("image-wrong-magic", "a text file named `.png` (no PNG signature)", "text.png",
                b"this is not an image\n" * 8, "image_decodes"),
    _image_case("image-jpeg-named-png", "JPEG bytes in a file named `.png`: valid, decoded by its content",
                "photo.png", lambda: _jpeg_bytes(_scene(70)), None, outcome=KEPT),
    _image_case("image-16-bit", "a 16-bit greyscale PNG (`I;16`)", "deep.png",
                lambda: _png_bytes(Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16))), "image_max"),
    _image_case("image-cmyk", "a CMYK JPEG: valid, decoded to RGB (ink is not intensity)", "print.jpg",
                lambda: _jpeg_bytes(_scene(60).convert("CMYK")), None, outcome=KEPT),
    _image_case("image-palette", "a palette PNG (mode `P`): valid, decoded to RGB (indices are not intensity)",
                "palette.png", lambda: _png_bytes(_scene(50).convert("P")), None, outcome=KEPT),
    _image_case("image-1x1", "a 1×1 image", "dot.png", lambda: _png_bytes(Image.new("RGB", (1, 1), (9, 9, 9))),
                "image_min_side"),
    _image_case("image-decompression-bomb", "a PNG whose header declares 50,000×50,000 pixels (7.5 GB decoded)",
                "bomb.png", lambda: _declared_png(50_000, 50_000), "image_decodes"),
]
