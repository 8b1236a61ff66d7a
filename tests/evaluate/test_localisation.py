"""Semantic localisation (AIR-SLT): sliding-window heat maps, Rsu/Ras/Rda/Rmi, generated scenes, the report.

Metric references are computed by hand from the formulas of Yuan et al. 2022 (written out again
here, not imported); heat maps are checked against a brute-force per-pixel average with a test
model whose crop score is a known function of the crop (the mean of one channel) and the text.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from rsvl.data.synthetic import optical_scenes
from rsvl.data.synthetic.localisation_scenes import (
    REGION_GAP,
    TARGET_QUERIES,
    draw_localisation_scene,
    localisation_scenes,
)
from rsvl.errors import DataError
from rsvl.evaluate.localisation import (
    average_scores,
    crop_windows,
    heat_map,
    localisation_report,
    normalise_and_blur,
    resolved_sizes,
    window_starts,
)
from rsvl.evaluate.localisation_metrics import (
    SeLoConstants,
    attention_centres,
    attention_shift,
    discrete_attention,
    localisation_metrics,
    mask_regions,
    mean_indicator,
    significant_area,
    to_pixels,
)

# no smoothing and a small peak window: attention centres that can be worked out by hand
PLAIN = SeLoConstants(smooth_size=1, peak_window=3)
E3 = math.exp(3.0) - 1.0


def square_mask(shape, top, left, side):
    mask = np.zeros(shape, dtype=bool)
    mask[top:top + side, left:left + side] = True
    return mask


def outline_radius(side, expand=1.5):
    """1.5 × the mean distance from a side×side square's centre to its border pixels, enumerated."""
    centre = (side - 1) / 2
    border = [(r, c) for r in range(side) for c in range(side) if r in (0, side - 1) or c in (0, side - 1)]
    return expand * sum(math.hypot(r - centre, c - centre) for r, c in border) / len(border)


def ras_of(ratio):
    return (math.exp(3.0 * ratio) - 1.0) / E3


# ---------------------------------------------------------------- sizes


def test_sizes_in_pixels_or_fractions_of_the_shorter_side():
    assert to_pixels(7, 384) == 7
    assert to_pixels(0.25, 384) == 96
    assert to_pixels(256 / 3000, 384) == 33  # 32.77
    assert to_pixels(6, 100, odd=True) == 7 and to_pixels(0.059, 100, odd=True) == 5
    assert to_pixels(0.01, 50, odd=True) == 1
    assert to_pixels(np.int64(12), 100) == 12 and to_pixels(np.float32(0.5), 100) == 50
    # the paper's steps and median kernel, over a 3000 px AIR-SLT image, on a 384 x 500 scene
    assert resolved_sizes((384, 500, 3)) == ([33, 66, 98], 33)
    for bad in (0, -2, 1.5, 0.0, True, "3"):
        with pytest.raises(DataError, match="crop step"):
            resolved_sizes((10, 10), steps=(bad,))


# ---------------------------------------------------------------- Rsu


def test_rsu_against_hand_computation():
    heat = np.full((4, 4), 0.25)
    heat[0, :2] = 1.0
    heat[1, :2] = 0.5
    mask = square_mask((4, 4), 0, 0, 2)
    # inside 1 + 1 + .5 + .5 = 3, outside 12 × .25 = 3, (16 − 4) / 4 = 3
    assert significant_area(heat, mask) == pytest.approx(1 - math.exp(-0.707 * 3 / (3 + 1e-7) * 3), rel=1e-12)


def test_rsu_extremes_perfect_uniform_and_empty_maps():
    mask = square_mask((20, 20), 5, 5, 4)
    assert significant_area(mask.astype(float), mask) == 1.0
    assert significant_area(np.full((20, 20), 0.6), mask) == pytest.approx(1 - math.exp(-0.707), rel=1e-6)
    assert significant_area(np.zeros((20, 20)), mask) == 0.0
    # attention only off the target
    assert significant_area((~mask).astype(float), mask) == 0.0


# ---------------------------------------------------------------- regions and attention centres


