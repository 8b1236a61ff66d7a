"""caption_dataset on the synthetic SAR chips and on real HRSID chips."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from rsvl.caption import PROVENANCE_FILE, CaptionConfig, caption_dataset, read_provenance, read_rejected
from rsvl.data.adapters import ingest
from rsvl.data.generate import write_sar_chips
from rsvl.data.store import DatasetWriter, read_manifest, read_meta

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_COUNT = re.compile(r"\b((?:(?:no|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
                    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
                    r"seventy|eighty|ninety|hundred)[\s-]+)+)(?:small |medium |large )?ships?\b", re.IGNORECASE)
_REGIONS = {"upper left": (0, 0), "upper middle": (0, 1), "upper right": (0, 2), "middle left": (1, 0),
            "center": (1, 1), "middle right": (1, 2), "lower left": (2, 0), "lower middle": (2, 1),
            "lower right": (2, 2)}


def stated_count(caption: str) -> int:
    """Read the ship count a caption states, independently of the library's parser."""
    match = _COUNT.search(caption)
    assert match, f"no ship count in {caption!r}"
    total = current = 0
    for word in re.split(r"[\s-]+", match.group(1).strip().lower()):
        if word == "no":
            return 0
        if word == "hundred":
            current *= 100
        else:
            current += _UNITS.get(word, 0) + _TENS.get(word, 0)
    return total + current


def regions_with_centres(boxes, width, height) -> set[tuple[int, int]]:
    cells = set()
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        cells.add((min(int(cy / (height / 3)), 2), min(int(cx / (width / 3)), 2)))
    return cells


def strip_captions(src, dst):
    """Copy a dataset with every caption removed except the first row's (which must pass through)."""
    meta = read_meta(src)
    rows = read_manifest(src).to_dict("records")
    extra = {k: v for k, v in meta.items() if k not in {"schema_version", "name", "kind", "adapter", "source", "counts"}}
    with DatasetWriter(dst, name=meta["name"], kind=meta["kind"], adapter=meta["adapter"], source=meta["source"],
                       extra_meta=extra) as writer:
        for i, row in enumerate(rows):
            for column in ("image", "mask"):
                row[column] = writer.copy_media(src / row[column], row[column].split("/", 1)[1])
            if i:
                row["captions"], row["long_caption"] = [], None
            writer.add_row(**row)
    return rows


@pytest.fixture(scope="module")
def sar_uncaptioned(tmp_path_factory):
    root = tmp_path_factory.mktemp("sar")
    write_sar_chips(root / "generated", seed=5, count=40)
    rows = strip_captions(root / "generated", root / "bare")
    return root / "bare", rows


def test_synthetic_chips_get_true_a2c_and_sa2c_captions(sar_uncaptioned, tmp_path):
    bare, original = sar_uncaptioned
    report = caption_dataset(bare, tmp_path / "out", CaptionConfig(seed=1))
    assert (report.rows, report.passed_through, report.captioned) == (40, 1, 39)
    out = read_manifest(tmp_path / "out")
    assert out.iloc[0]["captions"] == original[0]["captions"]
    provenance = read_provenance(tmp_path / "out")
    by_sample: dict[str, list[dict]] = {}
    for item in provenance:
        by_sample.setdefault(item["sample_id"], []).append(item)
    assert set(by_sample) == set(out.sample_id[1:])
    assert report.by_route == {r: sum(p["route"] == r for p in provenance) for r in ("a2c", "sa2c")}
    for row in out.to_dict("records")[1:]:
        items = by_sample[row["sample_id"]]
        assert [i["caption"] for i in items] == list(row["captions"])
        assert {i["rewriter"] for i in items} == {"rule"}
        assert {i["route"] for i in items} == {"a2c", "sa2c"}
        land = np.asarray(Image.open(tmp_path / "out" / row["mask"])) == 1
        for item in items:
            if item["route"] == "a2c":
                assert stated_count(item["caption"]) == len(row["boxes"]), item
            else:
                assert not re.search(r"\bships?\b", item["caption"])
                for number in re.findall(r"(\d+)% is land|land covers about (\d+)%", item["caption"]):
                    assert abs(int(next(n for n in number if n)) - 100 * land.mean()) <= 1
                if not land.any():
                    assert re.search(r"no land|open water", item["caption"]), item
    assert (tmp_path / "out" / PROVENANCE_FILE).is_file()
    assert sum(report.rejected_by_rule.values()) == len(read_rejected(tmp_path / "out"))


def test_same_seed_same_captions(sar_uncaptioned, tmp_path):
    bare, _ = sar_uncaptioned
    caption_dataset(bare, tmp_path / "a", CaptionConfig(seed=2))
    caption_dataset(bare, tmp_path / "b", CaptionConfig(seed=2))
    assert read_provenance(tmp_path / "a") == read_provenance(tmp_path / "b")


