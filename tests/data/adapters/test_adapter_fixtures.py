"""Every adapter on its tiny committed fixture (``tests/fixtures/adapters/<format>/``), without ``../shared/data``.

Each fixture holds valid records of every kind its adapter reads and invalid ones it must
quarantine. Expected rows, splits, captions, boxes and arrays are read from the fixture files
themselves here (JSON, CSV, text, npz, HDF5 and image headers); the expected quarantine records are
the specification in ``tests/fixtures/adapters/generate.py`` (:data:`QUARANTINE`), which also made the files,
and which must reproduce them byte for byte.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rsvl.data.adapters import formats, ingest
from rsvl.data.store import read_files, read_manifest, read_meta, read_quarantine, sha256_file

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "adapters"  # the committed fixtures and their generator
GENERATOR = DATA / "generate.py"
MAX_FIXTURE_BYTES = 200_000


def _load_generator():
    spec = importlib.util.spec_from_file_location("rsvl_fixture_generator", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


def norm(text: str) -> str:
    """Collapse whitespace, as caption checks do."""
    return " ".join(text.split())


def hash_split(key: str) -> str:
    """The documented deterministic split: SHA-256 bucket of ``key``, 70/10/20 train/val/test."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 7 else "val" if bucket < 8 else "test"


def runs(name: str, separator: str, numbers: list[int]) -> str:
    """``name:2-3,5`` for the numbers 2, 3, 5."""
    parts: list[list[int]] = []
    for number in numbers:
        if parts and number == parts[-1][-1] + 1:
            parts[-1].append(number)
        else:
            parts.append([number])
    return name + separator + ",".join(str(p[0]) if len(p) == 1 else f"{p[0]}-{p[-1]}" for p in parts)


def header(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as image:
        return image.width, image.height, len(image.getbands())


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """Ingest a fixture once per module: ``ingested("coco")`` -> (source, dataset dir, report)."""
    done: dict[str, tuple[Path, Path, object]] = {}
    base = tmp_path_factory.mktemp("fixtures")

    def run(key: str):
        if key not in done:
            source, out = DATA / key, base / key.replace("/", "__")
            done[key] = (source, out, ingest(key.split("/")[0], source, out))
        return done[key]

    return run


def rows_by_id(out: Path) -> dict[str, dict]:
    return {row["sample_id"]: row for row in read_manifest(out).to_dict("records")}


def media_hashes(out: Path) -> dict[str, str]:
    """Source path -> sha256 of the media copied from it."""
    files = read_files(out)
    return dict(zip(files["source_path"], files["sha256"]))


def array(out: Path, rel: str) -> np.ndarray:
    return np.load(out / rel, allow_pickle=False)


# --- the fixtures as a whole ----------------------------------------------------------------------


def test_every_registered_format_has_a_fixture_and_a_quarantine_spec():
    assert set(GEN.FORMATS) == set(formats())
    assert {key.split("/")[0] for key in GEN.QUARANTINE} == set(formats())
    for key in GEN.QUARANTINE:
        assert (DATA / key).is_dir(), key


def test_fixtures_are_small_and_not_ignored_by_git(repo_root):
    # the fixture folders only: tests/data also holds the rsvl.data tests and the generator
    files = [p for p in DATA.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix != ".py" and p.relative_to(DATA).parts[0] != "adapters"]
    assert sum(p.stat().st_size for p in files) < MAX_FIXTURE_BYTES
    if not (repo_root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    rels = [str(p.relative_to(repo_root)) for p in files]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *rels], cwd=repo_root,
                             capture_output=True, text=True)
    assert ignored.stdout == "", f".gitignore hides fixture files:\n{ignored.stdout}"


