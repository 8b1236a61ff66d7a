"""Helpers behind the sensor adapters: label text, CORINE mapping, CRS conversion, band statistics."""

from __future__ import annotations

import numpy as np
import pytest

from rsvl.data.band_stats import BandStats
from rsvl.data.boxes import box_problem, make_box
from rsvl.data.geo import to_lonlat
from rsvl.data.labels import (
    CORINE19_CLASSES,
    CRISIS_CLASSES,
    DYNAMIC_WORLD_CLASSES,
    corine19_to_dynamic_world,
    labels_to_text,
    to_crisis_class,
)
from rsvl.data.splits import canonical_split
from rsvl.errors import DataError


def test_label_text_is_unique_lower_case_labels_joined_with_full_stops():
    assert labels_to_text(["Trees", "water", "trees", " ", "Water"]) == "trees. water"
    assert labels_to_text([]) == ""


def test_corine19_maps_every_class_into_dynamic_world():
    assert len(CORINE19_CLASSES) == 19
    assert {c for label in CORINE19_CLASSES for c in corine19_to_dynamic_world([label])} <= set(DYNAMIC_WORLD_CLASSES)
    assert corine19_to_dynamic_world(["Mixed forest", "Coniferous forest", "Marine waters", "Urban fabric"]) == [
        "trees", "water", "built"]
    with pytest.raises(KeyError, match="Tundra"):
        corine19_to_dynamic_world(["Tundra"])


def test_crisis_classes_accept_corine_and_own_names_case_insensitively():
    assert to_crisis_class("Inland wetlands") == "flooded vegetation"
    assert to_crisis_class("Shrub and Scrub") == "shrub and scrub"
    assert to_crisis_class("burned_area") == "burned area"
    assert to_crisis_class("lava") is None
    assert len(CRISIS_CLASSES) == 12


def test_utm_points_match_published_conversions():
    # GeographicLib GeoConvert manual: 33.3N 44.4E is 38n 444140.54 3684706.36.
    assert to_lonlat(444140.54, 3684706.36, "EPSG:32638") == pytest.approx((44.4, 33.3), abs=1e-6)
    # Palantir Foundry docs example for EPSG:32618.
    assert to_lonlat(322190.22339529654, 4306505.703879281, "epsg:32618") == pytest.approx(
        (-77.05014581, 38.88944258), abs=1e-7)
    assert to_lonlat(500000.0, 10_000_000.0, "EPSG:32733") == pytest.approx((15.0, 0.0), abs=1e-9)
    assert to_lonlat(12.5, 41.9, "EPSG:4326") == (12.5, 41.9)


def test_unsupported_or_impossible_coordinates_raise():
    with pytest.raises(DataError, match="outside WGS 84"):
        to_lonlat(200.0, 10.0, "EPSG:4326")
    with pytest.raises(DataError):
        to_lonlat(1.0, 2.0, "not a crs at all")


def test_band_stats_merged_patch_by_patch_equal_the_pooled_statistics():
    rng = np.random.default_rng(1)
    patches = [rng.normal(loc, 3.0, (3, 5, 4 + i)) for i, loc in enumerate((1e4, -20.0, 7.0))]
    stats = BandStats(["a", "b", "c"])
    for patch in patches:
        stats.add(patch)
    pooled = np.concatenate([p.reshape(3, -1) for p in patches], axis=1)
    result = stats.to_dict()
    np.testing.assert_allclose(result["mean"], pooled.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(result["std"], pooled.std(axis=1), rtol=1e-10)
    assert result["pixels"] == pooled.shape[1]
    assert BandStats(["a"]).to_dict() is None


def test_split_aliases_and_box_rule():
    assert [canonical_split(s) for s in ("validation", " Train ", "test", "holdout", None)] == [
        "val", "train", "test", None, None]
    assert box_problem(make_box(0, 0, 10, 5, "ship"), 10, 5) is None
    assert "outside" in box_problem(make_box(0, 0, 11, 5, "ship"), 10, 5)
    assert "inverted" in box_problem(make_box(4, 0, 4, 5, "ship"), 10, 5)
    assert "non-finite" in box_problem(make_box(float("nan"), 0, 4, 5, "ship"), 10, 5)
