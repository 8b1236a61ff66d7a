"""Dataset validation: every kind of bad input is quarantined with its row, rule and value."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rsvl.config import CaptionRules
from rsvl.data.media import decode_caption
from rsvl.data.store import META_FILE, DatasetWriter, read_quarantine
from rsvl.data.validate import REPORT_FILE, validate_dataset, validate_tree
from rsvl.errors import DataError, SchemaVersionError, ValidationFailed


def encoded_image(fmt: str = "PNG", size: int = 16, seed: int = 0) -> bytes:
    """Random-noise RGB image (noise keeps the encoded file long enough to truncate)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def write_dataset(out, rows: list[dict], kind: str = "classification"):
    """Write one sample per entry of ``rows``; ``media`` (bytes or CHW array) and ``name`` set the file."""
    with DatasetWriter(out, name="tiny", kind=kind, adapter="test", source="tests") as writer:
        for i, row in enumerate(rows):
            row = dict(row)
            media = row.pop("media", None)
            media = encoded_image(seed=i) if media is None else media
            name = row.pop("name", f"s{i}.png")
            if isinstance(media, np.ndarray):
                path = writer.write_array(media, name)
            else:
                path = writer.write_bytes(media, name)
            values = {"sample_id": f"s{i}", "split": "train", "modality": "optical", "image": path,
                      "bands": 3, "label": "grass"}
            values.update(row)
            writer.add_row(**values)
    return out


def validation_rows(dataset):
    quarantine = read_quarantine(dataset)
    return quarantine[quarantine["stage"] == "validate"].reset_index(drop=True)


def only_failure(dataset, rules: CaptionRules | None = None):
    """Validate and return the single quarantine record; the test fails if there is not exactly one."""
    report = validate_dataset(dataset, rules)
    records = validation_rows(dataset)
    assert len(records) == 1, records.to_dict("records")
    assert report.bad_rows == 1
    return records.iloc[0]


def test_clean_dataset_passes_with_nothing_quarantined(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{} for _ in range(4)])
    report = validate_dataset(dataset)
    assert report.passed and report.rows == 4 and report.bad_rows == 0 and report.by_rule == {}
    assert validation_rows(dataset).empty
    saved = json.loads((dataset / REPORT_FILE).read_text())
    assert saved["passed"] is True and saved["rows"] == 4


def test_zero_byte_image(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {"media": b""}])
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_in_set[image_decodes]"
    assert record["where"] == "manifest.parquet row 1 (sample_id 's1')"
    assert "empty (0 bytes)" in record["reason"] and "s1.png" in record["reason"]