def test_generator_reproduces_the_committed_fixtures_byte_for_byte(tmp_path):
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, capture_output=True)
    made = {p.relative_to(tmp_path).as_posix(): sha256_file(p) for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(DATA).as_posix(): sha256_file(p) for fmt in GEN.FORMATS
                 for p in (DATA / fmt).rglob("*") if p.is_file()}
    assert sorted(made) == sorted(committed)
    differ = sorted(rel for rel in made if made[rel] != committed[rel])
    hint = ""
    if any(rel.endswith((".parquet", ".h5")) for rel in differ):
        import pyarrow.parquet as pq

        created_by = pq.ParquetFile(DATA / "crisislandmark" / "metadata.parquet").metadata.created_by
        hint = (f" (committed parquet made by {created_by!r}: a pyarrow/h5py bump changes those bytes; "
                "run python tests/fixtures/adapters/generate.py and commit)")
    assert differ == [], f"regenerated files differ from the committed ones{hint}"


@pytest.mark.parametrize("key", sorted(GEN.QUARANTINE))
def test_quarantine_records_are_the_fixture_spec(ingested, key):
    _, out, report = ingested(key)
    table = read_quarantine(out)
    got = list(zip(table["where"], table["rule"]))
    assert len(got) == len(set(got)) == report.quarantined
    assert dict(got) == GEN.QUARANTINE[key]
    assert report.by_rule == dict(Counter(GEN.QUARANTINE[key].values()))
    assert set(table["stage"]) == {"ingest"} and all(reason.strip() for reason in table["reason"])


# --- caption layouts ------------------------------------------------------------------------------


def test_captions_json_rows_are_the_valid_entries(ingested):
    source, out, report = ingested("captions-json")
    spec = GEN.QUARANTINE["captions-json"]
    entries = json.loads((source / "captions.json").read_text(encoding="utf-8"))
    expected = {}
    for index, (rel, entry) in enumerate(entries.items()):
        where = f"captions.json#{index}"
        if where in spec:
            continue
        captions = [norm(c) for c in entry["captions"] if isinstance(c, str) and norm(c)]
        expected[rel.rsplit(".", 1)[0]] = (entry["split"], captions, [*header(source / rel)], where, rel)
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected) and report.rows == len(expected)
    hashes = media_hashes(out)
    for sample_id, (split, captions, size, where, rel) in expected.items():
        row = rows[sample_id]
        assert (row["split"], row["captions"], row["source"]) == (split, captions, where)
        assert [row["width"], row["height"], row["bands"]] == size
        assert size[:2] == entries[rel]["size"] and row["modality"] == "optical"
        assert hashes[str(source / rel)] == sha256_file(source / rel)
    assert rows["Sydney_captions_imgs/1"]["captions"][1] == "two spaces and a tab"
    assert len(rows["UCM_captions_imgs/2"]["captions"]) == 3


def test_karpathy_reads_gb18030_maps_restval_and_follows_filepath(ingested):
    source, out, _ = ingested("karpathy")
    spec = GEN.QUARANTINE["karpathy"]
    raw = (source / "dataset_ucm.json").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    images = json.loads(raw.decode("gb18030"))["images"]
    expected = {}
    for index, entry in enumerate(images):
        if f"dataset_ucm.json#{index}" in spec:
            continue
        rel = "/".join(filter(None, [entry.get("filepath"), entry["filename"]]))
        captions = [norm(s["raw"]) for s in entry["sentences"] if isinstance(s.get("raw"), str) and norm(s["raw"])]
        split = "train" if entry["split"] == "restval" else entry["split"]
        expected[rel.rsplit(".", 1)[0]] = (split, captions, f"dataset_ucm.json#{index}",
                                           [*header(source / "images" / rel)])
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected)
    for sample_id, (split, captions, where, size) in expected.items():
        row = rows[sample_id]
        assert (row["split"], row["captions"], row["source"]) == (split, captions, where)
        assert [row["width"], row["height"], row["bands"]] == size
    assert read_meta(out)["source_encoding"] == "gb18030"
    assert any("°" in c for c in rows["2"]["captions"]) and rows["2"]["split"] == "train"
    assert "sub/8" in rows


