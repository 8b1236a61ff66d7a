"""Caption-format and VQA adapters on the real caption text, caption sample and VQA folders.

Real sources are read in place; where a source ships without images (the caption tables), the
test writes tiny placeholder images into tmp_path under the basenames the source names, and
links the real text files beside them. Expected values are read from the sources themselves.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsvl.data.adapters import formats, ingest
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import read_files, read_manifest, read_meta, read_quarantine, sha256_file
from rsvl.errors import DataError

CAPTION_FORMATS = {"karpathy", "caption-csv", "amfmn", "captions-json", "rsvqa"}


def norm(text: str) -> str:
    return " ".join(text.split())


def write_placeholders(folder: Path, names) -> None:
    """Write a 4x4 image per name, in the format its suffix says (TIFF, JPEG, PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(sorted(set(names))):
        Image.new("RGB", (4, 4), (number % 256, 40, 80)).save(folder / name)


def link(target: Path, link_path: Path) -> Path:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target)
    return link_path


def csv_truth(path: Path) -> dict[str, list[str]]:
    """Captions per image basename, in file order, read with the csv module."""
    truth: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            truth[record["filename"].rsplit("/", 1)[-1]].append(norm(record["title"]))
    return truth


def test_formats_are_registered():
    assert CAPTION_FORMATS <= set(formats())


# --- captions-json: the real UCM/Sydney sample, images included ------------------------------