def test_mask_regions_centroid_and_outline_radius():
    mask = square_mask((21, 21), 8, 8, 5)
    mask[0, 20] = True  # a one-pixel region: radius 1.5 × 0.5
    regions = mask_regions(mask)
    assert [(r.x, r.y) for r in regions] == [(20.0, 0.0), (10.0, 10.0)]
    assert regions[0].radius == pytest.approx(0.75)
    # 5×5 outline: 4 edge midpoints at 2, 8 pixels at √5, 4 corners at √8
    assert regions[1].radius == pytest.approx(1.5 * (4 * 2 + 8 * math.sqrt(5) + 4 * math.sqrt(8)) / 16)
    assert regions[1].radius == pytest.approx(outline_radius(5))
    # diagonal neighbours are one region (8-connectivity)
    diagonal = np.zeros((6, 6), dtype=bool)
    diagonal[1, 1] = diagonal[2, 2] = True
    assert len(mask_regions(diagonal)) == 1


def test_attention_centres_plateaus_peaks_and_threshold():
    heat = np.zeros((15, 15))
    heat[2:5, 2:7] = 1.0  # a plateau: one centre at its centroid
    heat[11, 3] = 0.8  # an isolated peak
    heat[10, 12] = 0.4  # below peak_min 0.5: dropped
    centres = attention_centres(heat, PLAIN)
    assert centres.tolist() == [[4.0, 3.0], [3.0, 11.0]]


def test_attention_centres_after_box_smoothing():
    heat = np.zeros((15, 15))
    heat[5, 7] = 1.0
    # 3×3 box, one pass: a 3×3 block of round(255 / 9) = 28 around the pixel, centroid on it
    smoothed = SeLoConstants(smooth_size=3, smooth_passes=1, peak_window=5)
    assert attention_centres(heat, smoothed).tolist() == [[7.0, 5.0]]
    # a window that holds both peaks keeps only the brighter one
    heat[5, 9] = 0.9
    assert attention_centres(heat, SeLoConstants(smooth_size=1, peak_window=5)).tolist() == [[7.0, 5.0]]
    assert attention_centres(heat, PLAIN).tolist() == [[7.0, 5.0], [9.0, 5.0]]


def test_attention_centres_read_the_map_as_8_bits():
    heat = np.zeros((11, 11))
    heat[5, 5], heat[5, 6] = 0.9990, 0.9995  # both floor(255 · h) = 254: one plateau of two pixels
    assert attention_centres(heat, PLAIN).tolist() == [[5.5, 5.0]]
    heat[5, 6] = 1.0  # 255 beats 254
    assert attention_centres(heat, PLAIN).tolist() == [[6.0, 5.0]]


# ---------------------------------------------------------------- Ras and Rda


def test_ras_perfect_shifted_and_missed():
    mask = square_mask((21, 21), 8, 8, 5)
    radius = outline_radius(5)
    assert attention_shift(mask.astype(float), mask, PLAIN) == 0.0
    by_one = np.roll(mask, 1, axis=1).astype(float)
    by_two = np.roll(mask, 2, axis=1).astype(float)
    assert attention_shift(by_one, mask, PLAIN) == pytest.approx(ras_of(1 / radius))
    assert attention_shift(by_two, mask, PLAIN) == pytest.approx(ras_of(2 / radius))
    assert attention_shift(by_two, mask, PLAIN) > attention_shift(by_one, mask, PLAIN)
    # the attention centre lies outside the radius (5 > 3.4): the offset counts as the radius
    assert attention_shift(np.roll(mask, 5, axis=0).astype(float), mask, PLAIN) == pytest.approx(1.0)
    # no centre at all (heat under 0.5 everywhere)
    assert attention_shift(np.full((21, 21), 0.3), mask, PLAIN) == pytest.approx(1.0)


def test_ras_averages_over_regions():
    mask = square_mask((30, 30), 2, 2, 5) | square_mask((30, 30), 20, 20, 5)
    heat = square_mask((30, 30), 2, 2, 5).astype(float)  # the second region gets no attention
    assert attention_shift(heat, mask, PLAIN) == pytest.approx(ras_of((0 + 1) / 2))