def test_caption_csv_groups_rows_by_basename_with_the_split_of_the_file_name(ingested):
    source, out, _ = ingested("caption-csv")
    spec = GEN.QUARANTINE["caption-csv"]
    table = source / "rsitmd_test.csv"
    with open(table, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        records = list(csv.DictReader(handle))
    groups: dict[str, list[tuple[int, str]]] = {}
    for line, record in enumerate(records, start=2):
        if f"rsitmd_test.csv:{line}" not in spec:
            name = record["filename"].replace("\\", "/").rsplit("/", 1)[-1]
            groups.setdefault(name, []).append((line, norm(record["title"])))
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(name.rsplit(".", 1)[0] for name in groups)
    for name, lines in groups.items():
        row = rows[name.rsplit(".", 1)[0]]
        assert row["captions"] == [text for _, text in lines]
        assert row["source"] == runs("rsitmd_test.csv", ":", [line for line, _ in lines])
        assert row["split"] == "test"
        assert [row["width"], row["height"], row["bands"]] == [*header(source / "images" / name)]
    assert any(", seen from above" in c for c in rows["boat_0"]["captions"])


def test_amfmn_pairs_five_captions_per_name_in_train_and_one_per_name_in_test(ingested):
    source, out, _ = ingested("amfmn")
    spec = GEN.QUARANTINE["amfmn"]
    groups: dict[str, dict] = {}
    for split in ("train", "test"):
        caps = (source / f"{split}_caps.txt").read_bytes().split(b"\n")[:-1]
        names = (source / f"{split}_filename.txt").read_text().split("\n")[:-1]
        per_name = len(caps) // len(names)
        assert per_name == {"train": 5, "test": 1}[split]
        for index, text in enumerate(caps):
            where = f"{split}_caps.txt:{index + 1}"
            if where not in spec:
                group = groups.setdefault(names[index // per_name], {"split": split, "lines": [], "captions": []})
                group["lines"].append(index + 1)
                group["captions"].append(norm(text.decode("utf-8")))
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(name.rsplit(".", 1)[0] for name in groups)
    for name, group in groups.items():
        row = rows[name.rsplit(".", 1)[0]]
        assert (row["split"], row["captions"]) == (group["split"], group["captions"])
        assert row["source"] == runs(f"{group['split']}_caps.txt", ":", group["lines"])
    assert read_meta(out)["ignored_files"] == ["train_caps_verify.txt", "train_filename_verify.txt"]


# --- VQA --------------------------------------------------------------------------------------------


def test_rsvqa_lr_rows_hold_the_active_answered_questions_of_their_split(ingested):
    source, out, _ = ingested("rsvqa/RSVQA-LR")
    spec = GEN.QUARANTINE["rsvqa/RSVQA-LR"]
    expected: dict[str, tuple[str, str, list]] = {}
    inactive = 0
    for stem in sorted(p.name.removesuffix("_questions.json") for p in source.glob("*_questions.json")):
        load = lambda part: json.loads((source / f"{stem}_{part}.json").read_text(encoding="utf-8"))  # noqa: E731
        answers = {a["question_id"]: str(a["answer"]) for a in load("answers")["answers"] if a["active"]}
        split = stem.rsplit("_", 1)[-1]
        by_image: dict[str, list] = {}
        for index, question in enumerate(load("questions")["questions"]):
            if not question["active"]:
                inactive += 1
            elif f"{stem}_questions.json#{index}" not in spec:
                by_image.setdefault(str(question["img_id"]), []).append(
                    {"question": norm(question["question"]), "answer": answers[question["id"]],
                     "type": question["type"]})
        for index, image in enumerate(load("images")["images"]):
            if image["active"] and str(image["id"]) in by_image:
                expected[str(image["id"])] = (split, f"{stem}_images.json#{index}", by_image[str(image["id"])])
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected)
    for image_id, (split, where, vqa) in expected.items():
        row = rows[image_id]
        assert (row["split"], row["source"], row["vqa"]) == (split, where, vqa)
        assert [row["width"], row["height"], row["bands"]] == [*header(source / "Images_LR" / f"{image_id}.tif")]
    meta = read_meta(out)
    assert meta["layout"] == "rsvqa" and meta["kind"] == "vqa"
    assert meta["questions_inactive"] == inactive
    assert meta["questions_ingested"] == sum(len(v) for _, _, v in expected.values())


def test_hrvqa_rows_keep_answers_and_null_answers_where_the_split_has_no_answer_file(ingested):
    source, out, _ = ingested("rsvqa/HRVQA")
    spec = GEN.QUARANTINE["rsvqa/HRVQA"]
    expected: dict[str, tuple[str, list]] = {}
    for path in sorted((source / "jsons").glob("*_question.json")):
        split = path.name.split("_")[0]
        answer_file = path.with_name(f"{split}_answer.json")
        answers = ({a["question_id"]: a["multiple_choice_answer"]
                    for a in json.loads(answer_file.read_text())["annotations"]} if answer_file.is_file() else {})
        for index, question in enumerate(json.loads(path.read_text())["questions"]):
            if f"{path.name}#{index}" not in spec:
                expected.setdefault(str(question["image_id"]), (split, []))[1].append(
                    {"question": question["question"], "answer": answers.get(question["question_id"]),
                     "type": question["question_type"]})
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected)
    for image_id, (split, vqa) in expected.items():
        assert (rows[image_id]["split"], rows[image_id]["vqa"]) == (split, vqa)
    assert all(q["answer"] is None for q in rows["9003"]["vqa"]) and rows["9003"]["split"] == "test"
    assert read_meta(out)["layout"] == "hrvqa"


# --- detection ------------------------------------------------------------------------------------


def test_coco_rows_boxes_and_splits(ingested):
    source, out, _ = ingested("coco")
    spec = GEN.QUARANTINE["coco"]
    document = json.loads((source / "instances_train.json").read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in document["categories"]}
    expected = {}
    for index, image in enumerate(document["images"]):
        if f"instances_train.json:images[{index}]" in spec:
            continue
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3],
                  names[a["category_id"]]]
                 for number, a in enumerate(document["annotations"])
                 if a["image_id"] == image["id"] and f"instances_train.json:annotations[{number}]" not in spec]
        expected[image["file_name"].rsplit(".", 1)[0]] = (image.get("split", "train"), boxes, image)
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected)
    for sample_id, (split, boxes, image) in expected.items():
        row = rows[sample_id]
        assert row["split"] == split and row["modality"] == document["info"]["modality"]
        assert [[b["x_min"], b["y_min"], b["x_max"], b["y_max"], b["label"]] for b in row["boxes"]] == boxes
        width, height, bands = header(source / "images" / image["file_name"])
        assert (row["width"], row["height"], row["bands"]) == (image["width"], image["height"], bands)
    assert rows["P0002"]["boxes"] == [] and len(rows["P0001"]["boxes"]) == 2