@pytest.mark.real_data
def test_captions_json_real_sample_round_trip(shared_data, tmp_path):
    source = shared_data / "ucm_sydney_captions_sample"
    expected = json.loads((source / "captions.json").read_text(encoding="utf-8"))
    report = ingest("captions-json", source, tmp_path / "ds")
    assert (report.rows, report.quarantined, report.files) == (6, 0, 6)
    frame = read_manifest(tmp_path / "ds").set_index("sample_id")
    assert read_meta(tmp_path / "ds")["kind"] == "captioning"
    for index, (rel, entry) in enumerate(expected.items()):
        row = frame.loc[rel.rsplit(".", 1)[0]]
        assert row["captions"] == [norm(c) for c in entry["captions"]] and len(row["captions"]) == 5
        assert (row["split"], row["source"]) == (entry["split"], f"captions.json#{index}")
        assert [row["width"], row["height"], row["bands"]] == [*entry["size"], len(entry["mode"])]
    hashes = read_files(tmp_path / "ds").set_index("source_path")["sha256"]
    for rel in expected:
        assert hashes[str(source / rel)] == sha256_file(source / rel)
    dataset = ManifestDataset(tmp_path / "ds")
    for index in range(len(dataset)):
        sample = dataset[index]
        rel = next(r for r in expected if r.rsplit(".", 1)[0] == sample["sample_id"])
        with Image.open(source / rel) as original:
            pixels = np.asarray(original.convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(sample["image"].numpy(), pixels)


@pytest.mark.real_data
def test_captions_json_quarantines_each_bad_entry(shared_data, tmp_path):
    real = shared_data / "ucm_sydney_captions_sample" / "UCM_captions_imgs" / "1.tif"
    source = tmp_path / "src"
    link(real, source / "imgs" / "good.tif")
    link(real, source / "imgs" / "small.tif")
    entries = {
        "imgs/good.tif": {"size": [256, 256], "split": "train", "captions": ["a  farm", "", 7]},
        "imgs/missing.tif": {"split": "val", "captions": ["a road"]},
        "imgs/small.tif": {"size": [100, 100], "split": "test", "captions": ["a farm"]},
        "imgs/good2.tif": {"split": "holdout", "captions": ["a farm"]},
        "../outside.tif": {"split": "train", "captions": ["a farm"]},
        "imgs/blank.tif": {"split": "train", "captions": ["   "]},
    }
    (source / "captions.json").write_text(json.dumps(entries))
    report = ingest("captions-json", source, tmp_path / "ds")
    rules = read_quarantine(tmp_path / "ds").set_index("where")["rule"].to_dict()
    assert rules == {
        "captions.json#0.captions[1]": "caption_nonempty",
        "captions.json#0.captions[2]": "record_fields",
        "captions.json#1": "file_exists",
        "captions.json#2": "image_size",
        "captions.json#3": "split_value",
        "captions.json#4": "record_fields",
        "captions.json#5.captions[0]": "caption_nonempty",
        "captions.json#5": "captions_nonempty",
    }
    assert report.rows == 1 and report.quarantined == len(rules)
    assert read_manifest(tmp_path / "ds").loc[0, "captions"] == ["a farm"]


# --- karpathy: a Karpathy JSON built from the real sample captions and images ----------------


def karpathy_from_sample(sample: Path) -> dict:
    entries = json.loads((sample / "captions.json").read_text(encoding="utf-8"))
    images = []
    for rel, entry in entries.items():
        folder, filename = rel.split("/")
        images.append({"filepath": folder, "filename": filename, "split": entry["split"], "imgid": len(images),
                       "sentences": [{"raw": c, "tokens": c.lower().split()} for c in entry["captions"]]})
    return {"dataset": "ucm_sydney", "images": images}


@pytest.mark.real_data
@pytest.mark.parametrize("images_under", ["", "images"])
def test_karpathy_real_captions_round_trip(shared_data, tmp_path, images_under):
    sample = shared_data / "ucm_sydney_captions_sample"
    document = karpathy_from_sample(sample)
    source = tmp_path / "src"
    for folder in ("UCM_captions_imgs", "Sydney_captions_imgs"):
        link(sample / folder, source / images_under / folder)
    (source / "dataset_sample.json").write_text(json.dumps(document), encoding="utf-8")
    (source / "other.json").write_text("{}")
    report = ingest("karpathy", source, tmp_path / "ds")
    assert (report.rows, report.quarantined) == (6, 0)
    assert read_meta(tmp_path / "ds")["source_encoding"] == "utf-8"
    frame = read_manifest(tmp_path / "ds")
    assert list(frame["sample_id"]) == [f"{e['filepath']}/{e['filename'][:-4]}" for e in document["images"]]
    for index, (entry, row) in enumerate(zip(document["images"], frame.itertuples())):
        assert row.captions == [norm(s["raw"]) for s in entry["sentences"]]
        assert (row.split, row.source) == (entry["split"], f"dataset_sample.json#{index}")
        with Image.open(sample / entry["filepath"] / entry["filename"]) as original:
            assert (row.width, row.height) == original.size


@pytest.mark.real_data
def test_karpathy_gb18030_file_is_detected_and_recorded(shared_data, tmp_path):
    sample = shared_data / "ucm_sydney_captions_sample"
    document = karpathy_from_sample(sample)
    chinese = "港口旁边有一大片绿色农田"
    document["images"][0]["sentences"].append({"raw": chinese})
    source = tmp_path / "src"
    for folder in ("UCM_captions_imgs", "Sydney_captions_imgs"):
        link(sample / folder, source / folder)
    data = json.dumps(document, ensure_ascii=False).encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    (source / "dataset_rsicd.json").write_bytes(data)
    report = ingest("karpathy", source / "dataset_rsicd.json", tmp_path / "ds")
    assert report.rows == 6
    meta = read_meta(tmp_path / "ds")
    assert (meta["source_encoding"], meta["name"]) == ("gb18030", "rsicd")
    first = read_manifest(tmp_path / "ds").iloc[0]
    assert first["captions"][-1] == chinese and len(first["captions"]) == 6


@pytest.mark.real_data
def test_karpathy_splits_and_missing_images(shared_data, tmp_path):
    sample = shared_data / "ucm_sydney_captions_sample"
    link(sample / "UCM_captions_imgs", tmp_path / "src" / "UCM_captions_imgs")
    sentences = [{"raw": "There is a piece of farmland"}]
    document = {"images": [
        {"filepath": "UCM_captions_imgs", "filename": "1.tif", "split": "restval", "sentences": sentences},
        {"filepath": "UCM_captions_imgs", "filename": "2.tif", "split": "holdout", "sentences": sentences},
        {"filepath": "UCM_captions_imgs", "filename": "9.tif", "split": "test", "sentences": sentences},
        {"filepath": "UCM_captions_imgs", "filename": "1.tif", "split": "train", "sentences": sentences},
        {"filepath": "UCM_captions_imgs", "filename": "3.tif", "split": "val", "sentences": [{"raw": " "}]},
        {"filename": "3.tif", "sentences": sentences},
    ]}
    (tmp_path / "src" / "dataset.json").write_text(json.dumps(document))
    report = ingest("karpathy", tmp_path / "src", tmp_path / "ds")
    rules = read_quarantine(tmp_path / "ds").set_index("where")["rule"].to_dict()
    assert rules == {"dataset.json#1": "split_value", "dataset.json#2": "file_exists",
                     "dataset.json#3": "unique_id", "dataset.json#4.sentences[0]": "caption_nonempty",
                     "dataset.json#4": "captions_nonempty", "dataset.json#5": "record_fields"}
    frame = read_manifest(tmp_path / "ds")
    assert report.rows == 1 and frame.loc[0, ["sample_id", "split"]].tolist() == ["UCM_captions_imgs/1", "train"]


def test_karpathy_undecodable_or_malformed_file_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "dataset.json").write_bytes(b'{"images": [{"filename": "\xff\xfe.jpg"}]}')
    with pytest.raises(DataError, match=r"dataset\.json: text is not valid utf-8 or gb18030"):
        ingest("karpathy", tmp_path / "a", tmp_path / "ds")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dataset.json").write_text('{"annotations": []}')
    with pytest.raises(DataError, match="'images' list"):
        ingest("karpathy", tmp_path / "b", tmp_path / "ds")
    (tmp_path / "b" / "dataset_2.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="several dataset"):
        ingest("karpathy", tmp_path / "b", tmp_path / "ds")



def test_karpathy_utf8_file_with_a_stray_latin1_byte_is_refused_not_read_as_gb18030(tmp_path):
    # GB18030 decodes these bytes without complaint: "forêt" would become mojibake
    data = json.dumps({"images": [{"filename": "a.png", "split": "train",
                                   "sentences": [{"raw": "une forêt près du café"}, {"raw": "prés"}]}]},
                      ensure_ascii=False).encode().replace("prés".encode(), b"pr\xe9s")
    data.decode("gb18030")
    (tmp_path / "dataset.json").write_bytes(data)
    with pytest.raises(DataError, match=r"dataset\.json: text is UTF-8 but for the bytes at \d+ \(invalid"):
        ingest("karpathy", tmp_path / "dataset.json", tmp_path / "ds")


def test_captions_with_control_characters_are_quarantined(tmp_path):
    write_placeholders(tmp_path / "src" / "images", ["a.png", "b.png", "c.png"])
    (tmp_path / "src" / "caps.csv").write_bytes(
        b"filename,title,split\n/x/a.png,a red \x1b[31mroof,train\n/x/b.png,a\x00road,train\n"
        b"/x/c.png,a\ttabbed  road,train\n")
    report = ingest("caption-csv", tmp_path / "src", tmp_path / "ds")
    quarantine = read_quarantine(tmp_path / "ds").set_index("where")
    assert quarantine["rule"].to_dict() == {"caps.csv:2": "caption_printable", "caps.csv:3": "caption_printable"}
    assert "'\\x1b'" in quarantine.loc["caps.csv:2", "reason"]
    assert report.rows == 1 and read_manifest(tmp_path / "ds")["captions"].tolist() == [["a tabbed road"]]

# --- caption-csv: the real iEBAKER test tables ----------------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize(("table", "images", "captions"), [("rsitmd_test.csv", 452, 2260),
                                                            ("rsicd_test.csv", 1093, 5465)])
