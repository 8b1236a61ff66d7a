"""Adapters for SAR boxes (HRSID, tiled too), COCO, BigEarthNet S1/S2 and CrisisLandMark: real data and bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rsvl.data.adapters import ingest
from rsvl.data.adapters.class_folder import hash_split
from rsvl.data.media import load_raster
from rsvl.data.store import read_files, read_manifest, read_meta, read_quarantine, relative_to_dataset
from rsvl.data.tiling import tile_grid
from rsvl.vqa import vqa_from_dataset


def _rules(dataset: Path) -> list[str]:
    return sorted(read_quarantine(dataset)["rule"])


def _array(dataset: Path, rel: str) -> np.ndarray:
    return np.load(relative_to_dataset(dataset, rel), allow_pickle=False)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


# --- HRSID ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hrsid(shared_data, tmp_path_factory):
    source = shared_data / "hrsid_samples"
    out = tmp_path_factory.mktemp("hrsid") / "ds"
    report = ingest("hrsid-boxes", source, out)
    return source, out, report


@pytest.mark.real_data
def test_hrsid_gives_three_single_band_chips_with_140_boxes(hrsid):
    source, out, report = hrsid
    listing = json.loads((source / "ship_boxes.json").read_text())
    manifest = read_manifest(out)
    assert (report.rows, report.quarantined) == (3, 0)
    assert len(manifest) == 3
    assert sum(len(boxes) for boxes in manifest["boxes"]) == 140
    assert set(manifest["modality"]) == {"sar"} and read_meta(out)["kind"] == "detection"
    for row in manifest.to_dict("records"):
        name = f"{row['sample_id']}.png"
        expected = [(b["x_min"], b["y_min"], b["x_max"] + 1, b["y_max"] + 1, b["label"]) for b in listing[name]]
        got = [(b["x_min"], b["y_min"], b["x_max"], b["y_max"], b["label"]) for b in row["boxes"]]
        assert got == expected
        stored = load_raster(relative_to_dataset(out, row["image"]))
        original = load_raster(source / "images" / name)
        assert stored.shape == (1, 800, 800) and (row["bands"], row["width"], row["height"]) == (1, 800, 800)
        np.testing.assert_array_equal(stored[0], original[0])
        mask = relative_to_dataset(out, row["mask"])
        assert mask.read_bytes() == (source / "masks" / f"{row['sample_id']}_instance_id_RGB.png").read_bytes()
        assert row["split"] == hash_split(name)


@pytest.mark.real_data
def test_hrsid_provenance_names_the_source_chip(hrsid):
    source, out, _ = hrsid
    files = read_files(out).set_index("path")
    for row in read_manifest(out).to_dict("records"):
        assert files.loc[row["image"], "source_path"] == str(source / "images" / f"{row['sample_id']}.png")


def test_hrsid_quarantines_bad_boxes_mixed_channels_and_missing_chips(tmp_path):
    source = tmp_path / "src"
    grey = np.random.default_rng(0).integers(0, 255, (32, 40))
    _png(source / "images" / "good.png", np.stack([grey] * 3, axis=-1))
    _png(source / "images" / "colour.png", np.stack([grey, grey, 255 - grey], axis=-1))
    (source / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _png(source / "masks" / "good_instance_id_RGB.png", np.zeros((32, 40, 3)))
    box = {"x_min": 2, "y_min": 3, "x_max": 9, "y_max": 31, "area_px": 10, "label": "ship"}
    listing = {
        "good.png": [box, {**box, "x_max": 40}, {**box, "x_min": 9, "x_max": 5}, {"x_min": 1, "label": "ship"}],
        "colour.png": [box],
        "missing.png": [box],
        "broken.png": [box],
    }
    (source / "ship_boxes.json").write_text(json.dumps(listing))
    out = tmp_path / "ds"

    report = ingest("hrsid-boxes", source, out)

    manifest = read_manifest(out)
    assert list(manifest["sample_id"]) == ["good"]
    assert manifest["boxes"][0] == [{"x_min": 2.0, "y_min": 3.0, "x_max": 10.0, "y_max": 32.0, "label": "ship"}]
    assert (manifest["width"][0], manifest["height"][0]) == (40, 32)
    assert _rules(out) == ["box_bounds", "box_bounds", "box_fields", "file_exists", "image_decode",
                           "sar_single_channel"]
    quarantine = read_quarantine(out)
    assert set(quarantine.loc[quarantine["rule"] == "box_bounds", "where"]) == {
        "ship_boxes.json:good.png[1]", "ship_boxes.json:good.png[2]"}
    assert report.quarantined == 6


@pytest.mark.parametrize("fmt", ["hrsid-boxes", "hrsid-tiles"])
def test_hrsid_quarantines_unlisted_chips_and_a_second_chip_with_the_same_stem(tmp_path, fmt):
    source = tmp_path / "src"
    grey = np.stack([np.random.default_rng(2).integers(0, 255, (200, 200))] * 3, axis=-1)
    for name in ("a.png", "a.jpg", "b.png", "c.png"):
        _png(source / "images" / name, grey)
    _png(source / "masks" / "a_instance_id_RGB.png", np.zeros((200, 200, 3)))
    box = {"x_min": 2, "y_min": 3, "x_max": 9, "y_max": 31, "area_px": 10, "label": "ship"}
    (source / "ship_boxes.json").write_text(json.dumps({"a.png": [box], "a.jpg": [], "c.png": []}))
    out = tmp_path / "ds"

    report = ingest(fmt, source, out)

    ids = {"hrsid-boxes": ["a", "c"], "hrsid-tiles": ["a_r0_c0", "c_r0_c0"]}[fmt]
    assert list(read_manifest(out)["sample_id"]) == ids
    assert read_manifest(out)["boxes"][0] == []  # a.jpg (first in name order) keeps the stem
    quarantine = read_quarantine(out).set_index("where")
    assert quarantine["rule"].to_dict() == {"images/b.png": "not_listed", "ship_boxes.json:a.png": "unique_id"}
    assert quarantine.loc["images/b.png", "reason"].startswith(f"{source / 'images' / 'b.png'} has no entry in "
                                                                f"{source / 'ship_boxes.json'}")
    assert "'a' (the file stem) is already used by a.jpg" in quarantine.loc["ship_boxes.json:a.png", "reason"]
    assert report.quarantined == 2 and report.by_rule == {"not_listed": 1, "unique_id": 1}


# --- HRSID tiles ---------------------------------------------------------------------------------


def _hrsid_box(x_min: int, y_min: int, x_max: int, y_max: int) -> dict:
    """A ship_boxes.json entry for the pixel-edge box (x_min, y_min, x_max, y_max)."""
    return {"x_min": x_min, "y_min": y_min, "x_max": x_max - 1, "y_max": y_max - 1, "area_px": 1, "label": "ship"}


def test_tile_grid_keeps_whole_tiles_only():
    assert [(t.row, t.col, t.x, t.y) for t in tile_grid(800, 800, 200)][:5] == [
        (0, 0, 0, 0), (0, 1, 200, 0), (0, 2, 400, 0), (0, 3, 600, 0), (1, 0, 0, 200)]
    assert len(tile_grid(800, 800, 200)) == 16
    assert len(tile_grid(650, 420, 200)) == 6
    assert tile_grid(199, 800, 200) == []


def test_hrsid_tiles_assign_boxes_by_half_area_clip_them_and_report_what_is_left_out(tmp_path):
    source = tmp_path / "src"
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (420, 650))
    colours = rng.integers(0, 255, (420, 650, 3))
    _png(source / "images" / "sea.png", np.stack([grey] * 3, axis=-1))
    _png(source / "masks" / "sea_instance_id_RGB.png", colours)
    _png(source / "images" / "tiny.png", np.zeros((150, 150, 3)))
    _png(source / "images" / "colour.png", np.stack([grey, grey, 255 - grey], axis=-1))
    boxes = [
        _hrsid_box(10, 10, 30, 20),      # 0: inside tile r0c0
        _hrsid_box(170, 50, 220, 60),    # 1: 60% in r0c0, 40% in r0c1
        _hrsid_box(190, 250, 210, 260),  # 2: exactly half in r1c0 and in r1c1: both keep it
        _hrsid_box(190, 190, 210, 210),  # 3: a quarter in each of four tiles: lost
        _hrsid_box(100, 390, 110, 410),  # 4: half in r1c0, half in the dropped bottom margin
        _hrsid_box(300, 405, 310, 415),  # 5: all in the bottom margin: lost
        _hrsid_box(640, 10, 660, 20),    # 6: outside the chip: box_bounds, as hrsid-boxes
    ]
    (source / "ship_boxes.json").write_text(json.dumps({"sea.png": boxes, "tiny.png": [], "colour.png": []}))
    out = tmp_path / "ds"

    report = ingest("hrsid-tiles", source, out)

    manifest = read_manifest(out)
    rows = {row["sample_id"]: row for row in manifest.to_dict("records")}
    assert list(rows) == ["sea_r0_c0", "sea_r0_c1", "sea_r0_c2", "sea_r1_c0", "sea_r1_c1", "sea_r1_c2"]
    edges = {sid: [(b["x_min"], b["y_min"], b["x_max"], b["y_max"]) for b in row["boxes"]] for sid, row in rows.items()}
    assert edges == {
        "sea_r0_c0": [(10, 10, 30, 20), (170, 50, 200, 60)],
        "sea_r0_c1": [],
        "sea_r0_c2": [],
        "sea_r1_c0": [(190, 50, 200, 60), (100, 190, 110, 200)],
        "sea_r1_c1": [(0, 50, 10, 60)],
        "sea_r1_c2": [],
    }
    tiling = read_meta(out)["tiling"]
    assert tiling["left_out"] == {"sea_r0_c0": [3], "sea_r0_c1": [1, 3], "sea_r1_c0": [3], "sea_r1_c1": [3]}
    assert {key: tiling[key] for key in ("tile_px", "chips", "tiles", "tiles_without_ships", "boxes_in_chips",
                                         "boxes_in_tiles", "box_parts_left_out", "boxes_in_no_tile")} == {
        "tile_px": 200, "chips": 1, "tiles": 6, "tiles_without_ships": 3, "boxes_in_chips": 6,
        "boxes_in_tiles": 5, "box_parts_left_out": 5, "boxes_in_no_tile": 2}
    assert tiling["margins"] == {"sea.png": {"right_px": 50, "bottom_px": 20}}
    quarantine = read_quarantine(out).set_index("where")
    assert quarantine["rule"].to_dict() == {
        "ship_boxes.json:colour.png": "sar_single_channel",
        "ship_boxes.json:sea.png[6]": "box_bounds",
        "ship_boxes.json:sea.png[3]": "tile_box_lost",
        "ship_boxes.json:sea.png[5]": "tile_box_lost",
        "ship_boxes.json:tiny.png": "tile_size",
    }
    assert report.quarantined == 5 and report.by_rule["tile_box_lost"] == 2
    files = read_files(out).set_index("path")
    for sample_id, row in rows.items():
        r, c = int(sample_id[5]), int(sample_id[8])
        window = np.s_[200 * r:200 * r + 200, 200 * c:200 * c + 200]
        assert row["source"] == f"ship_boxes.json:sea.png#x={200 * c},y={200 * r},size=200"
        assert (row["split"], row["modality"], row["bands"], row["width"], row["height"]) == (
            hash_split("sea.png"), "sar", 1, 200, 200)
        np.testing.assert_array_equal(load_raster(relative_to_dataset(out, row["image"]))[0], grey[window])
        np.testing.assert_array_equal(np.moveaxis(load_raster(relative_to_dataset(out, row["mask"])), 0, -1),
                                      colours[window])
        assert files.loc[row["image"], "source_path"] == str(source / "images" / "sea.png")


@pytest.fixture(scope="module")
def hrsid_tiles(shared_data, tmp_path_factory):
    source = shared_data / "hrsid_samples"
    out = tmp_path_factory.mktemp("hrsid_tiles") / "ds"
    report = ingest("hrsid-tiles", source, out)
    return source, out, report


def _expected_tiles(listing: dict) -> dict[str, list[tuple]]:
    """Tile boxes computed straight from ship_boxes.json: at least half the area inside, clipped."""
    expected = {}
    for name, entries in listing.items():
        for r in range(4):
            for c in range(4):
                x0, y0, kept = 200 * c, 200 * r, []
                for e in entries:
                    x_min, y_min, x_max, y_max = e["x_min"], e["y_min"], e["x_max"] + 1, e["y_max"] + 1
                    w = min(x_max, x0 + 200) - max(x_min, x0)
                    h = min(y_max, y0 + 200) - max(y_min, y0)
                    if w > 0 and h > 0 and 2 * w * h >= (x_max - x_min) * (y_max - y_min):
                        kept.append((max(x_min, x0) - x0, max(y_min, y0) - y0,
                                     min(x_max, x0 + 200) - x0, min(y_max, y0 + 200) - y0))
                expected[f"{Path(name).stem}_r{r}_c{c}"] = kept
    return expected


@pytest.mark.real_data
def test_hrsid_tiles_cut_each_real_chip_into_16_tiles_with_the_half_area_boxes(hrsid_tiles):
    source, out, report = hrsid_tiles
    listing = json.loads((source / "ship_boxes.json").read_text())
    manifest = read_manifest(out)
    assert report.rows == len(manifest) == 16 * len(listing) == 48
    got = {row["sample_id"]: [(b["x_min"], b["y_min"], b["x_max"], b["y_max"]) for b in row["boxes"]]
           for row in manifest.to_dict("records")}
    assert got == _expected_tiles(listing)
    tiling = read_meta(out)["tiling"]
    assert tiling["boxes_in_tiles"] == sum(len(boxes) for boxes in got.values())
    assert tiling["boxes_in_chips"] == 140 and tiling["tiles_without_ships"] == sum(not b for b in got.values()) > 0
    lost = read_quarantine(out)
    assert set(lost["rule"]) <= {"tile_box_lost"} and len(lost) == tiling["boxes_in_no_tile"] == report.quarantined
    for row in manifest.to_dict("records")[::5]:
        chip, r, c = row["sample_id"].rsplit("_", 2)
        window = np.s_[:, 200 * int(r[1:]):200 * int(r[1:]) + 200, 200 * int(c[1:]):200 * int(c[1:]) + 200]
        np.testing.assert_array_equal(load_raster(relative_to_dataset(out, row["image"])),
                                      load_raster(source / "images" / f"{chip}.png")[window][:1])
        np.testing.assert_array_equal(load_raster(relative_to_dataset(out, row["mask"])),
                                      load_raster(source / "masks" / f"{chip}_instance_id_RGB.png")[window])


@pytest.mark.real_data
def test_hrsid_tiles_of_one_chip_share_its_split_so_train_and_test_never_share_a_chip(hrsid, hrsid_tiles):
    _, chips_out, _ = hrsid
    _, tiles_out, _ = hrsid_tiles
    chip_split = dict(zip(read_manifest(chips_out)["sample_id"], read_manifest(chips_out)["split"]))
    tiles = read_manifest(tiles_out)
    splits_of_chip: dict[str, set] = {}
    for row in tiles.to_dict("records"):
        chip = row["sample_id"].rsplit("_", 2)[0]
        assert row["source"].startswith(f"ship_boxes.json:{chip}.png#x=")
        splits_of_chip.setdefault(chip, set()).add(row["split"])
    assert splits_of_chip == {chip: {split} for chip, split in chip_split.items()}
    assert read_meta(tiles_out)["counts"]["splits"] == {"train": 32, "test": 16}


@pytest.mark.real_data
def test_hrsid_tiles_give_vqa_questions_on_train_and_test_with_counts_from_the_tile_boxes(hrsid_tiles):
    _, out, _ = hrsid_tiles
    boxes = dict(zip(read_manifest(out)["sample_id"], read_manifest(out)["boxes"]))
    for split, tiles in (("train", 32), ("test", 16)):
        records = vqa_from_dataset(out, split)
        assert len(records) == tiles
        for record in records:
            turns = record["conversations"]
            answers = {turns[i]["value"].replace("<image>\n", ""): turns[i + 1]["value"]
                       for i in range(0, len(turns), 2)}
            assert answers["How many ships are there in the image?"] == str(len(boxes[record["id"]]))
            assert answers["Is there a ship in the image?"] == ("yes" if boxes[record["id"]] else "no")


# --- COCO ----------------------------------------------------------------------------------------


def _coco_from_hrsid(source: Path, target: Path) -> dict:
    listing = json.loads((source / "ship_boxes.json").read_text())
    (target / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id, (name, boxes) in enumerate(sorted(listing.items()), start=1):
        shutil.copyfile(source / "images" / name, target / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": 800, "height": 800})
        for box in boxes:
            w, h = box["x_max"] - box["x_min"] + 1, box["y_max"] - box["y_min"] + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 7,
                                "bbox": [box["x_min"], box["y_min"], w, h], "area": box["area_px"]})
    coco = {"info": {"modality": "sar"}, "images": images, "annotations": annotations,
            "categories": [{"id": 7, "name": "ship"}]}
    (target / "annotations.json").write_text(json.dumps(coco))
    return coco


@pytest.mark.real_data
def test_coco_of_real_hrsid_boxes_gives_the_same_boxes_as_the_hrsid_adapter(hrsid, tmp_path):
    source, hrsid_out, _ = hrsid
    coco = _coco_from_hrsid(source, tmp_path / "coco")
    out = tmp_path / "ds"

    report = ingest("coco", tmp_path / "coco", out)

    manifest = read_manifest(out)
    assert (report.rows, report.quarantined) == (3, 0)
    assert set(manifest["modality"]) == {"sar"} and set(manifest["bands"]) == {3}
    by_id = {image["id"]: Path(image["file_name"]).stem for image in coco["images"]}
    expected = {stem: [] for stem in by_id.values()}
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        expected[by_id[annotation["image_id"]]].append(
            {"x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h, "label": "ship"})
    assert dict(zip(manifest["sample_id"], manifest["boxes"])) == expected
    hrsid_boxes = dict(zip(read_manifest(hrsid_out)["sample_id"], read_manifest(hrsid_out)["boxes"]))
    assert dict(zip(manifest["sample_id"], manifest["boxes"])) == hrsid_boxes


def test_coco_quarantines_orphans_unknown_categories_and_bad_boxes(tmp_path):
    source = tmp_path / "coco"
    _png(source / "images" / "a.png", np.full((20, 30, 3), 90))
    _png(source / "images" / "b.png", np.full((20, 30, 3), 10))
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
            {"id": 2, "file_name": "b.png", "width": 30, "height": 20},
            {"id": 3, "file_name": "gone.png", "width": 30, "height": 20},
            {"id": 4, "file_name": "b.png", "width": 31, "height": 20},
            {"id": 1, "file_name": "dup.png"},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [1.5, 2, 10, 5]},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 30, 20]},
            {"image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"image_id": 1, "category_id": 1, "bbox": [25, 0, 10, 5]},
            {"image_id": 1, "category_id": 1, "bbox": [3, 3, 0, 5]},
            {"image_id": 1, "category_id": 1, "bbox": [3, 3, 5]},
            {"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},
        ],
        "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "harbour"}],
    }
    (source / "instances_val2017.json").write_text(json.dumps(coco))
    out = tmp_path / "ds"

    ingest("coco", source / "instances_val2017.json", out)

    manifest = read_manifest(out).set_index("sample_id")
    assert sorted(manifest.index) == ["a", "b"]
    assert set(manifest["split"]) == {"val"} and set(manifest["modality"]) == {"optical"}
    assert manifest.loc["a", "boxes"] == [
        {"x_min": 1.5, "y_min": 2.0, "x_max": 11.5, "y_max": 7.0, "label": "ship"},
        {"x_min": 0.0, "y_min": 0.0, "x_max": 30.0, "y_max": 20.0, "label": "harbour"},
    ]
    assert manifest.loc["b", "boxes"] == []
    assert _rules(out) == ["box_bounds", "box_bounds", "box_fields", "box_label", "file_exists",
                           "image_ref", "image_size", "unique_id"]


# --- BigEarthNet ---------------------------------------------------------------------------------

S2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
REAL_CORINE_TO_CRISIS = {
    "Arable land": "crops", "Broad-leaved forest": "trees", "Coniferous forest": "trees", "Mixed forest": "trees",
    "Complex cultivation patterns": "crops", "Industrial or commercial units": "built", "Inland waters": "water",
    "Inland wetlands": "flooded vegetation", "Pastures": "grass", "Transitional woodland, shrub": "shrub and scrub",
    "Land principally occupied by agriculture, with significant areas of natural vegetation": "crops",
    "Urban fabric": "built",
}
"""The CORINE-19 classes in ../shared/data/ben_s1s2 and their CrisisLandMark classes (the table's documented rule)."""


@pytest.fixture(scope="module")
def ben(shared_data, tmp_path_factory):
    source = shared_data / "ben_s1s2"
    out = tmp_path_factory.mktemp("ben") / "ds"
    report = ingest("bigearthnet", source, out)
    return source, out, report


@pytest.mark.real_data
def test_bigearthnet_rows_splits_shapes_and_labels(ben):
    source, out, report = ben
    table = pd.read_csv(source / "labels.csv").set_index("patch_id")
    manifest = read_manifest(out)
    assert (report.rows, report.quarantined) == (24, 0)
    assert manifest["split"].value_counts().to_dict() == {"train": 8, "val": 8, "test": 8}
    assert set(manifest["modality"]) == {"s1s2"} and read_meta(out)["kind"] == "multisensor"
    corine = read_meta(out)["corine19_labels"]
    assert sorted(corine) == sorted(manifest["sample_id"])
    for row in manifest.to_dict("records"):
        source_labels = table.loc[row["sample_id"], "labels"].split("|")
        assert corine[row["sample_id"]] == source_labels
        # CrisisLandMark text: the CORINE-19 classes of this real sample mapped by the documented table
        mapped = list(dict.fromkeys(REAL_CORINE_TO_CRISIS[label] for label in source_labels))
        assert row["labels"] == mapped
        assert row["captions"] == [". ".join(mapped)]
        assert row["long_caption"] == row["captions"][0]
        assert _array(out, row["s2"]).shape == (12, 120, 120)
        assert _array(out, row["s1"]).shape == (2, 120, 120)
        assert (row["bands"], row["width"], row["height"]) == (12, 120, 120)
        assert row["lat"] is None and row["lon"] is None
        assert row["timestamp"][:10] in {"2017-06-13", "2017-11-01"} and row["timestamp"].endswith("+00:00")
        assert {"train": "train", "validation": "val", "test": "test"}[table.loc[row["sample_id"], "split"]] \
            == row["split"]


@pytest.mark.real_data
def test_bigearthnet_values_equal_the_source_npz(ben):
    source, out, _ = ben
    row = read_manifest(out).iloc[5]
    with np.load(source / "npz" / f"{row['sample_id']}.npz") as npz:
        s2, s1 = _array(out, row["s2"]), _array(out, row["s1"])
        np.testing.assert_array_equal(s2[S2.index("B02")], npz["S2_B02"].astype(np.float32))
        np.testing.assert_array_equal(s2[S2.index("B08")], npz["S2_B08"].astype(np.float32))
        np.testing.assert_array_equal(s1[0], npz["S1_VV"])
        np.testing.assert_array_equal(s1[1], npz["S1_VH"])
        for band, factor in (("B05", 2), ("B09", 6)):
            reference = F.interpolate(torch.from_numpy(npz[f"S2_{band}"].astype(np.float32))[None, None],
                                      scale_factor=factor, mode="bilinear", align_corners=False)[0, 0].numpy()
            np.testing.assert_allclose(s2[S2.index(band)], reference, rtol=1e-5)


@pytest.mark.real_data
def test_bigearthnet_band_stats_are_those_of_the_train_arrays(ben):
    _, out, _ = ben
    manifest = read_manifest(out)
    train = manifest[manifest["split"] == "train"]
    stats = read_meta(out)["band_stats"]
    for sensor, count in (("s2", 12), ("s1", 2)):
        stack = np.stack([_array(out, rel) for rel in train[sensor]]).astype(np.float64)
        assert len(stats[sensor]["mean"]) == count
        np.testing.assert_allclose(stats[sensor]["mean"], stack.mean(axis=(0, 2, 3)), rtol=1e-9)
        np.testing.assert_allclose(stats[sensor]["std"], stack.std(axis=(0, 2, 3)), rtol=1e-9)
    assert stats["s2"]["bands"] == list(S2) and stats["s1"]["bands"] == ["VV", "VH"]


def _ben_patch(path: Path, rng, drop: str | None = None, nan_in: str | None = None, small: str | None = None):
    sizes = {"B01": 20, "B09": 20, "B05": 60, "B06": 60, "B07": 60, "B8A": 60, "B11": 60, "B12": 60}
    arrays = {f"S2_{b}": rng.integers(0, 5000, (sizes.get(b, 120),) * 2).astype(np.uint16) for b in S2}
    arrays.update(S1_VV=rng.normal(-10, 3, (120, 120)).astype(np.float32),
                  S1_VH=rng.normal(-16, 3, (120, 120)).astype(np.float32))
    if drop:
        del arrays[drop]
    if nan_in:
        arrays[nan_in][4, 7] = np.nan
    if small:
        arrays[small] = arrays[small][:50, :50]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def test_bigearthnet_quarantines_nan_missing_bands_and_bad_rows(tmp_path):
    rng = np.random.default_rng(3)
    source = tmp_path / "ben"
    name = "S2B_MSIL2A_20180525T094029_N9999_R036_T35VNL_{}"
    _ben_patch(source / "npz" / f"{name.format('ok')}.npz", rng)
    _ben_patch(source / "npz" / f"{name.format('nan')}.npz", rng, nan_in="S1_VV")
    _ben_patch(source / "npz" / f"{name.format('drop')}.npz", rng, drop="S2_B05")
    _ben_patch(source / "npz" / f"{name.format('small')}.npz", rng, small="S2_B11")
    (source / "npz" / f"{name.format('junk')}.npz").write_bytes(b"not a zip")
    rows = [(name.format(tag), split, labels) for tag, split, labels in [
        ("ok", "validation", "Marine waters|Coastal wetlands"), ("nan", "train", "Pastures"),
        ("drop", "train", "Pastures"), ("small", "test", "Pastures"), ("junk", "test", "Pastures"),
        ("absent", "test", "Pastures"), ("ok", "holdout", "Pastures"), ("ok", "train", "Tundra")]]
    with open(source / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patch_id", "s1_name", "split", "country", "labels", "snow", "cloud_or_shadow"])
        writer.writerows([(pid, "", split, "Finland", labels, "False", "True") for pid, split, labels in rows])
    out = tmp_path / "ds"

    ingest("bigearthnet", source, out)

    manifest = read_manifest(out)
    assert list(manifest["sample_id"]) == [name.format("ok")]
    assert manifest["split"][0] == "val" and manifest["timestamp"][0] == "2018-05-25T09:40:29+00:00"
    assert manifest["captions"][0] == ["water. flooded vegetation"]  # Marine waters, Coastal wetlands
    assert manifest["labels"][0] == ["water", "flooded vegetation"]
    assert read_meta(out)["corine19_labels"] == {name.format("ok"): ["Marine waters", "Coastal wetlands"]}
    assert _rules(out) == ["array_decode", "band_count", "band_shape", "file_exists", "finite_values",
                           "label_value", "split_value"]
    quarantine = read_quarantine(out).set_index("rule")
    assert quarantine.loc["finite_values", "where"] == "labels.csv:3"
    assert "S1_VV" in quarantine.loc["finite_values", "reason"]
    assert "S2_B05" in quarantine.loc["band_count", "reason"]
    meta = read_meta(out)
    assert meta["band_stats"]["s2"] is None
    assert meta["flags"]["cloud_or_shadow"] == [name.format("ok")]


# --- CrisisLandMark ------------------------------------------------------------------------------


def _clm_group(handle, key: str, image: np.ndarray, crs: str | None, coords: np.ndarray | None,
               timestamp: object = "2021-03-04T05:06:07") -> None:
    group = handle.create_group(key)
    group.create_dataset("image", data=image)
    if coords is not None:
        group.create_dataset("coords", data=coords)
    if crs is not None:
        group.attrs["crs"] = crs
    if timestamp is not None:
        group.attrs["timestamp"] = timestamp


def _utm_grid(easting: float, northing: float, size: int = 16) -> np.ndarray:
    xs = easting - size // 2 * 10 + 10 * np.arange(size)
    ys = northing + size // 2 * 10 - 10 * np.arange(size)
    return np.stack(np.meshgrid(xs, ys))


@pytest.fixture()
def crisis(tmp_path):
    rng = np.random.default_rng(7)
    source = tmp_path / "clm"
    (source / "shards").mkdir(parents=True)
    images = {
        "benv2s1_a": rng.normal(-12, 3, (2, 16, 16)).astype(np.float32),
        "cabuar_b": rng.integers(0, 9000, (12, 16, 16)).astype(np.uint16),
        "sen2flood_c": rng.integers(0, 9000, (13, 16, 16)).astype(np.float32),
        "mmflood_nan": rng.normal(-12, 3, (2, 16, 16)).astype(np.float32),
        "quakeset_bands": rng.normal(-12, 3, (4, 16, 16)).astype(np.float32),
        "benv2s2_coords": rng.integers(0, 9000, (12, 16, 16)).astype(np.float32),
        "benv2s2_time": rng.integers(0, 9000, (12, 16, 16)).astype(np.float32),
    }
    images["mmflood_nan"][1, 3, 3] = np.nan
    with h5py.File(source / "shards" / "part-0.h5", "w") as handle:
        _clm_group(handle, "benv2s1_a", images["benv2s1_a"], "EPSG:32638", _utm_grid(444140.54, 3684706.36))
        _clm_group(handle, "cabuar_b", images["cabuar_b"], "EPSG:4326", np.array([12.5, 41.9]), 1.6e9)
        _clm_group(handle, "mmflood_nan", images["mmflood_nan"], "EPSG:4326", np.array([0.0, 0.0]))
    with h5py.File(source / "shards" / "part-1.h5", "w") as handle:
        _clm_group(handle, "sen2flood_c", images["sen2flood_c"], None, None, None)
        _clm_group(handle, "quakeset_bands", images["quakeset_bands"], "EPSG:4326", np.array([1.0, 2.0]))
        _clm_group(handle, "benv2s2_coords", images["benv2s2_coords"], "EPSG:32633", np.zeros((3, 16, 16)))
        _clm_group(handle, "benv2s2_time", images["benv2s2_time"], "EPSG:4326", np.array([1.0, 2.0]),
                   "last tuesday")
        _clm_group(handle, "unlisted", images["cabuar_b"], "EPSG:4326", np.array([1.0, 2.0]))
    metadata = pd.DataFrame({
        "key": ["benv2s1_a", "cabuar_b", "sen2flood_c", "mmflood_nan", "quakeset_bands", "benv2s2_coords",
                "benv2s2_time", "gone_key", "cabuar_b2", "cabuar_b3"],
        "split": ["train", "val", "test", "train", "train", "train", "train", "test", "bogus", "train"],
        "labels": [["Water", "Trees", "water"], ["Burned Area"], ["Flooded area", "Inland waters"], ["water"],
                   ["trees"], ["trees"], ["trees"], ["water"], ["water"], ["Moon rock"]],
    })
    metadata.to_parquet(source / "metadata.parquet")
    out = tmp_path / "ds"
    return source, out, images, ingest("crisislandmark", source, out)


def test_crisislandmark_rows_round_trip_their_shard_members(crisis):
    _, out, images, report = crisis
    manifest = read_manifest(out).set_index("sample_id")
    assert sorted(manifest.index) == ["benv2s1_a", "cabuar_b", "sen2flood_c"]
    assert report.rows == 3
    s1 = manifest.loc["benv2s1_a"]
    assert (s1["modality"], s1["s2"], s1["bands"], s1["split"]) == ("sar", None, 2, "train")
    np.testing.assert_array_equal(_array(out, s1["s1"]), images["benv2s1_a"])
    assert s1["labels"] == ["water", "trees"] and s1["captions"] == ["water. trees"]
    assert s1["lon"] == pytest.approx(44.4, abs=1e-6) and s1["lat"] == pytest.approx(33.3, abs=1e-6)
    assert s1["timestamp"] == "2021-03-04T05:06:07+00:00"
    s2 = manifest.loc["cabuar_b"]
    assert (s2["modality"], s2["s1"], s2["bands"], s2["width"], s2["height"]) == ("multispectral", None, 12, 16, 16)
    np.testing.assert_array_equal(_array(out, s2["s2"]), images["cabuar_b"].astype(np.float32))
    assert (s2["lon"], s2["lat"]) == (12.5, 41.9)
    assert s2["timestamp"] == "2020-09-13T12:26:40+00:00"
    assert s2["long_caption"] == "burned area"
    thirteen = manifest.loc["sen2flood_c"]
    assert thirteen["bands"] == 13 and thirteen["lat"] is None and thirteen["timestamp"] is None
    assert thirteen["labels"] == ["flooded area", "water"]
    assert read_meta(out)["unlisted_keys"] == 1


def test_crisislandmark_quarantines_nan_missing_keys_and_broken_members(crisis):
    _, out, _, _ = crisis
    quarantine = read_quarantine(out).set_index("sample_id")
    assert dict(quarantine["rule"]) == {
        "mmflood_nan": "finite_values",
        "quakeset_bands": "band_count",
        "benv2s2_coords": "coords",
        "benv2s2_time": "timestamp",
        "gone_key": "file_exists",
        "cabuar_b2": "split_value",
        "cabuar_b3": "label_value",
    }
    assert quarantine.loc["gone_key", "where"] == "metadata.parquet:7"


def test_crisislandmark_projected_crs_without_pyproj_is_quarantined(tmp_path):
    try:
        import pyproj  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pyproj is installed, so EPSG:3035 is converted rather than quarantined")
    source = tmp_path / "clm"
    source.mkdir()
    with h5py.File(source / "s.h5", "w") as handle:
        _clm_group(handle, "k", np.zeros((2, 4, 4), np.float32), "EPSG:3035", np.array([4321000.0, 3210000.0]))
    pd.DataFrame({"key": ["k"], "split": ["test"], "labels": [["water"]]}).to_parquet(source / "metadata.parquet")

    ingest("crisislandmark", source, tmp_path / "ds")

    quarantine = read_quarantine(tmp_path / "ds")
    assert list(quarantine["rule"]) == ["crs"] and "pyproj" in quarantine["reason"][0]