def test_rda_counts_and_spreads_centres_per_region():
    mask = square_mask((21, 21), 6, 6, 9)  # centre (10, 10)
    radius = outline_radius(9)
    heat = np.zeros((21, 21))
    assert discrete_attention(heat, mask, PLAIN) == 0.0
    heat[10, 10] = 1.0
    assert discrete_attention(heat, mask, PLAIN) == 1.0
    heat[:] = 0
    heat[10, 8] = heat[10, 12] = 1.0  # two centres 2 px from their mean
    assert discrete_attention(heat, mask, PLAIN) == pytest.approx(0.5 * (1 - 2 / radius) + math.exp(-0.5 * 4))
    heat[10, 10] = 1.0  # three: distances 2, 0, 2 from the mean
    assert discrete_attention(heat, mask, PLAIN) == pytest.approx(0.5 * (1 - (4 / 3) / radius) + math.exp(-0.5 * 5))
    # a centre outside the radius does not count
    heat[:] = 0
    heat[10, 10] = heat[0, 20] = 1.0
    assert discrete_attention(heat, mask, PLAIN) == 1.0


def test_rmi_weights():
    assert mean_indicator(0.8, 0.2, 0.6) == pytest.approx(0.4 * 0.8 + 0.35 * 0.8 + 0.25 * 0.6)


def test_all_metrics_with_the_default_constants_on_a_scene_sized_map():
    mask = square_mask((384, 384), 40, 60, 96)  # centre (107.5, 87.5), far from the map centre
    radius = outline_radius(96)
    perfect = localisation_metrics(mask.astype(float), mask)
    assert perfect == {"Rsu": 1.0, "Ras": 0.0, "Rda": 1.0, "Rmi": 1.0}
    shifted = localisation_metrics(np.roll(mask, 10, axis=1).astype(float), mask)
    # the smoothed shifted square is symmetric about (117.5, 87.5): one centre 10 px off
    assert shifted["Ras"] == pytest.approx(ras_of(10 / radius))
    assert shifted["Rda"] == 1.0
    further = localisation_metrics(np.roll(mask, 30, axis=1).astype(float), mask)
    assert further["Ras"] == pytest.approx(ras_of(30 / radius)) and further["Ras"] > shifted["Ras"]
    uniform = localisation_metrics(np.full((384, 384), 0.7), mask)
    # one plateau, its centre the map centre (191.5, 191.5): 134 px from the region, beyond its radius
    assert math.hypot(191.5 - 107.5, 191.5 - 87.5) > radius
    want_rsu = 1 - math.exp(-0.707)
    assert uniform["Rsu"] == pytest.approx(want_rsu, rel=1e-6)
    assert (uniform["Ras"], uniform["Rda"]) == (pytest.approx(1.0), 0.0)
    assert uniform["Rmi"] == pytest.approx(0.4 * want_rsu, rel=1e-6)


@pytest.mark.parametrize("heat, mask, message", [
    (np.zeros((4, 4)), np.zeros((4, 5), dtype=bool), "mask shape"),
    (np.zeros((4, 4)), np.zeros((4, 4), dtype=bool), "empty"),
    (np.zeros((4, 4)), np.ones((4, 4), dtype=bool), "whole image"),
    (np.full((4, 4), 1.5), square_mask((4, 4), 0, 0, 2), r"\[0, 1\]"),
    (np.zeros((4, 4, 1)), square_mask((4, 4), 0, 0, 2), "must be \\(H, W\\)"),
])
def test_bad_maps_and_masks_are_named(heat, mask, message):
    with pytest.raises(DataError, match=f"tile 7: .*{message}"):
        localisation_metrics(heat, mask, name="tile 7")


# ---------------------------------------------------------------- heat maps