def test_optical_captions_and_rejections_are_reported(sar_uncaptioned, tmp_path):
    bare, original = sar_uncaptioned
    sample = next(r for r in original[1:] if len(r["boxes"]) not in (0, 5))
    optical = tmp_path / "optical.json"
    optical.write_text(json.dumps({sample["sample_id"]: ["Five red ships near the white quay.",
                                                         "A dark grainy scene with blue water and bright targets."]}))
    report = caption_dataset(bare, tmp_path / "out", CaptionConfig(optical_captions=str(optical)))
    rejected = [r for r in read_rejected(tmp_path / "out") if r["route"] == "optical"]
    assert [(r["sample_id"], r["rule"], r["rewriter"]) for r in rejected] == [
        (sample["sample_id"], "count_mismatch", "rule")]
    assert report.rejected_by_rule.get("count_mismatch", 0) >= 1
    accepted = [p for p in read_provenance(tmp_path / "out") if p["route"] == "optical"]
    assert [p["caption"] for p in accepted] == ["A dark grainy scene with water and bright targets."]
    assert report.by_route["optical"] == 1


def test_the_generated_chips_optical_twins_feed_the_optical_route_truthfully(tmp_path):
    """Every route captions the generated chips; the twins' captions agree with the chips' boxes and masks,
    so the filter refuses none of them for what they claim (only repeats of an A2C wording go)."""
    write_sar_chips(tmp_path / "sar", seed=5, count=40)
    config = CaptionConfig(recaption=True, optical_captions="optical_captions.json")
    report = caption_dataset(tmp_path / "sar", tmp_path / "out", config)
    assert set(report.by_route) == {"a2c", "sa2c", "optical"}
    assert "40 rows from" in report.optical_route
    optical = [r for r in read_rejected(tmp_path / "out") if r["route"] == "optical"]
    assert {r["rule"] for r in optical} <= {"duplicate"}
    twins = json.loads((tmp_path / "sar" / "optical_captions.json").read_text())
    assert report.by_route["optical"] + len(optical) == sum(len(texts) for texts in twins.values())
    rows = {r["sample_id"]: r for r in read_manifest(tmp_path / "sar").to_dict("records")}
    for item in read_provenance(tmp_path / "out"):
        if item["route"] == "optical" and _COUNT.search(item["caption"]):
            assert stated_count(item["caption"]) == len(rows[item["sample_id"]]["boxes"]), item


def test_a_dataset_without_the_relative_optical_file_has_an_empty_optical_route(sar_uncaptioned, tmp_path):
    bare, _ = sar_uncaptioned
    report = caption_dataset(bare, tmp_path / "out", CaptionConfig(optical_captions="optical_captions.json"))
    assert "optical" not in report.by_route
    assert report.optical_route.startswith(f"none ({bare} has no optical_captions.json")


@pytest.mark.real_data
def test_hrsid_captions_state_the_right_count_and_regions(shared_data, tmp_path):
    source = shared_data / "hrsid_samples"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    listing = json.loads((source / "ship_boxes.json").read_text())
    ingest("hrsid-boxes", source, tmp_path / "hrsid")
    report = caption_dataset(tmp_path / "hrsid", tmp_path / "captioned")
    assert report.captioned == len(listing)
    rows = {r["sample_id"]: r for r in read_manifest(tmp_path / "captioned").to_dict("records")}
    for chip, entries in listing.items():
        row = rows[chip.rsplit(".", 1)[0]]
        boxes = [(e["x_min"], e["y_min"], e["x_max"] + 1, e["y_max"] + 1) for e in entries]
        cells = regions_with_centres(boxes, row["width"], row["height"])
        assert len(row["captions"]) >= 3
        for caption in row["captions"]:
            assert stated_count(caption) == len(entries), caption
            for phrase, cell in _REGIONS.items():
                if re.search(rf"\b{phrase}\b", caption):
                    assert cell in cells, (caption, phrase)


@pytest.mark.real_data
def test_hrsid_tile_captions_state_the_tile_box_count_and_regions(shared_data, tmp_path):
    source = shared_data / "hrsid_samples"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    ingest("hrsid-tiles", source, tmp_path / "tiles")
    report = caption_dataset(tmp_path / "tiles", tmp_path / "captioned")
    rows = read_manifest(tmp_path / "captioned").to_dict("records")
    assert report.captioned == len(rows) == 48 and report.uncaptioned == 0
    assert any(not row["boxes"] for row in rows) and any(len(row["boxes"]) > 10 for row in rows)
    for row in rows:
        boxes = [(b["x_min"], b["y_min"], b["x_max"], b["y_max"]) for b in row["boxes"]]
        cells = regions_with_centres(boxes, row["width"], row["height"])
        assert len(row["captions"]) >= 3, row["sample_id"]
        for caption in row["captions"]:
            assert stated_count(caption) == len(boxes), (row["sample_id"], caption)
            for phrase, cell in _REGIONS.items():
                if re.search(rf"\b{phrase}\b", caption):
                    assert cell in cells, (row["sample_id"], caption, phrase)
