"""Image modes and sizes at decode: palette/CMYK to RGB, bombs refused from the header, tiny scenes flagged."""

from __future__ import annotations


import numpy as np
import pytest
from forged_media import declared_png
from PIL import Image

from rsvl.data.media import MAX_IMAGE_PIXELS, image_header, load_raster
from rsvl.errors import DataError


def _scene() -> Image.Image:
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    pixels[..., 0], pixels[4:8, 4:8, 1] = 200, 90
    return Image.fromarray(pixels)


def test_a_palette_png_decodes_to_the_rgb_it_shows_not_its_indices(tmp_path):
    path = tmp_path / "p.png"
    _scene().convert("P").save(path)
    with Image.open(path) as image:
        shown = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    assert image_header(path) == (16, 16, 3)
    np.testing.assert_array_equal(load_raster(path), shown.astype(np.float32))


def test_a_cmyk_jpeg_decodes_to_three_rgb_bands(tmp_path):
    path = tmp_path / "c.jpg"
    _scene().convert("CMYK").save(path, quality=95)
    with Image.open(path) as image:
        assert image.mode == "CMYK"
        shown = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    assert image_header(path)[2] == 3
    np.testing.assert_array_equal(load_raster(path), shown.astype(np.float32))


@pytest.mark.parametrize("side", [50_000, 10_001])  # past Pillow's own error limit, and just past ours
def test_a_header_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(declared_png(side, side))
    for read in (image_header, load_raster):
        with pytest.raises(DataError, match=r"bomb\.png.*image_pixels"):
            read(path)
    assert side * side > MAX_IMAGE_PIXELS
