"""Previews: SAR stretched between its 2nd and 98th percentiles, Sentinel-2 as B4/B3/B2, S1 as its VV band."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rsvl.search.thumbnails import display_array, thumbnail_png


def stretched(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, 2), np.percentile(values, 98)
    return (np.clip((values - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)


def test_a_sar_chip_is_stretched_between_its_percentiles():
    rng = np.random.default_rng(0)
    chip = rng.gamma(1.0, 20.0, size=(1, 32, 32)).astype(np.float32)
    chip[0, 5, 5] = 5000.0  # one bright ship pixel must not darken the rest
    picture = display_array(chip, "image")
    assert picture.shape == (32, 32) and np.array_equal(picture, stretched(chip[0]))
    assert (picture == 255).mean() <= 0.03 and (picture == 0).mean() <= 0.03


def test_sentinel2_shows_b4_b3_b2_and_sentinel1_its_vv_band():
    rng = np.random.default_rng(1)
    s2 = rng.uniform(0, 3000, size=(12, 16, 16)).astype(np.float32)
    rgb = display_array(s2, "s2")
    assert rgb.shape == (16, 16, 3)
    for channel, band in enumerate((3, 2, 1)):
        assert np.array_equal(rgb[..., channel], stretched(s2[band]))
    s1 = rng.uniform(-25, 0, size=(2, 16, 16)).astype(np.float32)
    assert np.array_equal(display_array(s1, "s1"), stretched(s1[0]))


def test_the_png_is_at_most_the_side_asked():
    picture = Image.open(io.BytesIO(thumbnail_png(np.zeros((3, 400, 200), dtype=np.float32), "image", side=100)))
    assert picture.size == (50, 100) and picture.format == "PNG"
