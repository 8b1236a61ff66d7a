"""Helpers behind the sensor adapters: label text, CORINE mapping, CRS conversion, band statistics."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from rsvl.data.band_stats import BandStats
from rsvl.data.boxes import box_problem, make_box
from rsvl.data.geo import to_lonlat
from rsvl.data.labels import (
    CORINE19_CLASSES,
    CORINE19_ROWS,
    CORINE19_TO_DYNAMIC_WORLD,
    CRISIS_CLASSES,
    DYNAMIC_WORLD_CLASSES,
    corine19_to_dynamic_world,
    labels_to_text,
    parse_corine19_table,
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


BIGEARTHNET_19 = (  # BigEarthNet v2's 19 classes, in its order (Sumbul et al., IGARSS 2019; torchgeo's class list)
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
    "Inland waters", "Marine waters",
)


def _table_rows(repo_root) -> list[dict]:
    path = repo_root / "src/rsvl/data/tables/corine19_to_crisis.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_corine19_table_has_each_bigearthnet_class_once_with_a_crisis_target(repo_root):
    rows = _table_rows(repo_root)
    assert list(rows[0]) == ["corine19_class", "crisis_class", "level3_members", "note"]
    assert [row["corine19_class"] for row in rows] == list(BIGEARTHNET_19)
    assert all(row["crisis_class"] in CRISIS_CLASSES for row in rows)
    assert CORINE19_TO_DYNAMIC_WORLD == {row["corine19_class"]: row["crisis_class"] for row in rows}
    assert CORINE19_CLASSES == BIGEARTHNET_19
    known = {"Broad-leaved forest": "trees", "Coniferous forest": "trees", "Mixed forest": "trees",
             "Inland waters": "water", "Marine waters": "water", "Urban fabric": "built",
             "Inland wetlands": "flooded vegetation", "Pastures": "grass", "Beaches, dunes, sands": "bare"}
    assert {name: CORINE19_TO_DYNAMIC_WORLD[name] for name in known} == known


def test_corine19_targets_follow_the_majority_of_their_level3_members(repo_root):
    """Each target is the class most members get, a tie going to the lowest CORINE code (re-derived here)."""
    parsed = []
    for row in _table_rows(repo_root):
        members = []
        for part in row["level3_members"].split("; "):
            head, target = part.rsplit(": ", 1)
            code, name = head.split(" ", 1)
            members.append((int(code), name, target))
        parsed += members
        votes = {target: sum(t == target for _, _, t in members) for _, _, target in members}
        best = max(votes.values())
        expected = min((code, target) for code, _, target in members if votes[target] == best)[1]
        assert row["crisis_class"] == expected, row
    # BigEarthNet's 43-to-19 conversion keeps 32 level-3 classes, each in one CORINE-19 class
    codes = [code for code, _, _ in parsed]
    assert len(codes) == len(set(codes)) == 32 and {332, 334, 335, 423}.isdisjoint(codes)
    assert [tuple(member) for row in CORINE19_ROWS for member in row.level3_members] == parsed


def test_corine19_table_errors_name_file_row_and_rule():
    header = "corine19_class,crisis_class,level3_members,note\n"
    with pytest.raises(DataError, match=r"t.csv: missing columns \['note'\]"):
        parse_corine19_table("corine19_class,crisis_class,level3_members\n", "t.csv")
    with pytest.raises(DataError, match=r"t.csv:3: 'lava' is not a CrisisLandMark class"):
        parse_corine19_table(header + "Pastures,grass,231 Pastures: grass,\nMixed forest,lava,313 Mixed forest: trees,\n",
                             "t.csv")
    with pytest.raises(DataError, match=r"t.csv:3: CORINE-19 class 'Pastures' is listed twice"):
        parse_corine19_table(header + "Pastures,grass,231 Pastures: grass,\nPastures,grass,231 Pastures: grass,\n",
                             "t.csv")
    with pytest.raises(DataError, match=r"t.csv:2: level3_members entry 'Pastures' is not"):
        parse_corine19_table(header + "Pastures,grass,Pastures,\n", "t.csv")
    with pytest.raises(DataError, match=r"t.csv:2: empty crisis_class"):
        parse_corine19_table(header + "Pastures,,231 Pastures: grass,\n", "t.csv")


def test_package_data_ships_the_corine19_table(repo_root):
    import fnmatch
    import tomllib

    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rsvl"]
    assert any(fnmatch.fnmatch("data/tables/corine19_to_crisis.csv", pattern) for pattern in patterns)


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
