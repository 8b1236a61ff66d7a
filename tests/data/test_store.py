"""Canonical format: what a writer stores, the training loader reads back identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import (
    DatasetWriter,
    read_files,
    read_manifest,
    read_meta,
    read_quarantine,
    relative_to_dataset,
    safe_media_name,
    sha256_file,
)
from rsvl.errors import DataError, SchemaVersionError


def _image(path, value: int, size=(8, 6)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


@pytest.fixture()
def written(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _image(src / "a.png", 10)
    s2 = np.arange(12 * 4 * 4, dtype=np.float32).reshape(12, 4, 4)
    s1 = -np.ones((2, 4, 4), dtype=np.float32)
    out = tmp_path / "ds"
    with DatasetWriter(out, name="mixed", kind="multisensor", adapter="test", source=str(src),
                       extra_meta={"band_stats": {"s2": {"mean": [1.0] * 12, "std": [2.0] * 12}}}) as writer:
        writer.add_row(
            sample_id="optical-1", split="train", modality="optical",
            image=writer.copy_media(src / "a.png", "dir/a.png"), bands=3, width=8, height=6,
            captions=["a grey square", "a flat grey scene"], long_caption="A grey square. Nothing else.",
            label="bare", boxes=[{"x_min": 1.0, "y_min": 2.0, "x_max": 3.0, "y_max": 4.0, "label": "ship"}],
            vqa=[{"question": "is there a ship?", "answer": "yes", "type": "presence"}], source="src:1",
        )
        writer.add_row(
            sample_id="pair-1", split="test", modality="s1s2",
            s1=writer.write_array(s1, "pair-1_s1"), s2=writer.write_array(s2, "pair-1_s2"), bands=12,
            labels=["trees", "water"], captions=["trees. water"], lat=47.5, lon=13.25,
            timestamp="2017-06-13T10:10:31Z", source="src:2",
        )
        writer.add_row(sample_id="pair-1", split="val", modality="s1s2", source="src:3")
    return writer.report, out, s1, s2


def test_report_counts_and_duplicate_is_quarantined_not_dropped(written):
    report, out, _, _ = written
    assert (report.rows, report.files, report.quarantined) == (2, 3, 1)
    quarantine = read_quarantine(out)
    assert quarantine.to_dict("records") == [{
        "stage": "ingest", "where": "src:3", "sample_id": "pair-1", "rule": "unique_id",
        "reason": "sample_id 'pair-1' already used by an earlier row",
    }]
    assert "1 rows quarantined (unique_id: 1)" in report.summary()
    meta = read_meta(out)
    assert meta["counts"] == {"rows": 2, "files": 3, "quarantined": 1, "splits": {"train": 1, "test": 1}}


def test_provenance_hashes_every_file(written):
    _, out, _, _ = written
    files = read_files(out)
    assert len(files) == 3
    for row in files.itertuples():
        assert sha256_file(out / row.path) == row.sha256
        assert (out / row.path).stat().st_size == row.bytes
    assert files.set_index("path").loc["media/dir__a.png", "source_path"].endswith("src/a.png")


def test_loader_round_trip_matches_what_was_written(written):
    _, out, s1, s2 = written
    frame = read_manifest(out)
    dataset = ManifestDataset(out)
    assert len(dataset) == 2
    optical, pair = dataset[0], dataset[1]
    assert optical["image"].shape == (3, 6, 8) and optical["image"].dtype == torch.float32
    assert torch.all(optical["image"] == 10)
    assert optical["captions"] == ["a grey square", "a flat grey scene"]
    assert optical["boxes"] == frame.loc[0, "boxes"] == [
        {"x_min": 1.0, "y_min": 2.0, "x_max": 3.0, "y_max": 4.0, "label": "ship"}]
    assert optical["vqa"][0]["answer"] == "yes" and "s1" not in optical and "lat" not in optical
    assert np.array_equal(pair["s2"].numpy(), s2) and np.array_equal(pair["s1"].numpy(), s1)
    assert (pair["lat"], pair["lon"], pair["labels"]) == (47.5, 13.25, ["trees", "water"])
    assert dataset.band_stats["s2"]["std"] == [2.0] * 12
    assert [s["sample_id"] for s in ManifestDataset(out, split="test")] == ["pair-1"]


def test_newer_schema_version_is_refused_naming_the_file(written):
    _, out, _, _ = written
    meta = json.loads((out / "dataset.json").read_text())
    meta["schema_version"] = 99
    (out / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaVersionError, match=r"dataset\.json: manifest schema version 99 is newer"):
        read_manifest(out)


def test_media_paths_cannot_escape_the_dataset(tmp_path):
    with pytest.raises(DataError, match="outside the dataset"):
        relative_to_dataset(tmp_path, "../secret.png")
    with pytest.raises(DataError, match="outside the dataset"):
        relative_to_dataset(tmp_path, "/etc/passwd")
    assert safe_media_name("../a/b c.png") == "a__b_c.png"


def test_writer_rejects_unknown_columns_and_kinds(tmp_path):
    with pytest.raises(DataError, match="kind 'pictures'"):
        DatasetWriter(tmp_path / "x", name="x", kind="pictures", adapter="t", source="s")
    with pytest.raises(DataError, match="unknown manifest columns"):
        with DatasetWriter(tmp_path / "x", name="x", kind="captioning", adapter="t", source="s") as w:
            w.add_row(sample_id="1", split="train", modality="optical", colour="red")