def test_truncated_png(tmp_path):
    data = encoded_image("PNG", size=32)
    dataset = write_dataset(tmp_path / "ds", [{"media": data[: len(data) // 2]}, {}])
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_in_set[image_decodes]"
    assert record["sample_id"] == "s0" and "truncated" in record["reason"]


def test_truncated_jpeg(tmp_path):
    data = encoded_image("JPEG", size=32)
    dataset = write_dataset(tmp_path / "ds", [{}, {"media": data[: len(data) // 2], "name": "s1.jpg"}])
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_in_set[image_decodes]"
    assert record["sample_id"] == "s1" and "s1.jpg" in record["reason"]


def test_text_file_with_png_suffix(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {"media": b"sample_id,label\ns1,grass\n"}])
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_in_set[image_decodes]"
    assert "cannot decode image" in record["reason"]


def test_missing_file(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {}, {}])
    (dataset / "media" / "s2.png").unlink()
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_in_set[image_exists]"
    assert record["where"] == "manifest.parquet row 2 (sample_id 's2')"
    assert "does not exist" in record["reason"]


@pytest.mark.parametrize("bad_value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_values_in_array(tmp_path, bad_value):
    array = np.ones((4, 8, 8), dtype=np.float32) * 500
    array[2, 3, 3] = bad_value
    array[1, 0, 0] = bad_value
    rows = [{"media": np.ones((4, 8, 8), np.float32), "modality": "multispectral", "bands": 4, "name": "s0"},
            {"media": array, "modality": "multispectral", "bands": 4, "name": "s1"}]
    dataset = write_dataset(tmp_path / "ds", rows)
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_between[image_nonfinite]"
    assert "holds 2 NaN or infinite values" in record["reason"] and "s1.npy" in record["reason"]


def test_band_count_differs_from_bands_column(tmp_path):
    rows = [{"media": np.zeros((12, 4, 4), np.float32), "modality": "multispectral", "bands": 12, "name": "s0"},
            {"media": np.zeros((11, 4, 4), np.float32), "modality": "multispectral", "bands": 12, "name": "s1"}]
    dataset = write_dataset(tmp_path / "ds", rows)
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_pair_values_to_be_equal[raster_bands=bands]"
    assert record["reason"] == "bands column says 12 but the raster has 11"


def test_reflectance_above_range(tmp_path):
    s2 = np.full((3, 4, 4), 1200, np.float32)
    s2[0, 0, 0] = 65535
    rows = [{"media": s2, "modality": "multispectral", "name": "s0"},
            {"media": np.full((3, 4, 4), 1200, np.float32), "modality": "multispectral", "name": "s1"}]
    dataset = write_dataset(tmp_path / "ds", rows)
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_between[image_max]"
    assert "65535" in record["reason"] and "S2 reflectance" in record["reason"]


def _multisensor(out, rows: list[dict]):
    """One row per dict: ``s1``/``s2`` flags say which arrays the row holds."""
    with DatasetWriter(out, name="ms", kind="multisensor", adapter="test", source="tests") as writer:
        for i, row in enumerate(rows):
            media = {sensor: writer.write_array(np.full((bands, 4, 4), fill, np.float32), f"{sensor}_{i}")
                     for sensor, bands, fill in (("s1", 2, -12.0), ("s2", 12, 900.0)) if row[sensor]}
            writer.add_row(sample_id=f"m{i}", split="train", modality=row["modality"], captions=["water"],
                           bands=12 if "s2" in media else 2, width=4, height=4, **media)
    return out


def test_multisensor_rows_need_both_sensors_when_paired_and_their_own_sensor_when_single(tmp_path):
    rows = [{"modality": "s1s2", "s1": True, "s2": True}, {"modality": "sar", "s1": True, "s2": False},
            {"modality": "multispectral", "s1": False, "s2": True}, {"modality": "s1s2", "s1": True, "s2": False},
            {"modality": "sar", "s1": False, "s2": True}, {"modality": "multispectral", "s1": True, "s2": False}]
    dataset = _multisensor(tmp_path / "ds", rows)
    report = validate_dataset(dataset, max_bad_fraction=1.0)
    records = validation_rows(dataset).set_index("sample_id")
    assert report.bad_rows == 3 and sorted(records.index) == ["m3", "m4", "m5"]
    assert records.loc["m3", "rule"] == "expect_column_values_to_be_between[media_count]"
    assert "a multisensor s1s2 sample needs at least 2" in records.loc["m3", "reason"]
    assert records.loc["m4", "reason"] == "s1 is missing, a multisensor sar sample needs one"
    assert records.loc["m5", "reason"] == "s2 is missing, a multisensor multispectral sample needs one"


def captioned(captions: list[list[str]]) -> list[dict]:
    return [{"captions": c} for c in captions]


def test_empty_caption(tmp_path):
    dataset = write_dataset(tmp_path / "ds", captioned([["a green field"], ["a river", ""]]), kind="captioning")
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_between[caption_blank]"
    assert record["sample_id"] == "s1" and "1 of 2 captions are empty or whitespace" in record["reason"]


def test_whitespace_only_caption(tmp_path):
    dataset = write_dataset(tmp_path / "ds", captioned([[" \t  "], ["a river"]]), kind="captioning")
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_between[caption_blank]"
    assert record["sample_id"] == "s0" and "' \\t  '" in record["reason"]


def test_caption_with_too_many_words(tmp_path):
    long_text = " ".join(["building"] * 130)
    dataset = write_dataset(tmp_path / "ds", captioned([["a river"], ["a road", long_text]]), kind="captioning")
    record = only_failure(dataset, CaptionRules(max_words=120, max_chars=5000))
    assert record["rule"] == "expect_column_values_to_be_between[caption_max_words]"
    assert "caption 2" in record["reason"] and "130 words, more than max_words=120" in record["reason"]


def test_caption_with_too_many_characters(tmp_path):
    dataset = write_dataset(tmp_path / "ds", captioned([["a" * 61], ["short"]]), kind="captioning")
    record = only_failure(dataset, CaptionRules(max_chars=60))
    assert record["rule"] == "expect_column_values_to_be_between[caption_max_chars]"
    assert "61 characters, more than max_chars=60" in record["reason"]


def test_captioning_sample_without_captions(tmp_path):
    dataset = write_dataset(tmp_path / "ds", captioned([["a river"], []]), kind="captioning")
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_between[caption_count]"


def test_duplicate_ids_in_manifest(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {}, {}])
    table = pq.read_table(dataset / "manifest.parquet")
    rows = table.to_pylist()
    rows[2]["sample_id"] = "s0"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), dataset / "manifest.parquet")
    report = validate_dataset(dataset)
    records = validation_rows(dataset)
    assert set(records["rule"]) == {"expect_column_values_to_be_unique[sample_id]"}
    assert sorted(records["where"]) == ["manifest.parquet row 0 (sample_id 's0')",
                                        "manifest.parquet row 2 (sample_id 's0')"]
    assert report.bad_rows == 2


def test_writer_quarantines_duplicate_ids_and_validation_keeps_them(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {"sample_id": "s0"}, {}])
    report = validate_dataset(dataset)
    quarantine = read_quarantine(dataset)
    assert report.rows == 2 and report.bad_rows == 0
    assert quarantine[["stage", "rule", "sample_id"]].to_dict("records") == [
        {"stage": "ingest", "rule": "unique_id", "sample_id": "s0"}]


def test_unknown_split(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {"split": "holdout"}])
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_in_set[split]"
    assert record["reason"] == "split 'holdout' is not one of train, val, test"


def test_box_outside_image_and_bad_geo_time(tmp_path):
    rows = [{"boxes": [{"x_min": 2.0, "y_min": 2.0, "x_max": 20.0, "y_max": 5.0, "label": "ship"}]},
            {"lat": 95.0, "lon": 10.0, "timestamp": "2017-06-13T10:10:31Z"},
            {"lat": 45.0, "lon": 10.0, "timestamp": "13/06/2017"}]
    dataset = write_dataset(tmp_path / "ds", rows, kind="detection")
    validate_dataset(dataset)
    by_sample = dict(zip(validation_rows(dataset)["sample_id"], validation_rows(dataset)["rule"]))
    assert by_sample == {"s0": "expect_column_values_to_be_between[boxes_bad]",
                         "s1": "expect_column_values_to_be_between[lat]",
                         "s2": "expect_column_values_to_be_in_set[timestamp_ok]"}


def test_vqa_pair_with_blank_answer_but_withheld_answer_is_fine(tmp_path):
    rows = [{"vqa": [{"question": "Is there a road?", "answer": "yes", "type": "presence"}]},
            {"vqa": [{"question": "How many ships?", "answer": " ", "type": "count"}]},
            {"vqa": [{"question": "Is there water?", "answer": None, "type": "presence"}]}]
    dataset = write_dataset(tmp_path / "ds", rows, kind="vqa")
    record = only_failure(dataset)
    assert record["rule"] == "expect_column_values_to_be_between[vqa_blank]" and record["sample_id"] == "s1"


def test_manifest_without_a_required_column_is_rejected(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {}])
    pq.write_table(pq.read_table(dataset / "manifest.parquet").drop_columns(["label"]), dataset / "manifest.parquet")
    with pytest.raises(DataError, match=r"manifest\.parquet: a classification manifest needs columns \['label'\]"):
        validate_dataset(dataset)


def test_newer_schema_version_is_refused(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}])
    meta = json.loads((dataset / META_FILE).read_text())
    meta["schema_version"] = 99
    (dataset / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(SchemaVersionError, match="schema version 99") as caught:
        validate_dataset(dataset)
    assert str(dataset / META_FILE) in str(caught.value)


def two_bad_of_ten(tmp_path):
    dataset = write_dataset(tmp_path / "root" / "ds", [{"split": "holdout"} if i == 3 else {} for i in range(10)])
    (dataset / "media" / "s7.png").unlink()
    return dataset


def test_bad_share_over_limit_raises_naming_count_rules_and_quarantine(tmp_path):
    dataset = two_bad_of_ten(tmp_path)
    with pytest.raises(ValidationFailed) as caught:
        validate_tree(tmp_path / "root", max_bad_fraction=0.1)
    message = str(caught.value)
    assert "2 of 10 rows (20.0%)" in message
    assert "expect_column_values_to_be_in_set[split]: 1" in message
    assert "expect_column_values_to_be_in_set[image_exists]: 1" in message
    assert str(dataset / "quarantine.parquet") in message
    assert len(validation_rows(dataset)) == 2
    assert json.loads((dataset / REPORT_FILE).read_text())["passed"] is False


def test_bad_share_within_limit_passes_and_still_quarantines(tmp_path):
    dataset = two_bad_of_ten(tmp_path)
    (report,) = validate_tree(tmp_path / "root", max_bad_fraction=0.5)
    assert report.passed and report.bad_rows == 2 and report.bad_fraction == pytest.approx(0.2)
    assert sorted(validation_rows(dataset)["sample_id"]) == ["s3", "s7"]


def test_rerun_replaces_earlier_validation_records(tmp_path):
    dataset = write_dataset(tmp_path / "ds", [{}, {"split": "holdout"}, {"sample_id": "s0"}])
    validate_dataset(dataset)
    first = read_quarantine(dataset)
    validate_dataset(dataset)
    second = read_quarantine(dataset)
    assert second.equals(first)
    assert sorted(second["stage"]) == ["ingest", "validate"]


@pytest.mark.parametrize("encoding", ["gb18030", "latin-1"])
def test_non_utf8_caption_bytes_are_refused_with_their_location(encoding):
    raw = "水体旁边的农田 café".encode(encoding, errors="replace")
    with pytest.raises(DataError, match=r"captions\.csv:7: caption is not valid UTF-8"):
        decode_caption(raw, "captions.csv:7")


def test_real_class_folder_dataset_validates_clean(shared_data, tmp_path):
    from rsvl.data.adapters import ingest

    ingest("class-folder", shared_data / "rsscn7", tmp_path / "rsscn7")
    report = validate_dataset(tmp_path / "rsscn7", max_bad_fraction=0.0)
    assert report.rows == 2380 and report.passed, report.summary()