def _listing(source: Path) -> dict[str, list]:
    return json.loads((source / "ship_boxes.json").read_text(encoding="utf-8"))


def _pixel_edge(entry: dict) -> list[float]:
    return [entry["x_min"], entry["y_min"], entry["x_max"] + 1, entry["y_max"] + 1]


def test_hrsid_boxes_rows_are_single_band_chips_with_pixel_edge_boxes(ingested):
    source, out, _ = ingested("hrsid-boxes")
    spec = GEN.QUARANTINE["hrsid-boxes"]
    listing = _listing(source)
    expected = {name: entries for name, entries in listing.items() if f"ship_boxes.json:{name}" not in spec}
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(name.rsplit(".", 1)[0] for name in expected)
    hashes = media_hashes(out)
    for name, entries in expected.items():
        stem = name.rsplit(".", 1)[0]
        row = rows[stem]
        boxes = [_pixel_edge(e) + [e["label"]] for i, e in enumerate(entries)
                 if f"ship_boxes.json:{name}[{i}]" not in spec]
        assert [[b["x_min"], b["y_min"], b["x_max"], b["y_max"], b["label"]] for b in row["boxes"]] == boxes
        assert (row["split"], row["modality"], row["bands"], row["source"]) == \
            (hash_split(name), "sar", 1, f"ship_boxes.json:{name}")
        with Image.open(source / "images" / name) as chip, Image.open(out / row["image"]) as stored:
            np.testing.assert_array_equal(np.asarray(stored), np.asarray(chip)[:, :, 0])
        mask = source / "masks" / f"{stem}_instance_id_RGB.png"
        if mask.is_file():
            assert hashes[str(mask)] == sha256_file(mask)
        else:
            assert row["mask"] is None
    assert len(rows["P0001_0_800_0_800"]["boxes"]) == 2 and rows["P0002_0_800_800_1600"]["boxes"] == []


