"""Questions generated from boxes and masks agree with the annotations they come from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsvl.data.adapters import ingest
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_sar_chips
from rsvl.errors import DataError
from rsvl.vqa import QUESTION_TYPES, qa_pairs, question_type, read_llava, vqa_from_dataset, write_llava

ROWS = ("upper", "middle", "lower")
COLS = ("left", "middle", "right")


@pytest.fixture(scope="module")
def sar_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vqa") / "sar"
    write_sar_chips(out, seed=3, count=60)
    return out


def expected_third(box: dict, width: int, height: int) -> str:
    cx, cy = (box["x_min"] + box["x_max"]) / 2, (box["y_min"] + box["y_max"]) / 2
    row, col = ROWS[min(int(cy * 3 // height), 2)], COLS[min(int(cx * 3 // width), 2)]
    return "center" if row == col == "middle" else f"{row} {col}"


def test_every_answer_matches_the_manifest_and_mask(sar_dir):
    records = vqa_from_dataset(sar_dir, "test")
    frame = ManifestDataset(sar_dir, split="test", load_media=False).frame
    assert [r["id"] for r in records] == list(frame["sample_id"])
    for record, (_, row) in zip(records, frame.iterrows()):
        answers = dict(qa_pairs(record))
        boxes = list(row["boxes"])
        assert record["image"] == row["image"]
        assert answers["Is there a ship in the image?"] == ("yes" if boxes else "no")
        assert answers["How many ships are there in the image?"] == str(len(boxes))
        if boxes:
            largest = max(boxes, key=lambda b: (b["x_max"] - b["x_min"]) * (b["y_max"] - b["y_min"]))
            assert answers["Where is the largest ship?"] == expected_third(largest, row["width"], row["height"])
        else:
            assert "Where is the largest ship?" not in answers
        land = np.asarray(Image.open(sar_dir / row["mask"])) == 1
        assert answers["Is there any land in the image?"] == ("yes" if land.mean() >= 0.01 else "no")
        assert answers["Is the image mostly land or sea?"] == ("land" if land.mean() > 0.5 else "sea")


def test_question_types_are_recognised_and_splits_partition(sar_dir, tmp_path):
    every = vqa_from_dataset(sar_dir)
    by_split = [r for split in ("train", "val", "test") for r in vqa_from_dataset(sar_dir, split)]
    assert sorted(r["id"] for r in every) == sorted(r["id"] for r in by_split)
    types = {question_type(q) for r in every for q, _ in qa_pairs(r)}
    assert types == set(QUESTION_TYPES)
    assert question_type("What colour is the sky?") is None
    assert read_llava(write_llava(every, tmp_path / "all.json")) == every
    with pytest.raises(DataError, match="unknown split 'dev'"):
        vqa_from_dataset(sar_dir, "dev")


@pytest.mark.real_data
def test_hrsid_counts_equal_the_source_boxes(shared_data, tmp_path):
    source = shared_data / "hrsid_samples"
    if not (source / "ship_boxes.json").is_file():
        pytest.skip(f"HRSID samples not found at {source}")
    ingest("hrsid-boxes", source, tmp_path / "hrsid")
    records = vqa_from_dataset(tmp_path / "hrsid")
    source_boxes = json.loads((source / "ship_boxes.json").read_text())
    truth = {Path(name).stem: len(boxes) for name, boxes in source_boxes.items()}
    assert len(records) == len(truth) == 3
    for record in records:
        answers = dict(qa_pairs(record))
        assert answers["How many ships are there in the image?"] == str(truth[record["id"]])
        assert answers["Is there a ship in the image?"] == ("yes" if truth[record["id"]] else "no")
        assert not any(question_type(q) in ("land", "land_sea") for q in answers)
