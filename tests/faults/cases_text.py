"""Corpus cases of broken text: captions, annotations (boxes, ids, places, times, answers), configuration.

See ``corpus_case.py`` for the contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from corpus_case import ERROR, KEPT, QUARANTINE, Case, Expect
from PIL import Image

BASE_CONFIG = Path(__file__).resolve().parents[2] / "pipelines" / "sar_text" / "config.yaml"
INGEST_THEN_VALIDATE = ("rsvl", "data", "validate", "out", "--max-bad-fraction", "0.5")
GOOD_CAPTIONS = (b"a dense forest beside a road", b"many buildings around a square", b"a river crosses green fields",
                 b"a harbour with three boats")


def config_with(case: Path, text: str) -> Path:
    """Write a config overlay that extends the sar_text config with ``text``; return its path."""
    path = case / "config.yaml"
    path.write_text(f"paper: sar_text\nextends: {BASE_CONFIG.parent.parent / 'base.yaml'}\ndefaults:\n{text}")
    return path


def _scene(path: Path, value: int) -> None:
    """Write a small RGB scene of one shade to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(path)


def caption_csv(case: Path, broken: bytes) -> list[list[str]]:
    """A ``filename,title,split`` caption table: four good rows, then one whose caption is ``broken``.

    Returns:
        ``rsvl data ingest --format caption-csv`` then ``rsvl data validate`` of the result.
    """
    source = case / "source"
    rows = [b"filename,title,split"]
    for index, caption in enumerate((*GOOD_CAPTIONS, broken)):
        _scene(source / "images" / f"scene_{index}.png", 30 * index + 20)
        rows.append(b'/home/x/scene_%d.png,"%s",train' % (index, caption.replace(b'"', b'""')))
    (source / "captions.csv").write_bytes(b"\n".join(rows) + b"\n")
    return [["rsvl", "data", "ingest", "--format", "caption-csv", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def karpathy(case: Path, broken: str, encoding: str = "utf-8", raw: bytes | None = None) -> list[list[str]]:
    """A Karpathy caption JSON of four good images and one whose only sentence is ``broken``.

    Args:
        case: The case folder.
        broken: The fifth image's sentence.
        encoding: How the JSON file is encoded.
        raw: Bytes written instead of the encoded JSON (a file that is not one encoding).

    Returns:
        ``rsvl data ingest --format karpathy`` then ``rsvl data validate``.
    """
    source = case / "source"
    images = []
    for index, caption in enumerate((*(c.decode() for c in GOOD_CAPTIONS), broken)):
        _scene(source / "images" / f"scene_{index}.png", 30 * index + 20)
        images.append({"filename": f"scene_{index}.png", "split": "train", "sentences": [{"raw": caption}]})
    text = json.dumps({"images": images}, ensure_ascii=False)
    (source / "dataset_tiny.json").write_bytes(raw if raw is not None else text.encode(encoding))
    return [["rsvl", "data", "ingest", "--format", "karpathy", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def karpathy_mixed(case: Path) -> list[list[str]]:
    """A UTF-8 Karpathy JSON with accented captions and one stray Latin-1 byte (a file that is neither
    UTF-8 nor GB18030 text, though GB18030 decodes it without complaint)."""
    karpathy(case, "x")
    path = case / "source" / "dataset_tiny.json"
    text = path.read_text().replace("a dense forest", "une forêt près du café").replace('"x"', '"prés"')
    path.write_bytes(text.encode().replace("prés".encode(), b"pr\xe9s"))
    return [["rsvl", "data", "ingest", "--format", "karpathy", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def coco(case: Path, broken_bbox: str) -> list[list[str]]:
    """A COCO JSON of four images with one good box each, plus a second box on image 4 (``broken_bbox``,
    raw JSON text so ``NaN`` can be written)."""
    source = case / "source"
    images, annotations = [], []
    for index in range(4):
        _scene(source / "images" / f"scene_{index}.png", 40 * index + 20)
        images.append({"id": index + 1, "file_name": f"scene_{index}.png", "width": 32, "height": 32, "split": "train"})
        annotations.append({"id": index + 1, "image_id": index + 1, "category_id": 1, "bbox": [4, 4, 10, 8]})
    annotations.append({"id": 99, "image_id": 4, "category_id": 1, "bbox": "BROKEN"})
    text = json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "ship"}]})
    (source / "annotations.json").write_text(text.replace('"BROKEN"', broken_bbox))
    return [["rsvl", "data", "ingest", "--format", "coco", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def coco_duplicate_id(case: Path) -> list[list[str]]:
    """A COCO JSON whose fifth image entry reuses the id of the first (another file)."""
    commands = coco(case, "[1, 1, 4, 4]")
    path = case / "source" / "annotations.json"
    document = json.loads(path.read_text())
    _scene(case / "source" / "images" / "scene_9.png", 200)
    document["images"].append({"id": 1, "file_name": "scene_9.png", "width": 32, "height": 32, "split": "train"})
    path.write_text(json.dumps(document))
    return commands


def crisis(case: Path, point: tuple[float, float] = (12.5, 41.9),
           timestamp: str = "2021-03-04T05:06:07") -> list[list[str]]:
    """A CrisisLandMark source of four Sentinel-1 patches (EPSG:4326 points); the fourth has ``point`` and
    ``timestamp``.

    Returns:
        ``rsvl data ingest --format crisislandmark`` then ``rsvl data validate``.
    """
    source = case / "source"
    source.mkdir(parents=True)
    keys = [f"benv2s1_{index}" for index in range(4)]
    with h5py.File(source / "part-0.h5", "w") as handle:
        for index, key in enumerate(keys):
            group = handle.create_group(key)
            group.create_dataset("image", data=np.full((2, 8, 8), -12.0 - index, dtype=np.float32))
            group.create_dataset("coords", data=np.array(point if index == 3 else (10.0 + index, 45.0)))
            group.attrs["crs"] = "EPSG:4326"
            group.attrs["timestamp"] = timestamp if index == 3 else "2021-03-04T05:06:07"
    pd.DataFrame({"key": keys, "split": ["train"] * 4, "labels": [["water"]] * 4}).to_parquet(
        source / "metadata.parquet")
    return [["rsvl", "data", "ingest", "--format", "crisislandmark", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def rsvqa(case: Path, odd_answer: str) -> list[list[str]]:
    """An RSVQA-LR train split of four images with a yes/no question each; the fourth's answer is ``odd_answer``.

    Returns:
        ``rsvl data ingest --format rsvqa`` then ``rsvl data validate``.
    """
    source = case / "source"
    answers = ["yes", "no", "yes", odd_answer]
    for index in range(4):
        _scene(source / "Images_LR" / f"{index}.png", 40 * index + 20)
    (source / "LR_split_train_images.json").write_text(json.dumps(
        {"images": [{"id": index, "active": True} for index in range(4)]}))
    (source / "LR_split_train_questions.json").write_text(json.dumps({"questions": [
        {"id": index, "img_id": index, "type": "presence", "question": "Is a road present?", "active": True}
        for index in range(4)]}))
    (source / "LR_split_train_answers.json").write_text(json.dumps({"answers": [
        {"question_id": index, "answer": answer, "active": True} for index, answer in enumerate(answers)]}))
    return [["rsvl", "data", "ingest", "--format", "rsvqa", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def amfmn(case: Path, broken: bytes) -> list[list[str]]:
    """An AMFMN ``test_caps.txt``/``test_filename.txt`` pair of five images, one caption each; the fifth is ``broken``.

    Returns:
        ``rsvl data ingest --format amfmn`` then ``rsvl data validate``.
    """
    source = case / "source"
    for index in range(5):
        _scene(source / "images" / f"scene_{index}.png", 30 * index + 20)
    (source / "test_caps.txt").write_bytes(b"\n".join((*GOOD_CAPTIONS, broken)) + b"\n")
    (source / "test_filename.txt").write_text("".join(f"scene_{index}.png\n" for index in range(5)))
    return [["rsvl", "data", "ingest", "--format", "amfmn", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def captions_json(case: Path, broken_path: str) -> list[list[str]]:
    """A ``captions.json`` of four good images plus an entry keyed ``broken_path``.

    Returns:
        ``rsvl data ingest --format captions-json`` then ``rsvl data validate``.
    """
    source = case / "source"
    entries = {}
    for index, caption in enumerate(GOOD_CAPTIONS):
        _scene(source / "imgs" / f"scene_{index}.png", 40 * index + 20)
        entries[f"imgs/scene_{index}.png"] = {"split": "train", "captions": [caption.decode()]}
    _scene(case / "outside.png", 200)  # a real image the broken key points at, outside the source
    entries[broken_path] = {"split": "train", "captions": ["an image outside the source folder"]}
    (source / "captions.json").write_text(json.dumps(entries))
    return [["rsvl", "data", "ingest", "--format", "captions-json", "--source", "source", "--out", "out"],
            list(INGEST_THEN_VALIDATE)]


def check_config(case: Path, text: str, *options: str) -> list[list[str]]:
    """``rsvl config check`` of a sar_text overlay holding ``text`` under ``defaults``."""
    return [["rsvl", "config", "check", str(config_with(case, text)), *options]]


def raw_config(case: Path, text: str) -> list[list[str]]:
    """``rsvl config check`` of a config file written as ``text`` exactly (``BASE``: the base config's path)."""
    return raw_config_bytes(case, text.encode())


def raw_config_bytes(case: Path, data: bytes) -> list[list[str]]:
    """``rsvl config check`` of a config file holding ``data`` exactly (``BASE``: the base config's path)."""
    path = case / "config.yaml"
    path.write_bytes(data.replace(b"BASE", str(BASE_CONFIG.parent.parent / "base.yaml").encode()))
    return [["rsvl", "config", "check", str(path)]]


BILLION_LAUGHS = "".join(["paper: sar_text\nextends: BASE\n", f"a0: &a0 [{', '.join(['lol'] * 9)}]\n",
                          *(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, 9)),
                          "defaults:\n  train:\n    ablations: *a8\n"])
"""Nine levels of nine aliases: 9**9 (387 million) strings once expanded, a few hundred bytes on disk."""

CSV_5 = dict(rows_in=5, kept=4, quarantined=1)

CASES: list[Case] = [
    # captions
    Case("caption-empty", "captions", "a caption-csv row whose caption is empty (`\"\"`)",
         lambda case: caption_csv(case, b""),
         Expect(QUARANTINE, stage="ingest", rule="caption_nonempty", **CSV_5)),
    Case("caption-whitespace", "captions", "a caption of spaces, tabs and a non-breaking space only",
         lambda case: caption_csv(case, " \t \u00a0 ".encode()),
         Expect(QUARANTINE, stage="ingest", rule="caption_nonempty", **CSV_5)),
    Case("caption-10k-chars", "captions", "a caption of 10,000 characters (limit `data.captions.max_chars`: 2,000)",
         lambda case: caption_csv(case, b"x" * 10_000),
         Expect(QUARANTINE, stage="validate", rule="caption_max_chars", **CSV_5)),
    Case("caption-invalid-utf8", "captions", "a caption with bytes that are not UTF-8 (`\\xff\\xfe`)",
         lambda case: caption_csv(case, b"a road \xff\xfe beside"),
         Expect(QUARANTINE, stage="ingest", rule="caption_utf8", **CSV_5)),
    Case("caption-gb18030-in-utf8-csv", "captions", "GB18030 caption bytes in a caption-csv (read as UTF-8)",
         lambda case: caption_csv(case, "一条河流穿过绿色的田野".encode("gb18030")),
         Expect(QUARANTINE, stage="ingest", rule="caption_utf8", **CSV_5)),
    Case("caption-gb18030-karpathy", "captions",
         "a Karpathy JSON stored in GB18030 (as RSICD's release is): odd but valid, decoded as GB18030",
         lambda case: karpathy(case, "一条河流穿过绿色的田野", encoding="gb18030"),
         Expect(KEPT, rows_in=5, kept=5)),
    Case("caption-latin1-in-utf8-karpathy", "captions",
         "a UTF-8 Karpathy JSON with one Latin-1 byte: neither UTF-8 nor GB18030, must not become mojibake",
         karpathy_mixed,
         Expect(ERROR, error=r"dataset_tiny\.json.*UTF-8.*byte", dataset=None)),
    Case("caption-control-chars", "captions", "a caption with a NUL and a terminal escape (`\\x00`, `\\x1b[31m`)",
         lambda case: caption_csv(case, b"a red \x1b[31mroof\x1b[0m and \x00 a road"),
         Expect(QUARANTINE, stage="ingest", rule="caption_printable", **CSV_5)),
    Case("caption-html-script", "captions",
         "a caption `<script>alert(1)</script>`: valid text, kept as is (reports escape it)",
         lambda case: caption_csv(case, b"<script>alert(1)</script> a harbour"),
         Expect(KEPT, rows_in=5, kept=5)),
    # annotations
    Case("box-out-of-bounds", "annotations", "a COCO box reaching past the 32 px image (`[20, 20, 30, 30]`)",
         lambda case: coco(case, "[20, 20, 30, 30]"),
         Expect(QUARANTINE, stage="ingest", rule="box_bounds", rows_in=5, kept=4, quarantined=1)),
    Case("box-inverted", "annotations", "a COCO box of negative width (x_max < x_min)",
         lambda case: coco(case, "[10, 4, -6, 8]"),
         Expect(QUARANTINE, stage="ingest", rule="box_bounds", rows_in=5, kept=4, quarantined=1)),
    Case("box-nan", "annotations", "a COCO box with a `NaN` coordinate",
         lambda case: coco(case, "[NaN, 4, 6, 8]"),
         Expect(QUARANTINE, stage="ingest", rule="box_bounds", rows_in=5, kept=4, quarantined=1)),
    Case("duplicate-sample-id", "annotations", "two COCO image entries with one id (another file each)",
         coco_duplicate_id,
         Expect(QUARANTINE, stage="ingest", rule="unique_id", rows_in=5, kept=4, quarantined=1)),
    Case("caption-invalid-utf8-amfmn", "captions", "an AMFMN caption line with bytes that are not UTF-8",
         lambda case: amfmn(case, b"a caf\xe9 beside the road"),
         Expect(QUARANTINE, stage="ingest", rule="caption_utf8", **CSV_5)),
    Case("captions-json-path-escape", "captions", "a captions-json entry keyed `../outside.png` (climbs out of the source)",
         lambda case: captions_json(case, "../outside.png"),
         Expect(QUARANTINE, stage="ingest", rule="record_fields", **CSV_5)),
    Case("latlon-out-of-range", "annotations", "a CrisisLandMark patch at lon 200, lat 95 (EPSG:4326)",
         lambda case: crisis(case, point=(200.0, 95.0)),
         Expect(QUARANTINE, stage="ingest", rule="crs", rows_in=4, kept=3, quarantined=1)),
    Case("timestamp-unparsable", "annotations", "a CrisisLandMark patch whose timestamp is `last tuesday`",
         lambda case: crisis(case, timestamp="last tuesday"),
         Expect(QUARANTINE, stage="ingest", rule="timestamp", rows_in=4, kept=3, quarantined=1)),
    Case("vqa-answer-out-of-vocabulary", "annotations",
         "a yes/no question answered `perhaps`: kept, since the VQA vocabulary is the train split's own answers "
         "per question (rsvl.vqa.answer_vocabulary), so an unseen test answer scores as a miss, not a dropped row",
         lambda case: rsvqa(case, "perhaps"),
         Expect(KEPT, rows_in=4, kept=4)),
    # configuration
    Case("config-unknown-key", "config", "a config key no schema has (`train.epoch` for `train.epochs`)",
         lambda case: [["rsvl", "config", "check", str(config_with(case, "  train:\n    epoch: 3\n"))]],
         Expect(ERROR, error=r"config\.yaml.*train\.epoch", dataset=None)),
    Case("config-wrong-type", "config", "`train.epochs: \"three\"`",
         lambda case: check_config(case, "  train:\n    epochs: three\n"),
         Expect(ERROR, error=r"config\.yaml.*train\.epochs.*integer", dataset=None)),
    Case("config-duplicate-key", "config", "a mapping that names `epochs` twice (PyYAML keeps the last silently)",
         lambda case: check_config(case, "  train:\n    epochs: 3\n    epochs: 30\n"),
         Expect(ERROR, error=r"config\.yaml.*duplicate key 'epochs' \(first on line 5\).*line 6", dataset=None)),
    Case("config-anchor-bomb", "config", "YAML aliases that expand 9**9-fold (billion laughs)",
         lambda case: raw_config(case, BILLION_LAUGHS),
         Expect(ERROR, error=r"config\.yaml.*alias", dataset=None)),
    Case("config-override-unknown-field", "config", "`rsvl config check --set train.epoch=3` (no such field)",
         lambda case: [["rsvl", "config", "check", str(BASE_CONFIG), "--set", "train.epoch=3"]],
         Expect(ERROR, error=r"train\.epoch.*(not permitted|unknown|Extra)", dataset=None)),
    Case("pipeline-override-unknown-field", "config",
         "`pipeline --paper sar_text --target compile --set train.epoch=3` (no such field)",
         lambda case: [["pipeline", "--paper", "sar_text", "--target", "compile",
                        "--set", "train.epoch=3"]],
         Expect(ERROR, error=r"train\.epoch.*(not permitted|unknown|Extra)", dataset=None)),
    Case("config-override-wrong-type", "config", "`rsvl config check --set train.epochs=three`",
         lambda case: [["rsvl", "config", "check", str(BASE_CONFIG), "--set", "train.epochs=three"]],
         Expect(ERROR, error=r"train\.epochs.*integer.*override", dataset=None)),
    Case("config-not-utf8", "config", "a config file with a Latin-1 byte (`caf\\xe9`)",
         lambda case: raw_config_bytes(case, b"# caf\xe9: the byte comes first, so its offset is the same in any checkout\n"
                                             b"paper: sar_text\nextends: BASE\ndefaults: {}\n"),
         Expect(ERROR, error=r"config\.yaml: not valid YAML.*utf-8.*byte", dataset=None)),
    Case("config-recursive-alias", "config", "an alias inside its own anchor (`a: &a [*a]`)",
         lambda case: raw_config(case, "paper: sar_text\nextends: BASE\ndefaults:\n  train:\n    ablations: &a [*a]\n"),
         Expect(ERROR, error=r"config\.yaml: not valid YAML \(the node at line 5 holds an alias to itself", dataset=None)),
    Case("pipeline-override-data-path-escapes", "config",
         "`pipeline --target compile --set data.path=/data/../etc` (cluster profile, the compile default)",
         lambda case: [["pipeline", "--paper", "sar_text", "--target", "compile", "--set", "data.source=ingest",
                        "--set", "data.format=coco", "--set", "data.path=/data/../etc"]],
         Expect(ERROR, error=r"data\.path '/data/\.\./etc' leaves the mounted volumes", dataset=None)),
    Case("config-data-path-escapes", "config",
         "`data.path: /data/../etc/shadow` on the cluster profile (outside the mounted volumes)",
         lambda case: check_config(case, "  data:\n    source: ingest\n    format: coco\n    path: /data/../etc/shadow\n",
                                   "--profile", "cluster"),
         Expect(ERROR, error=r"data\.path.*/data/\.\./etc/shadow.*(mount|volume)", dataset=None)),
    Case("config-data-path-relative-escape", "config",
         "a relative `data.path: ../../etc` on the cluster profile",
         lambda case: check_config(case, "  data:\n    source: ingest\n    format: coco\n    path: ../../etc\n",
                                   "--profile", "cluster"),
         Expect(ERROR, error=r"data\.path.*\.\./\.\./etc.*(mount|volume)", dataset=None)),
]