def test_caption_csv_real_table_with_placeholder_images(shared_data, tmp_path, table, images, captions):
    real = shared_data / "captions_text" / "iEBAKER_test_csv" / table
    truth = csv_truth(real)
    assert (len(truth), sum(map(len, truth.values()))) == (images, captions)
    source = tmp_path / "src"
    link(real, source / table)
    write_placeholders(source / "images", truth)
    report = ingest("caption-csv", source, tmp_path / "ds")
    assert (report.rows, report.quarantined, report.files) == (images, 0, images)
    frame = read_manifest(tmp_path / "ds")
    assert set(frame["split"]) == {"test"}
    assert sum(frame["captions"].map(len)) == captions
    assert {row.sample_id: row.captions for row in frame.itertuples()} == {
        name.rsplit(".", 1)[0]: caps for name, caps in truth.items()}
    assert frame.loc[0, "source"] == f"{table}:2-6"
    assert (frame.loc[0, "width"], frame.loc[0, "height"], frame.loc[0, "bands"]) == (4, 4, 3)


@pytest.mark.real_data
def test_caption_csv_without_any_image_says_the_images_are_absent(shared_data, tmp_path):
    real = shared_data / "captions_text" / "iEBAKER_test_csv" / "rsicd_test.csv"
    truth = csv_truth(real)
    with open(real, newline="", encoding="utf-8") as handle:
        first = next(csv.DictReader(handle))["filename"]
    with pytest.raises(DataError) as caught:
        ingest("caption-csv", real, tmp_path / "ds")
    message = str(caught.value)
    assert f"none of the {len(truth)} images named by its {sum(map(len, truth.values()))} rows" in message
    assert f"first missing: {first!r} at line 2" in message and "rule: images_present" in message
    assert f"rsvl data text-stats {real}" in message
    assert not (tmp_path / "ds").exists()