def test_window_starts_by_hand():
    assert window_starts(8, 4) == [0, 2, 4]
    assert window_starts(10, 4) == [0, 2, 4, 6]
    assert window_starts(9, 3) == [0, 2, 3, 5, 6]  # grids 0,3,6 and 2,5,(8→6)
    assert window_starts(5, 5) == [0]
    with pytest.raises(DataError, match="between 1 and the image side"):
        window_starts(5, 6)
    assert crop_windows(8, 4, [4]) == [(0, 0, 4), (2, 0, 4), (4, 0, 4)]
    with pytest.raises(DataError, match="larger than the 4x8 px image"):
        crop_windows(8, 4, [5])


def test_average_scores_by_hand():
    with pytest.raises(DataError, match="2 pixels .* uncovered"):
        average_scores((4, 4), [(0, 0, 3), (1, 1, 3)], [1.0, 3.0])
    averaged = average_scores((4, 4), [(0, 0, 3), (1, 1, 3), (0, 1, 3), (1, 0, 3)], [1.0, 3.0, 5.0, 7.0])
    want = np.array([[1, 3, 3, 5], [4, 4, 4, 4], [4, 4, 4, 4], [7, 5, 5, 3]], dtype=float)
    assert np.array_equal(averaged, want)


def test_normalise_and_blur():
    spike = np.zeros((5, 5))
    spike[2, 2] = 4.0
    assert np.array_equal(normalise_and_blur(spike, 1), spike / 4)
    assert np.array_equal(normalise_and_blur(spike, 3), np.zeros((5, 5)))  # a lone pixel is a median outlier
    band = np.zeros((7, 7))
    band[:, 2:5] = 2.0
    assert np.array_equal(normalise_and_blur(band - 1.0, 3), band / 2)  # a 3 px band survives a 3 px median
    assert np.array_equal(normalise_and_blur(np.full((3, 3), 0.4), 3), np.zeros((3, 3)))


ANGLES = {"bright": 0.0, "dark": math.pi / 2}


class ChannelModel(nn.Module):
    """Crop embedding (cos θ, sin θ)·3 with θ = π/2 · mean(channel)/255; text (cos φ, sin φ)·2.

    So a crop's cosine score with a text is cos(θ − φ).
    """

    def __init__(self, channel: int = 0) -> None:
        super().__init__()
        self.channel = channel

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        theta = images[:, self.channel].double().mean(dim=(1, 2)) / 255 * (math.pi / 2)
        return 3 * torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        phi = tokens[:, 0].double()
        return 2 * torch.stack([torch.cos(phi), torch.sin(phi)], dim=-1)


def tokenize(texts):
    return torch.tensor([[ANGLES[text]] for text in texts], dtype=torch.float64)


def identity(crop):
    return crop


def ramp_image(height=24, width=20, seed=3):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 50, height)[:, None, None]
    return np.clip(ramp + rng.integers(0, 40, size=(height, width, 3)), 0, 255).astype(np.uint8)