def test_hrsid_tiles_follow_the_half_area_rule(ingested):
    source, out, _ = ingested("hrsid-tiles")
    spec = GEN.QUARANTINE["hrsid-tiles"]
    size = 200
    expected, left_out, lost, margins = {}, {}, set(), {}
    for name, entries in _listing(source).items():
        if f"ship_boxes.json:{name}" in spec:
            continue
        with Image.open(source / "images" / name) as image:
            chip = np.asarray(image)[:, :, 0]
        height, width = chip.shape
        if width % size or height % size:
            margins[name] = {"right_px": width % size, "bottom_px": height % size}
        boxes = [(i, _pixel_edge(e)) for i, e in enumerate(entries)
                 if e.get("x_max", width) + 1 <= width and e.get("y_max", height) + 1 <= height]
        kept = set()
        for row_index in range(height // size):
            for col in range(width // size):
                x, y = col * size, row_index * size
                tile_boxes = []
                for i, (x0, y0, x1, y1) in boxes:
                    cx0, cy0, cx1, cy1 = max(x0, x), max(y0, y), min(x1, x + size), min(y1, y + size)
                    inside = max(cx1 - cx0, 0) * max(cy1 - cy0, 0)
                    if inside * 2 >= (x1 - x0) * (y1 - y0):
                        tile_boxes.append([cx0 - x, cy0 - y, cx1 - x, cy1 - y])
                        kept.add(i)
                    elif inside:
                        left_out.setdefault(f"{name[:-4]}_r{row_index}_c{col}", []).append(i)
                expected[f"{name[:-4]}_r{row_index}_c{col}"] = (
                    tile_boxes, chip[y:y + size, x:x + size], hash_split(name),
                    f"ship_boxes.json:{name}#x={x},y={y},size={size}")
        lost |= {f"ship_boxes.json:{name}[{i}]" for i, _ in boxes if i not in kept}
    assert lost == {where for where, rule in spec.items() if rule == "tile_box_lost"}
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected)
    for sample_id, (boxes, pixels, split, where) in expected.items():
        row = rows[sample_id]
        assert [[b["x_min"], b["y_min"], b["x_max"], b["y_max"]] for b in row["boxes"]] == boxes
        assert (row["split"], row["source"], row["width"], row["height"]) == (split, where, size, size)
        with Image.open(out / row["image"]) as stored:
            np.testing.assert_array_equal(np.asarray(stored), pixels)
    masked = [row for row in rows.values() if row["mask"]]
    assert {row["sample_id"] for row in masked} == {s for s in rows if s.startswith("P0101")}
    with Image.open(source / "masks" / "P0101_0_400_0_400_instance_id_RGB.png") as mask:
        full = np.asarray(mask)
    with Image.open(out / rows["P0101_0_400_0_400_r1_c1"]["mask"]) as tile_mask:
        np.testing.assert_array_equal(np.asarray(tile_mask), full[200:400, 200:400])
    tiling = read_meta(out)["tiling"]
    assert (tiling["tiles"], tiling["left_out"], tiling["margins"]) == (len(expected), left_out, margins)
    assert tiling["boxes_in_no_tile"] == len(lost)


# --- multisensor ----------------------------------------------------------------------------------


BEN_CORINE_TO_CRISIS = {"Coniferous forest": "trees", "Pastures": "grass", "Inland waters": "water",
                        "Mixed forest": "trees", "Transitional woodland, shrub": "shrub and scrub"}
"""The CORINE-19 names of the fixture's kept rows, as the documented table maps them."""


def test_bigearthnet_rows_arrays_labels_and_flags(ingested):
    source, out, _ = ingested("bigearthnet")
    spec = GEN.QUARANTINE["bigearthnet"]
    with open(source / "labels.csv", newline="", encoding="utf-8") as handle:
        records = [(f"labels.csv:{line}", r) for line, r in enumerate(csv.DictReader(handle), start=2)]
    expected = {r["patch_id"]: (where, r) for where, r in records if where not in spec}
    rows = rows_by_id(out)
    assert sorted(rows) == sorted(expected)
    bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    train_s1 = []
    for patch_id, (where, record) in expected.items():
        row = rows[patch_id]
        labels = list(dict.fromkeys(record["labels"].split("|")))
        crisis = list(dict.fromkeys(BEN_CORINE_TO_CRISIS[x] for x in labels))
        sensed = dt.datetime.strptime(patch_id.split("_")[2], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
        assert row["labels"] == crisis and row["captions"] == [". ".join(crisis)]
        assert read_meta(out)["corine19_labels"][patch_id] == labels
        assert (row["split"], row["source"], row["modality"]) == (
            {"validation": "val"}.get(record["split"], record["split"]), where, "s1s2")
        assert row["timestamp"] == sensed.isoformat()
        s2, s1 = array(out, row["s2"]), array(out, row["s1"])
        with np.load(source / "npz" / f"{patch_id}.npz") as npz:
            side = npz["S2_B02"].shape[0]
            assert s2.shape == (12, side, side) and (row["width"], row["height"], row["bands"]) == (side, side, 12)
            for index, band in enumerate(bands):
                raw = npz[f"S2_{band}"].astype(np.float32)
                if raw.shape == (side, side):
                    np.testing.assert_array_equal(s2[index], raw)
                elif raw.size == 1:  # a 60 m pixel covers the patch: flat, up to float32 rounding of the weights
                    np.testing.assert_allclose(s2[index], np.full((side, side), raw.item()), rtol=1e-6)
                else:
                    assert raw.min() <= s2[index].min() and s2[index].max() <= raw.max()
            np.testing.assert_array_equal(s1, np.stack([npz["S1_VV"], npz["S1_VH"]]))
        if row["split"] == "train":
            train_s1.append(s1)
    meta = read_meta(out)
    pooled = np.concatenate([s.reshape(2, -1) for s in train_s1], axis=1).astype(np.float64)
    np.testing.assert_allclose(meta["band_stats"]["s1"]["mean"], pooled.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(meta["band_stats"]["s1"]["std"], pooled.std(axis=1), rtol=1e-5)
    flagged = {flag: sorted(p for p, (_, r) in expected.items() if r[column] == "True")
               for flag, column in (("seasonal_snow", "snow"), ("cloud_or_shadow", "cloud_or_shadow"))}
    assert meta["flags"] == flagged and all(flagged.values())


CORINE_TO_CRISIS = {"Inland waters": "water", "Urban fabric": "built"}
"""The two CORINE-19 names the fixture uses, as the documented table maps them."""


def test_crisislandmark_rows_round_trip_their_shard_members(ingested):
    source, out, _ = ingested("crisislandmark")
    spec = GEN.QUARANTINE["crisislandmark"]
    metadata = pd.read_parquet(source / "metadata.parquet")
    shards = sorted((source / "shards").glob("*.h5"))
    members: dict[str, Path] = {}
    for shard in shards:
        try:
            with h5py.File(shard, "r") as handle:
                for key in handle:
                    members.setdefault(key, shard)
        except OSError:
            continue
    rows = rows_by_id(out)
    expected = [r for index, r in enumerate(metadata.to_dict("records")) if f"metadata.parquet:{index}" not in spec]
    assert sorted(rows) == sorted(r["key"] for r in expected)
    for record in expected:
        row = rows[record["key"]]
        labels = [CORINE_TO_CRISIS.get(x, x.lower().replace("_", " ")) for x in record["labels"]]
        assert row["labels"] == labels and row["captions"] == [". ".join(labels)]
        assert row["split"] == {"validation": "val"}.get(record["split"], record["split"])
        with h5py.File(members[record["key"]], "r") as handle:
            group = handle[record["key"]]
            image = group["image"][()]
            stamp = group.attrs.get("timestamp")
            coords = group["coords"][()] if "coords" in group else None
        sensor = "s1" if image.shape[0] == 2 else "s2"
        np.testing.assert_array_equal(array(out, row[sensor]), image)
        assert row["modality"] == {"s1": "sar", "s2": "multispectral"}[sensor] and row["bands"] == image.shape[0]
        if stamp is None:
            assert row["timestamp"] is None
        elif isinstance(stamp, str):
            assert row["timestamp"] == dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc).isoformat()
        else:
            assert row["timestamp"] == dt.datetime.fromtimestamp(int(stamp), dt.timezone.utc).isoformat()
        if coords is None:
            assert row["lon"] is None and row["lat"] is None
        elif coords.shape == (2,):
            assert (row["lon"], row["lat"]) == tuple(coords)
    # the UTM patch's centre pixel lies on the equator at zone 33N's central meridian, 15° E
    assert rows["s1_0001"]["lon"] == pytest.approx(15.0, abs=1e-9)
    assert rows["s1_0001"]["lat"] == pytest.approx(0.0, abs=1e-9)
    listed = set(metadata["key"])
    assert read_meta(out)["unlisted_keys"] == len(set(members) - listed) == 1


# --- classification -------------------------------------------------------------------------------


def test_class_folder_rows_follow_labels_csv(ingested):
    source, out, _ = ingested("class-folder")
    spec = GEN.QUARANTINE["class-folder"]
    with open(source / "labels.csv", newline="", encoding="utf-8") as handle:
        records = [(f"labels.csv:{line}", r) for line, r in enumerate(csv.DictReader(handle), start=2)]
    rows = rows_by_id(out)
    expected = {r["filepath"].rsplit(".", 1)[0]: (where, r) for where, r in records if where not in spec}
    assert sorted(rows) == sorted(expected)
    hashes = media_hashes(out)
    for sample_id, (where, record) in expected.items():
        row = rows[sample_id]
        label = " ".join(record["label"].replace("_", " ").lower().split())
        assert (row["label"], row["split"], row["source"]) == (label, record["split"], where)
        path = source / "images" / record["filepath"]
        assert hashes[str(path)] == sha256_file(path)
        assert (row["width"], row["height"], row["bands"]) == header(path)
    assert rows["dRiverLake/d001"]["label"] == "river lake"
    assert {row["bands"] for row in rows.values()} == {1}, "grey images are 1 band, not an assumed 3"


def test_class_folder_without_labels_csv_takes_folder_names_and_hash_splits(tmp_path):
    source = tmp_path / "rsscn7"
    shutil.copytree(DATA / "class-folder" / "images", source / "images")
    report = ingest("class-folder", source, tmp_path / "ds")
    files = sorted(p.relative_to(source / "images").as_posix() for p in (source / "images").rglob("*.jpg"))
    rows = rows_by_id(tmp_path / "ds")
    assert report.quarantined == 0 and sorted(rows) == sorted(f.rsplit(".", 1)[0] for f in files)
    for rel in files:
        row = rows[rel.rsplit(".", 1)[0]]
        assert (row["label"], row["split"]) == (rel.split("/")[0].lower(), hash_split(rel))
        assert (row["width"], row["height"], row["bands"]) == header(source / "images" / rel)


# --- the fixtures stay synthetic -----------------------------------------------------------------


@pytest.mark.real_data
def test_no_fixture_text_line_is_real_caption_text(shared_data):
    real = set()
    for path in (shared_data / "captions_text" / "AMFMN_precomp").rglob("*_caps.txt"):
        real |= {norm(line) for line in path.read_text(encoding="utf-8", errors="replace").splitlines()}
    for path in (shared_data / "captions_text" / "iEBAKER_test_csv").glob("*.csv"):
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            real |= {norm(r["title"]) for r in csv.DictReader(handle)}
    for entry in json.loads((shared_data / "ucm_sydney_captions_sample" / "captions.json").read_text()).values():
        real |= {norm(c) for c in entry["captions"]}
    real.discard("")
    fixture_text = set()
    for path in DATA.rglob("*"):
        if path.suffix in {".txt", ".csv", ".json"}:
            raw = path.read_bytes()
            text = raw.decode("gb18030") if path.name == "dataset_ucm.json" else raw.decode("utf-8", "replace")
            fixture_text |= {norm(part) for line in io.StringIO(text) for part in line.split(",")}
            fixture_text |= {norm(line.strip().strip('",')) for line in io.StringIO(text)}
    assert not (fixture_text & real)
