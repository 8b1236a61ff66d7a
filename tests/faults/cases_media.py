"""Corpus cases of broken media: images, band arrays, tables and shards, archives.

Each builder writes a small source (good rows around the broken one) and returns the commands a
user runs on it; see ``corpus_case.py`` for the contract.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from corpus_case import KEPT, QUARANTINE, Case, Expect
from PIL import Image


def _scene(value: int, size: int = 32) -> Image.Image:
    """A small RGB test scene of one shade with a bright square (distinct per ``value``)."""
    pixels = np.full((size, size, 3), value, dtype=np.uint8)
    pixels[size // 4: size // 2, size // 4: size // 2] = 255 - value
    return Image.fromarray(pixels)


def _png_bytes(image: Image.Image) -> bytes:
    """The PNG encoding of ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
    Case("image-truncated-png", "images", "a PNG cut after 60 of its 127 bytes (IDAT incomplete) among good scenes",
         lambda case: class_folder(case, "cut.png", lambda path: path.write_bytes(_png_bytes(_scene(90))[:60])),
         Expect(QUARANTINE, stage="validate", rule="image_decodes", rows_in=5, kept=4, quarantined=1)),
    Case("image-wrong-magic-text", "images", "a text file named `.png` (no PNG signature) among good scenes",
         lambda case: class_folder(case, "note.png", lambda path: path.write_text("not an image\n")),
         Expect(QUARANTINE, stage="validate", rule="image_decodes", rows_in=5, kept=4, quarantined=1)),
    Case("image-palette-png", "images", "a palette (mode P) PNG among RGB scenes: valid, converted on the way in",
         lambda case: class_folder(case, "palette.png", lambda path: _scene(70).convert("P").save(path)),
         Expect(KEPT, rows_in=5, kept=5)),
    Case("image-16bit-grey-png", "images",
         "a 16-bit greyscale PNG (values to 61,380) among 8-bit scenes: refused, not silently rescaled",
         lambda case: class_folder(case, "grey16.png", lambda path: Image.fromarray(
             np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(path)),
         Expect(QUARANTINE, stage="validate", rule="image_max",
                rows_in=5, kept=4, quarantined=1)),
]