def brute_force_heat(image, steps, channel, phi):
    """Per pixel, the mean of cos(θ − φ) over every crop covering it, then min–max normalised.

    Crops of side s start along an axis of length L at min(k·s, L − s) and at
    min(s − ⌊s/2⌋ + k·s, L − s) for k = 0, 1, ... while the unclamped start is < L.
    """
    height, width = image.shape[:2]

    def starts(length, s):
        found = set()
        for first in (0, s - s // 2):
            k = 0
            while first + k * s < length:
                found.add(min(first + k * s, length - s))
                k += 1
        return found

    crops = []
    for s in steps:
        for top in starts(height, s):
            for left in starts(width, s):
                theta = image[top:top + s, left:left + s, channel].astype(np.float64).mean() / 255 * math.pi / 2
                crops.append((top, left, s, math.cos(theta - phi)))
    raw = np.zeros((height, width))
    for row in range(height):
        for col in range(width):
            covering = [score for top, left, s, score in crops
                        if top <= row < top + s and left <= col < left + s]
            raw[row, col] = sum(covering) / len(covering)
    return (raw - raw.min()) / (raw.max() - raw.min())


@pytest.mark.parametrize("text, channel, preprocess", [
    ("bright", 0, identity),
    ("dark", 0, identity),
    # a preprocessing that reverses the bands: the model's channel 0 then reads the image's channel 2
    ("bright", 2, lambda crop: crop.flip(0)),
])
def test_heat_map_equals_a_brute_force_average(text, channel, preprocess):
    image = ramp_image()
    got = heat_map(ChannelModel(0), preprocess, tokenize, image, text, steps=(8, 12), median=1, batch_size=5)
    want = brute_force_heat(image, (8, 12), channel, ANGLES[text])
    assert got.shape == (24, 20)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_heat_map_steps_as_fractions_batches_and_median():
    image = ramp_image()
    model = ChannelModel(1)
    # fractions of the shorter side (20 px): 0.4 → 8 px, 0.6 → 12 px; a 0.15 median → 3 px
    by_fraction = heat_map(model, identity, tokenize, image, "bright", steps=(0.4, 0.6), median=0.15)
    by_pixels = heat_map(model, identity, tokenize, image, "bright", steps=(8, 12), median=3, batch_size=1)
    assert np.array_equal(by_fraction, by_pixels)
    unblurred = brute_force_heat(image, (8, 12), 1, 0.0)
    np.testing.assert_allclose(by_pixels, ndimage.median_filter(unblurred, size=3, mode="nearest"), atol=1e-9)


def test_heat_map_is_deterministic():
    image = ramp_image()
    first = heat_map(ChannelModel(0), identity, tokenize, image, "dark", steps=(8, 12), median=3)
    assert np.array_equal(first, heat_map(ChannelModel(0), identity, tokenize, image, "dark", steps=(8, 12), median=3))


# ---------------------------------------------------------------- scenes


def test_scene_background_is_the_drawers_mosaic_outside_the_mask():
    seed, size = 11, 288
    scene = draw_localisation_scene(np.random.default_rng(seed), "lake", background="farmland", regions=2, size=size)
    # rebuild the background independently: the first draws are 3×3 farmland tiles, row by row
    rng = np.random.default_rng(seed)
    tiles = [[optical_scenes.DRAWERS["farmland"](rng)[0] for _ in range(3)] for _ in range(3)]
    background = np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)
    assert scene.image.shape == (size, size, 3) and scene.image.dtype == np.uint8
    assert np.array_equal(scene.image[~scene.mask], background[~scene.mask])
    assert (scene.image[scene.mask] != background[scene.mask]).any(axis=-1).mean() > 0.9
    # each lake is an ellipse inside its box, the corners of the box stay background
    for x0, y0, x1, y1 in scene.boxes:
        assert (x1 - x0, y1 - y0) == (96, 96)
        assert scene.mask[y0:y1, x0:x1].mean() < 0.8 and not scene.mask[y0, x0]
    outside = np.ones_like(scene.mask)
    for x0, y0, x1, y1 in scene.boxes:
        outside[y0:y1, x0:x1] = False
    assert not scene.mask[outside].any()
    assert scene.query == "a lake" and scene.target == "lake" and scene.background == "farmland"


def test_scenes_cycle_targets_and_region_counts_with_separate_regions():
    scenes = localisation_scenes(12, seed=0)
    assert [s.target for s in scenes] == list(TARGET_QUERIES) * 2
    assert [len(s.boxes) for s in scenes] == [1] * 6 + [2] * 6
    for scene in scenes:
        assert scene.query == TARGET_QUERIES[scene.target] and scene.background != scene.target
        assert len(mask_regions(scene.mask)) == len(scene.boxes)
        if scene.target != "lake":  # rectangular patches: the mask is exactly the boxes
            assert scene.mask.sum() == sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in scene.boxes)
        if len(scene.boxes) == 2:
            (a0, b0, a1, b1), (c0, d0, c1, d1) = scene.boxes
            assert max(c0 - a1, a0 - c1, d0 - b1, b0 - d1) >= REGION_GAP
    assert scenes[7].boxes[0][2] - scenes[7].boxes[0][0] == 128  # the harbour is one 128 px layout