def test_caption_csv_refuses_a_table_whose_images_are_all_absent(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "caps.csv").write_text(
        "filename,title\n,no file\n/home/u/a.jpg,a roof\n/home/u/a.jpg,a red roof\nC:\\u\\b.jpg,a lake\n")
    with pytest.raises(DataError, match=(
            r"caps\.csv: images absent: none of the 2 images named by its 4 rows is in .*src "
            r"\(first missing: '/home/u/a\.jpg' at line 3, looked up as .*src/a\.jpg\).*images_present.*"
            r"Put the images, by basename, in .*src/images \(or beside the CSV\)")):
        ingest("caption-csv", tmp_path / "src", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    # one image present: the others are quarantined row by row, as before
    write_placeholders(tmp_path / "src", ["b.jpg"])
    report = ingest("caption-csv", tmp_path / "src", tmp_path / "ds")
    assert (report.rows, report.by_rule) == (1, {"record_fields": 1, "file_exists": 2})


def test_caption_csv_bad_bytes_blank_titles_and_splits(tmp_path):
    write_placeholders(tmp_path / "src" / "images", ["a.png", "b.png"])
    (tmp_path / "src" / "caps.csv").write_bytes(
        b"filename,title,split\n"
        b"/x/a.png,a red roof,train\n"
        b"/x/a.png,caf\xe9 by the road,train\n"
        b"C:\\y\\a.png,  ,train\n"
        b"/x/a.png,a   roof,val\n"
        b"/x/b.png,\"a field, green\",holdout\n"
        b"/x/c.png,a lake,test\n"
    )
    report = ingest("caption-csv", tmp_path / "src", tmp_path / "ds")
    quarantine = read_quarantine(tmp_path / "ds").set_index("where")
    assert quarantine["rule"].to_dict() == {"caps.csv:3": "caption_utf8", "caps.csv:4": "caption_nonempty",
                                            "caps.csv:5": "split_consistent", "caps.csv:6": "split_value",
                                            "caps.csv:7": "file_exists"}
    assert "not valid UTF-8" in quarantine.loc["caps.csv:3", "reason"]
    frame = read_manifest(tmp_path / "ds")
    assert report.rows == 1 and frame.loc[0, ["sample_id", "split", "source"]].tolist() == ["a", "train", "caps.csv:2"]
    assert frame.loc[0, "captions"] == ["a red roof"]


def test_caption_csv_needs_its_columns(tmp_path):
    (tmp_path / "caps.csv").write_text("image,caption\na.png,x\n")
    with pytest.raises(DataError, match=r"caps\.csv: header .* lacks the columns \['filename', 'title'\]"):
        ingest("caption-csv", tmp_path / "caps.csv", tmp_path / "ds")


# --- amfmn: the real *_precomp folders ------------------------------------------------------


def read_text_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.real_data
def test_amfmn_rsitmd_test_split_with_placeholder_images(shared_data, tmp_path):
    real = shared_data / "captions_text" / "AMFMN_precomp" / "rsitmd_precomp"
    source = tmp_path / "rsitmd_precomp"
    for name in ("test_caps.txt", "test_filename.txt"):
        link(real / name, source / name)
    captions, names = read_text_lines(real / "test_caps.txt"), read_text_lines(real / "test_filename.txt")
    write_placeholders(source / "images", names)
    report = ingest("amfmn", source, tmp_path / "ds")
    assert (report.rows, report.quarantined) == (452, 0)
    frame = read_manifest(tmp_path / "ds")
    assert read_meta(tmp_path / "ds")["name"] == "rsitmd"
    truth: dict[str, list[str]] = defaultdict(list)
    for caption, name in zip(captions, names, strict=True):
        truth[name.rsplit(".", 1)[0]].append(norm(caption))
    assert {row.sample_id: row.captions for row in frame.itertuples()} == truth
    assert sum(frame["captions"].map(len)) == 2260 and set(frame["split"]) == {"test"}
    assert frame.loc[0, "source"] == "test_caps.txt:1-5"


@pytest.mark.real_data
def test_amfmn_sydney_five_captions_per_train_name(shared_data, tmp_path):
    real = shared_data / "captions_text" / "AMFMN_precomp" / "sydney_precomp"
    source = tmp_path / "sydney_precomp"
    for path in real.iterdir():
        link(path, source / path.name)
    train_names = read_text_lines(real / "train_filename.txt")
    test_names = read_text_lines(real / "test_filename.txt")
    write_placeholders(source / "images", train_names + test_names)
    report = ingest("amfmn", source, tmp_path / "ds")
    assert (report.rows, report.quarantined) == (len(train_names) + len(set(test_names)), 0)
    assert read_meta(tmp_path / "ds")["ignored_files"] == sorted(p.name for p in real.glob("*_verify.txt"))
    frame = read_manifest(tmp_path / "ds").set_index("sample_id")
    assert Counter(frame["split"]) == {"train": 497, "test": 58}
    train_caps = read_text_lines(real / "train_caps.txt")
    for index in (0, 123, len(train_names) - 1):
        row = frame.loc[train_names[index].rsplit(".", 1)[0]]
        assert row["captions"] == [norm(c) for c in train_caps[5 * index:5 * index + 5]]
        assert row["source"] == f"train_caps.txt:{5 * index + 1}-{5 * index + 5}"


@pytest.mark.real_data
def test_amfmn_rsitmd_text_only_counts_blank_lines_and_missing_images(shared_data, tmp_path):
    real = shared_data / "captions_text" / "AMFMN_precomp" / "rsitmd_precomp"
    report = ingest("amfmn", real, tmp_path / "ds")
    lines = {split: read_text_lines(real / f"{split}_caps.txt") for split in ("train", "test")}
    blank = [f"train_caps.txt:{n}" for n, text in enumerate(lines["train"], start=1) if not text.strip()]
    assert blank, "the real RSITMD train captions hold blank lines"
    quarantine = read_quarantine(tmp_path / "ds")
    assert report.rows == 0 and report.quarantined == sum(map(len, lines.values()))
    assert sorted(quarantine.loc[quarantine["rule"] == "caption_nonempty", "where"]) == sorted(blank)
    assert report.by_rule == {"caption_nonempty": len(blank), "file_exists": report.quarantined - len(blank)}


def test_amfmn_mismatched_line_counts_name_both_files(tmp_path):
    (tmp_path / "test_caps.txt").write_text("a\nb\nc\nd\n")
    (tmp_path / "test_filename.txt").write_text("x.png\ny.png\nz.png\n")
    with pytest.raises(DataError, match=r"test_caps\.txt has 4 lines and .*test_filename\.txt has 3"):
        ingest("amfmn", tmp_path, tmp_path / "ds")
    (tmp_path / "test_filename.txt").unlink()
    with pytest.raises(DataError, match=r"test_filename\.txt: missing; it pairs with .*test_caps\.txt"):
        ingest("amfmn", tmp_path, tmp_path / "ds")


def test_amfmn_non_utf8_caption_is_quarantined(tmp_path):
    write_placeholders(tmp_path / "src" / "images", ["1.tif"])
    (tmp_path / "src" / "val_caps.txt").write_bytes(b"a dense forest .\r\nb\xe2\x28ad caption\r\n")
    (tmp_path / "src" / "val_filename.txt").write_bytes(b"1.tif\r\n1.tif\r\n")
    report = ingest("amfmn", tmp_path / "src", tmp_path / "ds")
    quarantine = read_quarantine(tmp_path / "ds")
    assert quarantine[["where", "rule", "sample_id"]].values.tolist() == [["val_caps.txt:2", "caption_utf8", "1"]]
    frame = read_manifest(tmp_path / "ds")
    assert report.rows == 1 and frame.loc[0, ["split", "captions"]].tolist() == ["val", ["a dense forest ."]]


# --- rsvqa: RSVQA-LR, RSVQA-HR and HRVQA as cut ---------------------------------------------


def rsvqa_truth(folder: Path) -> dict[str, tuple[str, list[dict]]]:
    """Image id -> (questions file, QA list) from the split files, read directly."""
    truth = {}
    for questions_path in sorted(folder.glob("*_questions.json")):
        stem = questions_path.name.removesuffix("_questions.json")
        answers = {a["question_id"]: a["answer"] for a in
                   json.loads((folder / f"{stem}_answers.json").read_text())["answers"]}
        for q in json.loads(questions_path.read_text())["questions"]:
            qa = {"question": norm(q["question"]), "answer": answers[q["id"]], "type": q["type"]}
            truth.setdefault(str(q["img_id"]), (stem, []))[1].append(qa)
    return truth


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["RSVQA-LR", "RSVQA-HR"])
def test_rsvqa_real_folders_round_trip(shared_data, tmp_path, name):
    folder = shared_data / "rsvqa" / name
    truth = rsvqa_truth(folder)
    on_disk = {p.stem for p in folder.rglob("*") if p.suffix in {".tif", ".png"}}
    report = ingest("rsvqa", folder, tmp_path / "ds")
    frame = read_manifest(tmp_path / "ds")
    assert set(frame["sample_id"]) == on_disk == set(truth) and report.rows == 12
    assert report.quarantined == 0
    assert sum(frame["vqa"].map(len)) == sum(len(qas) for _, qas in truth.values())
    assert read_meta(tmp_path / "ds")["questions_ingested"] == sum(frame["vqa"].map(len))
    for row in frame.itertuples():
        stem, qas = truth[row.sample_id]
        assert row.vqa == qas
        assert row.source.startswith(f"{stem}_images.json#") and row.split in stem
    assert set(frame["split"]) == {"train", "val", "test"}


