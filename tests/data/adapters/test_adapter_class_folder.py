"""Class-folder adapter on the real RSSCN7 set, and the label/split rules on a tiny layout."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from rsvl.data.adapters import formats, ingest
from rsvl.data.adapters.class_folder import normalise_class
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import read_manifest, read_quarantine
from rsvl.errors import DataError


@pytest.mark.real_data
def test_rsscn7_ingest_round_trip(shared_data, tmp_path):
    source = shared_data / "rsscn7"
    report = ingest("class-folder", source, tmp_path / "rsscn7")
    assert (report.rows, report.quarantined, report.files) == (2380, 0, 2380)
    with open(source / "labels.csv", newline="") as handle:
        expected = list(csv.DictReader(handle))
    frame = read_manifest(tmp_path / "rsscn7")
    assert Counter(frame["label"]) == Counter(r["label"] for r in expected)
    assert Counter(frame["label"]) == {label: 340 for label in
                                       ["grass", "field", "industry", "riverlake", "forest", "resident", "parking"]}
    assert Counter(frame["split"]) == Counter(r["split"] for r in expected)
    by_id = frame.set_index("sample_id")
    for record in expected[::97]:
        row = by_id.loc[record["filepath"].rsplit(".", 1)[0]]
        assert (row["label"], row["split"]) == (record["label"], record["split"])
    sample = ManifestDataset(tmp_path / "rsscn7")[0]
    with Image.open(source / "images" / expected[0]["filepath"]) as original:
        pixels = np.asarray(original.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(sample["image"].numpy(), pixels)


def test_missing_files_and_bad_splits_are_quarantined_with_row(tmp_path):
    source = tmp_path / "set"
    (source / "images" / "Forest").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(source / "images" / "Forest" / "f1.png")
    (source / "labels.csv").write_text(
        "filepath,label,split\nForest/f1.png,Dense_Forest,train\nForest/f2.png,forest,test\nForest/f1.png,forest,holdout\n"
    )
    report = ingest("class-folder", source, tmp_path / "out")
    assert (report.rows, report.quarantined) == (1, 2)
    quarantine = read_quarantine(tmp_path / "out").set_index("where")
    assert quarantine.loc["labels.csv:3", "rule"] == "file_exists"
    assert quarantine.loc["labels.csv:4", "rule"] == "split_value"
    assert read_manifest(tmp_path / "out").loc[0, "label"] == "dense forest"


def test_without_labels_csv_folders_are_classes(tmp_path):
    for cls in ("River_Lake", "Parking"):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (4, 4)).save(tmp_path / "set" / cls / f"{i}.jpg")
    report = ingest("class-folder", tmp_path / "set", tmp_path / "out")
    assert report.rows == 6
    assert Counter(read_manifest(tmp_path / "out")["label"]) == {"river lake": 3, "parking": 3}


def test_unknown_format_and_source_are_clear_errors(tmp_path):
    assert "class-folder" in formats()
    with pytest.raises(DataError, match="unknown format 'pascal'"):
        ingest("pascal", tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="source does not exist"):
        ingest("class-folder", tmp_path / "missing", tmp_path / "out")
    assert normalise_class("Dense_Residential/Area") == "dense residential area"


def test_archived_source_is_unpacked_with_guarded_paths(tmp_path):
    import zipfile

    from rsvl.errors import UnsafeArchiveError

    good = tmp_path / "scenes.zip"
    with zipfile.ZipFile(good, "w") as zf:
        for cls in ("Forest", "Water"):
            for i in range(2):
                image = tmp_path / f"{cls}{i}.png"
                Image.new("RGB", (4, 4), (i, 0, 0)).save(image)
                zf.write(image, f"scenes/{cls}/{i}.png")
    report = ingest("class-folder", good, tmp_path / "out")
    assert report.rows == 4
    assert Counter(read_manifest(tmp_path / "out")["label"]) == {"forest": 2, "water": 2}

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("scenes/Forest/0.png", b"x")
        zf.writestr("../../escaped.png", b"x")
    with pytest.raises(UnsafeArchiveError, match=r"contains '\.\.'"):
        ingest("class-folder", evil, tmp_path / "out2")
    assert not (tmp_path.parent / "escaped.png").exists()


def test_split_aliases_in_labels_csv_map_to_the_manifest_splits(tmp_path):
    """``validation``/``dev``/``Training`` are the shared aliases (rsvl.data.splits), as the other adapters read them."""
    source = tmp_path / "set"
    (source / "images" / "Forest").mkdir(parents=True)
    written = {"a": "validation", "b": "dev", "c": " Training ", "d": "TEST", "e": "holdout"}
    for stem in written:
        Image.new("RGB", (4, 4)).save(source / "images" / "Forest" / f"{stem}.png")
    (source / "labels.csv").write_text("filepath,label,split\n" + "".join(
        f"Forest/{stem}.png,forest,{split}\n" for stem, split in written.items()))
    report = ingest("class-folder", source, tmp_path / "out")
    assert (report.rows, report.quarantined) == (4, 1)
    splits = read_manifest(tmp_path / "out").set_index("sample_id")["split"].to_dict()
    assert splits == {"Forest/a": "val", "Forest/b": "val", "Forest/c": "train", "Forest/d": "test"}
    reason = read_quarantine(tmp_path / "out").set_index("where").loc["labels.csv:6", "reason"]
    assert "'holdout'" in reason and "validation" in reason