def test_scenes_are_reproducible_and_seeded():
    first, again, other = (localisation_scenes(3, seed=s, size=192) for s in (5, 5, 6))
    for a, b in zip(first, again):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.boxes == b.boxes
    assert not np.array_equal(first[0].image, other[0].image)
    # scene i does not depend on how many scenes are drawn
    assert np.array_equal(localisation_scenes(1, seed=5, size=192)[0].image, first[0].image)


def test_scene_errors_name_the_rule():
    with pytest.raises(ValueError, match="unknown localisation target 'airport'"):
        localisation_scenes(1, targets=("airport",))
    with pytest.raises(ValueError, match="distinct background"):
        draw_localisation_scene(np.random.default_rng(0), "forest", background="forest")
    with pytest.raises(ValueError, match="could not place 2 targets"):
        draw_localisation_scene(np.random.default_rng(0), "harbour", regions=3, size=200)


# ---------------------------------------------------------------- the report


class Case:
    def __init__(self, name, image, mask, query):
        self.name, self.image, self.mask, self.query = name, image, mask, query


def test_report_scores_each_scene_and_draws_its_heat_map(tmp_path):
    image = ramp_image(32, 32)
    cases = [Case("ramp/1", image, square_mask((32, 32), 20, 20, 8), "bright"),
             Case("ramp 2", image, square_mask((32, 32), 2, 2, 6), "dark")]
    constants = SeLoConstants(smooth_size=1, peak_window=5)
    report = localisation_report(ChannelModel(0), identity, tokenize, cases, steps=(8, 16), median=3,
                                 constants=constants, batch_size=7, out_dir=tmp_path)
    assert [row["name"] for row in report["scenes"]] == ["ramp/1", "ramp 2"]
    for case, row in zip(cases, report["scenes"]):
        heat = heat_map(ChannelModel(0), identity, tokenize, case.image, case.query, (8, 16), 3)
        want = localisation_metrics(heat, case.mask, constants)
        assert {key: row[key] for key in want} == pytest.approx(want)
        assert (row["steps_px"], row["median_px"]) == ([8, 16], 3)
        with Image.open(row["figure"]) as picture:
            assert picture.size[0] > 300
    assert report["scenes"][0]["figure"].endswith("localisation_ramp_1.png")
    for key in ("Rsu", "Ras", "Rda", "Rmi"):
        assert report["metrics"][key] == pytest.approx((report["scenes"][0][key] + report["scenes"][1][key]) / 2)
    json.dumps(report)


def test_report_names_the_bad_scene():
    image = ramp_image(16, 16)
    with pytest.raises(DataError, match="scene 'empty': the mask is empty"):
        localisation_report(ChannelModel(0), identity, tokenize,
                            [Case("empty", image, np.zeros((16, 16), dtype=bool), "bright")], steps=(8,))
    with pytest.raises(DataError, match="scene 'small': crop step 20 px is larger"):
        localisation_report(ChannelModel(0), identity, tokenize,
                            [Case("small", image, square_mask((16, 16), 0, 0, 4), "bright")], steps=(20,))
    with pytest.raises(DataError, match="at least one scene"):
        localisation_report(ChannelModel(0), identity, tokenize, [])


def test_report_with_an_open_clip_model_on_a_generated_scene(tmp_path):
    from rsvl.models.factory import build_model

    model, _, preprocess, tokenizer = build_model("rsvl-tiny")
    model.eval()
    scene = localisation_scenes(1, seed=2, size=192)[0]
    report = localisation_report(model, preprocess, tokenizer, [scene], steps=(0.25, 0.5), median=0.05,
                                 out_dir=tmp_path)
    row = report["scenes"][0]
    assert (row["steps_px"], row["median_px"]) == ([48, 96], 9)
    heat = heat_map(model, preprocess, tokenizer, scene.image, scene.query, (48, 96), 9, batch_size=3)
    want = localisation_metrics(heat, scene.mask)
    assert {key: row[key] for key in want} == pytest.approx(want, abs=1e-6)