@pytest.mark.real_data
def test_hrvqa_real_folder_keeps_withheld_test_answers_null(shared_data, tmp_path):
    folder = shared_data / "rsvqa" / "HRVQA"
    report = ingest("rsvqa", folder, tmp_path / "ds")
    frame = read_manifest(tmp_path / "ds").set_index("sample_id")
    assert (report.rows, report.quarantined) == (15, 0)
    assert read_meta(tmp_path / "ds")["layout"] == "hrvqa"
    for split in ("train", "val", "test"):
        questions = json.loads((folder / "jsons" / f"{split}_question.json").read_text())["questions"]
        answer_path = folder / "jsons" / f"{split}_answer.json"
        answers = ({a["question_id"]: a["multiple_choice_answer"] for a in
                    json.loads(answer_path.read_text())["annotations"]} if answer_path.exists() else {})
        expected: dict[str, list[dict]] = defaultdict(list)
        for q in questions:
            expected[str(q["image_id"])].append({"question": norm(q["question"]),
                                                 "answer": answers.get(q["question_id"]),
                                                 "type": q["question_type"]})
        rows = frame[frame["split"] == split]
        assert rows["vqa"].to_dict() == expected
    assert all(qa["answer"] is None for qas in frame.loc[frame["split"] == "test", "vqa"] for qa in qas)
    assert all(qa["answer"] for qas in frame.loc[frame["split"] != "test", "vqa"] for qa in qas)


@pytest.mark.real_data
def test_rsvqa_questions_of_absent_images_are_quarantined(shared_data, tmp_path):
    folder = shared_data / "rsvqa" / "RSVQA-LR"
    source = tmp_path / "RSVQA-LR"
    for path in folder.glob("*.json"):
        link(path, source / path.name)
    kept = ["72", "491"]
    for stem in kept:
        link(folder / "Images_LR" / f"{stem}.tif", source / "Images_LR" / f"{stem}.tif")
    truth = rsvqa_truth(folder)
    report = ingest("rsvqa", source, tmp_path / "ds")
    lost = sum(len(qas) for image, (_, qas) in truth.items() if image not in kept)
    assert (report.rows, report.by_rule) == (2, {"image_absent": lost})
    quarantine = read_quarantine(tmp_path / "ds")
    assert set(quarantine["sample_id"]) == set(truth) - set(kept)
    assert quarantine["where"].str.fullmatch(r"LR_split_(train|val|test)_questions\.json#\d+").all()
    frame = read_manifest(tmp_path / "ds").set_index("sample_id")
    assert {image: frame.loc[image, "vqa"] for image in kept} == {image: truth[image][1] for image in kept}


def test_rsvqa_missing_answers_and_unlisted_images(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "1.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "2.png")
    (tmp_path / "X_split_val_images.json").write_text(json.dumps({"images": [
        {"id": 1, "active": True, "questions_ids": [10, 11]}, {"id": 2, "active": False},
        {"id": 3, "active": True, "questions_ids": []}]}))
    (tmp_path / "X_split_val_questions.json").write_text(json.dumps({"questions": [
        {"id": 10, "img_id": 1, "type": "count", "question": "How many  roads?", "active": True},
        {"id": 11, "img_id": 1, "type": "presence", "question": "Is a road present?", "active": True},
        {"id": 12, "img_id": 2, "type": "presence", "question": "Is a road present?", "active": True},
        {"id": 13, "img_id": 1, "type": "presence", "question": "Is it old?", "active": False},
        {"id": 14, "img_id": 1, "type": "presence", "active": True}]}))
    (tmp_path / "X_split_val_answers.json").write_text(json.dumps({"answers": [
        {"question_id": 10, "answer": 3, "active": True}, {"question_id": 12, "answer": "no", "active": True}]}))
    report = ingest("rsvqa", tmp_path, tmp_path / "ds")
    rules = read_quarantine(tmp_path / "ds").set_index("where")["rule"].to_dict()
    assert rules == {"X_split_val_questions.json#1": "answer_exists", "X_split_val_questions.json#2": "image_listed",
                     "X_split_val_questions.json#4": "record_fields", "X_split_val_images.json#2": "questions_present"}
    assert read_meta(tmp_path / "ds")["questions_inactive"] == 1
    frame = read_manifest(tmp_path / "ds")
    assert report.rows == 1
    assert frame.loc[0, "vqa"] == [{"question": "How many roads?", "answer": "3", "type": "count"}]


def test_rsvqa_folder_without_question_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no RSVQA \\*_questions.json files and no HRVQA jsons/ folder"):
        ingest("rsvqa", tmp_path, tmp_path / "ds")
