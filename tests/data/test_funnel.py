"""The RS5M funnel on the mixed pool: every stage removes what was planted for it, and nothing else.

The pool's ``truth.json`` says which stage should remove each row; the outlier stage is scored by
two simple callables defined here from pixels alone (no model, no ground truth): the scene class
from the mean and spread of each colour channel, nearest to centroids of scenes drawn here with
other seeds, and "is remote sensing" from texture (overhead scenes carry sensor noise and ground
texture; the pool's photos are smooth). So precision and recall of each stage are measured
against what the generator planted, not against what the funnel did.

The funnel runs after the caption step, so the pool's ``uncaptioned`` rows are funnelled as that
step leaves them: :func:`as_captioned` gives each the geo-metadata sentence the step puts in front
of its captions (a stand-in for the generated captions behind it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydantic import ValidationError

from rsvl.caption.geo_template import geo_sentence_for
from rsvl.config.funnel import DecodeRules, FunnelConfig, NearDuplicateConfig, OutlierConfig
from rsvl.data import image_hash
from rsvl.data.countries import country_boxes
from rsvl.data.dataset import ManifestDataset
from rsvl.data.funnel import (
    STAGES,
    decode_stage,
    exact_duplicate_stage,
    keyword_stage,
    near_duplicate_stage,
    outlier_stage,
    read_rows,
    run_funnel,
    zero_shot_rs_score,
)
from rsvl.data.keywords import KEYWORDS_FILE, KeywordMatcher, read_keywords
from rsvl.data.schema import MANIFEST_SCHEMA
from rsvl.data.store import (
    DatasetWriter,
    QuarantineRecord,
    read_files,
    read_manifest,
    read_meta,
    read_quarantine,
    write_parquet,
    write_quarantine,
)
from rsvl.data.synthetic import optical_scenes, png_bytes
from rsvl.data.synthetic.rs5m_pool import EXPECTED, UNCAPTIONED_VARIANTS, PoolSpec, read_truth, write_rs5m_pool
from rsvl.errors import ConfigError, DataError

CLASSES = ("forest", "water", "parking lot", "industrial")
"""The end-to-end pool's classes: the four the test's colour scorer tells apart without error."""
THRESHOLDS = OutlierConfig(min_image_text_score=0.5, min_rs_score=0.5)


def _colour_features(pixels: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of each channel of a (bands, H, W) or (H, W, 3) image."""
    channels = pixels.reshape(pixels.shape[0], -1) if pixels.shape[0] == 3 else pixels.reshape(-1, 3).T
    channels = channels.astype(np.float64)
    return np.concatenate([channels.mean(axis=1), channels.std(axis=1)])


# 20 scenes per class from seeds the pool never uses ([99, class, i]; the pool draws from [seed, 20..27, i])
CENTROIDS = np.array([np.mean([_colour_features(optical_scenes.DRAWERS[name](np.random.default_rng([99, k, i]))[0])
                               for i in range(20)], axis=0) for k, name in enumerate(CLASSES)])


def image_class(pixels: np.ndarray) -> str:
    """The class whose colour centroid is nearest."""
    return CLASSES[int(((CENTROIDS - _colour_features(pixels)) ** 2).sum(axis=1).argmin())]


def text_class(text: str) -> str | None:
    """The class named first in the text."""
    hits = [(m.start(), name) for name in CLASSES for m in [re.search(rf"\b{name}\b", text.lower())] if m]
    return min(hits)[1] if hits else None


def colour_match_score(images: list[np.ndarray], texts: list[str]) -> list[float]:
    """1 when the caption names the class the pixels' colours say, else 0."""
    return [1.0 if text_class(text) == image_class(image) else 0.0 for image, text in zip(images, texts)]


def texture_rs_score(images: list[np.ndarray]) -> list[float]:
    """Median absolute 4-neighbour Laplacian of the grey image over 5, capped at 1."""
    scores = []
    for image in images:
        grey = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
        lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
        scores.append(min(float(np.median(np.abs(lap))) / 5.0, 1.0))
    return scores


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def as_captioned(pool: Path) -> Path:
    """Give the pool's rows without captions their geo-metadata sentence as caption, in place."""
    table = pq.read_table(pool / "manifest.parquet", schema=MANIFEST_SCHEMA)
    rows = table.to_pylist()
    captions = [row["captions"] or [geo_sentence_for(row)] for row in rows]
    table = table.set_column(table.schema.get_field_index("captions"), MANIFEST_SCHEMA.field("captions"),
                             pa.array(captions, type=MANIFEST_SCHEMA.field("captions").type))
    write_parquet(table, pool / "manifest.parquet")
    return pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pool") / "pool"
    write_rs5m_pool(out, seed=0, classes=CLASSES)
    return as_captioned(out)


@pytest.fixture(scope="module")
def funnelled(pool, tmp_path_factory):
    before = _snapshot(pool)
    out = tmp_path_factory.mktemp("kept") / "kept"
    report = run_funnel(pool, out, FunnelConfig(outliers=THRESHOLDS), image_text_score=colour_match_score,
                        rs_score=texture_rs_score)
    assert _snapshot(pool) == before, "the funnel changed its source"
    return report, out, read_truth(pool)


def _funnel_records(out: Path):
    quarantine = read_quarantine(out)
    return quarantine[quarantine["stage"].str.startswith("funnel.")]


def test_every_stage_removes_exactly_its_planted_rows(funnelled):
    report, out, truth = funnelled
    records = _funnel_records(out)
    kinds = {stage: sorted({truth[s]["kind"] for s in records[records["stage"] == f"funnel.{stage}"]["sample_id"]})
             for stage in STAGES}
    for stage in STAGES:
        removed = set(records[records["stage"] == f"funnel.{stage}"]["sample_id"])
        planted = {sample_id for sample_id, row in truth.items() if row["stage"] == stage}
        hits = len(removed & planted)
        precision, recall = hits / len(removed), hits / len(planted)
        assert (precision, recall) == (1.0, 1.0), f"{stage}: precision {precision:.3f}, recall {recall:.3f}, {kinds}"
    for record in records.itertuples():
        assert record.rule == truth[record.sample_id]["rule"], record
    kept = set(read_manifest(out)["sample_id"])
    assert kept == {sample_id for sample_id, row in truth.items() if row["stage"] is None}
    assert {truth[s]["kind"] for s in kept} == {"rs", "uncaptioned"}


def test_counts_add_up_per_stage(funnelled, pool):
    report, out, truth = funnelled
    records = _funnel_records(out)
    assert [s.stage for s in report.stages] == list(STAGES)
    assert report.rows_in == len(read_manifest(pool)) == len(truth)
    previous = report.rows_in
    for counts in report.stages:
        planted = sum(row["stage"] == counts.stage for row in truth.values())
        assert counts.rows_in == previous == counts.kept + counts.removed
        assert counts.removed == planted == (records["stage"] == f"funnel.{counts.stage}").sum()
        assert sum(counts.by_rule.values()) == counts.removed
        previous = counts.kept
    assert report.rows_kept == previous == len(read_manifest(out)) == sum(r["stage"] is None for r in truth.values())
    assert records["sample_id"].is_unique, "a row was quarantined twice"

    meta = read_meta(out)
    assert meta["funnel"] == json.loads(json.dumps(report.to_dict()))
    assert meta["counts"]["rows"] == report.rows_kept and meta["counts"]["quarantined"] == len(read_quarantine(out))
    assert meta["kind"] == "captioning" and meta["name"] == "synthetic-rs5m-pool-funnel"
    metrics = report.metrics()
    assert metrics["funnel.rows_in"] == len(truth) and metrics["funnel.rows_kept"] == report.rows_kept
    assert metrics["funnel.decode.removed"] == sum(r["stage"] == "decode" for r in truth.values())
    assert metrics["funnel.outliers.in"] == report.stages[3].kept
    assert f"funnel: {len(truth)} rows in" in report.summary() and str(out / "quarantine.parquet") in report.summary()


def test_quarantine_rows_name_stage_row_rule_and_reason(funnelled, pool):
    _, out, truth = funnelled
    position = {sample_id: n for n, sample_id in enumerate(read_manifest(pool)["sample_id"])}
    for record in _funnel_records(out).itertuples():
        row = truth[record.sample_id]
        assert record.stage == f"funnel.{row['stage']}"
        where = f"pool/manifest.parquet row {position[record.sample_id]} (sample_id {record.sample_id!r})"
        assert record.where == where
        assert record.reason
        if row["kind"] in ("exact_duplicate", "near_duplicate"):
            original = row["duplicate_of"]
            assert f"row {position[original]} (sample_id {original!r})" in record.reason, record.reason
        if row["kind"] == "corrupt":
            assert "does not decode" in record.reason and "truncated" in record.reason
        if row["kind"] == "tiny":
            assert "16x16 px" in record.reason
        if row["kind"] == "near_duplicate":
            distance = int(re.search(r"Hamming distance (\d+) of 144 bits", record.reason).group(1))
            assert distance <= NearDuplicateConfig().max_distance
        if row["kind"] == "keyword_photo":
            assert "'is remote sensing' score" in record.reason and "below min_rs_score 0.5" in record.reason
        if row["kind"] == "mismatched":
            assert "image-text score 0.0000" in record.reason


def test_kept_dataset_is_canonical_and_readable(funnelled):
    report, out, truth = funnelled
    samples = ManifestDataset(out)
    assert len(samples) == report.rows_kept
    for index in range(len(samples)):
        sample = samples[index]
        assert sample["image"].shape == (3, optical_scenes.SIZE, optical_scenes.SIZE)
        assert len(sample["captions"]) == 1 and truth[sample["sample_id"]]["stage"] is None
    files = read_files(out)
    assert set(files["path"]) == set(samples.frame["image"])
    for entry in files.itertuples():
        assert hashlib.sha256((out / entry.path).read_bytes()).hexdigest() == entry.sha256
    assert {p.relative_to(out).as_posix() for p in (out / "media").iterdir()} == set(files["path"])

    from rsvl.data.validate import validate_dataset

    validation = validate_dataset(out, max_bad_fraction=0.0)
    assert validation.passed and validation.bad_rows == 0 and validation.rows == report.rows_kept


def test_stages_on_the_full_eight_class_pool(tmp_path):
    """The rule-based stages on the default pool (all eight classes), called one by one."""
    write_rs5m_pool(tmp_path / "pool", seed=0)
    as_captioned(tmp_path / "pool")
    truth = read_truth(tmp_path / "pool")
    rows = read_rows(tmp_path / "pool")
    results = []
    for stage in (lambda r: keyword_stage(r, KeywordMatcher.from_file()), decode_stage, exact_duplicate_stage,
                  near_duplicate_stage):
        results.append(stage(rows))
        rows = results[-1].kept
    for result in results:
        removed = {removal.row.sample_id for removal in result.removed}
        assert removed == {s for s, row in truth.items() if row["stage"] == result.stage}, result.stage
    assert {row.sample_id for row in rows} == {s for s, row in truth.items() if row["stage"] in (None, "outliers")}


def test_rows_quarantined_in_the_source_are_skipped_and_their_records_kept(pool, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(pool, source)
    truth = read_truth(source)
    target = sorted(s for s, row in truth.items() if row["kind"] == "rs")[0]
    record = QuarantineRecord("validate", "manifest.parquet row 0", "caption_words", "test: marked bad", target)
    write_quarantine(source, [record], append=True)
    report = run_funnel(source, tmp_path / "out", FunnelConfig(outliers=THRESHOLDS),
                        image_text_score=colour_match_score, rs_score=texture_rs_score)
    quarantine = read_quarantine(tmp_path / "out")
    assert target not in set(read_manifest(tmp_path / "out")["sample_id"])
    assert list(quarantine[quarantine["sample_id"] == target]["stage"]) == ["validate"]
    assert report.rows_in == len(truth) - 1


# ---------------------------------------------------------------- keywords


@pytest.mark.parametrize("text, hit", [
    ("Aerial view of a farm", "aerial"),
    ("REMOTE-SENSING image of a port", "remote sensing"),
    ("two satellites over Europe", "satellites"),
    ("Bird’s-eye view of the old town", "bird's eye view"),
    ("empty parking lots at night", "parking lots"),
    ("my drone's first flight", "drone"),
    ("a storage-tank farm", "storage tank"),
    ("Sentinel-2 true colour", "sentinel 2"),
    ("the satellited network", None),
    ("aerials", "aerials"),
    ("a photo of a dog on a sofa", None),
    ("Hong Kong SAR skyline", None),
    ("dronedrone", None),
    ("", None),
])
def test_keyword_matcher_matches_whole_words(text, hit):
    assert KeywordMatcher.from_file().find(text) == hit


def test_keyword_list_file_rules(tmp_path):
    packaged = read_keywords(KEYWORDS_FILE)
    assert {"remote sensing", "satellite", "aerial", "parking lot", "bird's eye view"} <= set(packaged)
    assert not {"forest", "river", "map", "sar"} & set(packaged)
    (tmp_path / "bad.txt").write_text("# header\nsatellite\n  ---  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.txt:3: keyword '---' has no letter or digit"):
        read_keywords(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_keywords(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="not found"):
        read_keywords(tmp_path / "missing.txt")
    (tmp_path / "mine.txt").write_text("Lighthouse  # my one keyword\nlighthouse\n", encoding="utf-8")
    assert read_keywords(tmp_path / "mine.txt") == ["lighthouse"]


# ---------------------------------------------------------------- hashes


def test_area_resize_averages_blocks_and_hashes_follow_their_definitions():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (16, 18)).astype(np.float64)
    blocks = grey.reshape(8, 2, 9, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(image_hash.area_resize(grey, 8, 9), blocks, atol=1e-9)
    # a 3-into-2 resize: cell 0 holds pixel 0 and half of pixel 1
    np.testing.assert_allclose(image_hash.area_resize(np.array([[0.0, 6.0, 12.0]]), 1, 2), [[2.0, 10.0]])

    small = rng.integers(0, 256, (1, 8, 9)).astype(np.float32)
    expected = [int(small[0, r, c + 1] > small[0, r, c]) for r in range(8) for c in range(8)]
    bits = np.unpackbits(image_hash.dhash(small, 8)).tolist()
    assert bits == expected

    scipy_fft = pytest.importorskip("scipy.fft")
    signal = rng.random((32, 32))
    basis = image_hash.dct_matrix(32)
    np.testing.assert_allclose(basis @ signal @ basis.T, scipy_fft.dctn(signal, type=2, norm="ortho"), atol=1e-9)
    picture = rng.integers(0, 256, (3, 48, 48)).astype(np.float32)
    grey_small = image_hash.area_resize(image_hash.to_grey(picture), 48, 48)
    block = scipy_fft.dctn(grey_small, type=2, norm="ortho")[:12, :12]
    reference = (block > np.median(block.ravel()[1:])).ravel()
    assert np.unpackbits(image_hash.phash(picture, 12))[:144].astype(bool).tolist() == reference.tolist()

    hashes = rng.integers(0, 256, (5, 8), dtype=np.uint8)
    one = rng.integers(0, 256, 8, dtype=np.uint8)
    expected_distances = [sum(bin(a ^ b).count("1") for a, b in zip(row, one)) for row in hashes.tolist()]
    assert image_hash.hamming(hashes, one).tolist() == expected_distances


def test_hashes_ignore_a_uniform_brightness_change():
    pixels, _ = optical_scenes.draw_forest(np.random.default_rng([5, 1]))
    image = pixels.transpose(2, 0, 1).astype(np.float32)
    assert image.max() + 20 <= 255
    assert np.array_equal(image_hash.dhash(image), image_hash.dhash(image + 20))
    assert np.array_equal(image_hash.phash(image, 12), image_hash.phash(image + 20, 12))
    assert image_hash.pixel_digest(image) != image_hash.pixel_digest(image + 20)


# ---------------------------------------------------------------- stages on small built datasets


def _dataset(root: Path, images: list[np.ndarray], captions: list[str] | None = None) -> Path:
    """A canonical dataset with one PNG per image (``img_<i>``), every row captioned "aerial view"."""
    with DatasetWriter(root, name="t", kind="captioning", adapter="test", source="test") as writer:
        for i, pixels in enumerate(images):
            writer.add_row(sample_id=f"img_{i}", split="train", modality="optical",
                           image=writer.write_bytes(png_bytes(pixels), f"img_{i}.png"),
                           captions=[captions[i] if captions else "aerial view"])
    return root


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def test_decode_stage_rules(tmp_path):
    rng = np.random.default_rng(1)
    images = [_noise(rng, (40, 40, 3)), np.full((40, 40, 3), 128, np.uint8), _noise(rng, (40, 40)),
              _noise(rng, (40, 200, 3)), _noise(rng, (20, 40, 3)), _noise(rng, (40, 160, 3))]
    dataset = _dataset(tmp_path / "d", images)
    result = decode_stage(read_rows(dataset))
    rules = {removal.row.sample_id: removal.rule for removal in result.removed}
    assert rules == {"img_1": "image_flat", "img_2": "image_bands", "img_3": "image_size", "img_4": "image_size"}
    assert [row.sample_id for row in result.kept] == ["img_0", "img_5"]  # 40x160 is exactly the 4.0 aspect limit
    assert all(row.digest for row in result.kept)
    grey_ok = decode_stage(read_rows(dataset), DecodeRules(bands=[1, 3]))
    assert "img_2" in {row.sample_id for row in grey_ok.kept}


def test_decode_stage_names_rows_without_an_image_and_non_finite_arrays(tmp_path):
    array = np.random.default_rng(6).random((3, 40, 40)).astype(np.float32)
    array[1, 5, 5] = np.nan
    with DatasetWriter(tmp_path / "d", name="t", kind="captioning", adapter="test", source="test") as writer:
        writer.add_row(sample_id="no_image", split="train", modality="optical", captions=["aerial"])
        writer.add_row(sample_id="nan", split="train", modality="optical", captions=["aerial"],
                       image=writer.write_array(array, "nan.npy"))
        writer.add_row(sample_id="outside", split="train", modality="optical", captions=["aerial"],
                       image="../elsewhere.png")
    result = decode_stage(read_rows(tmp_path / "d"))
    removed = {removal.row.sample_id: removal for removal in result.removed}
    assert not result.kept
    assert removed["no_image"].rule == "image_present"
    assert removed["nan"].rule == "image_range" and "1 NaN or infinite value" in removed["nan"].reason
    assert removed["outside"].rule == "image_decodes" and "outside the dataset" in removed["outside"].reason


def test_exact_duplicates_compare_pixels_not_files(tmp_path):
    rng = np.random.default_rng(2)
    a, b = _noise(rng, (40, 40, 3)), _noise(rng, (40, 40, 3))
    dataset = _dataset(tmp_path / "d", [a, b, a])
    # the third file gets other bytes for the same pixels (PNG with an optimised deflate stream)
    third = dataset / "media" / "img_2.png"
    Image.fromarray(a).save(third, optimize=True)
    assert third.read_bytes() != (dataset / "media" / "img_0.png").read_bytes()
    result = exact_duplicate_stage(read_rows(dataset))
    assert [row.sample_id for row in result.kept] == ["img_0", "img_1"]
    assert [removal.row.sample_id for removal in result.removed] == ["img_2"]
    assert "sample_id 'img_0'" in result.removed[0].reason


def _embed_by_brightness(vectors: dict[int, list[float]]):
    """An embedding that maps an image, by its mean pixel value, to a chosen vector."""
    def embed(images: list[np.ndarray]) -> np.ndarray:
        return np.array([vectors[int(round(float(image.mean())))] for image in images], dtype=np.float32)
    return embed


def _flat_with_dot(level: int) -> np.ndarray:
    pixels = np.full((40, 40, 3), level, np.uint8)
    pixels[0, 0] = level + 1 if level < 255 else level - 1  # not flat, same rounded mean
    return pixels


def test_embedding_near_duplicates_chain_and_threshold(tmp_path):
    pytest.importorskip("faiss")
    angle = {10: 0.0, 20: 20.0, 30: 40.0, 40: 90.0, 50: 25.0}  # degrees
    vectors = {level: [math.cos(math.radians(a)), math.sin(math.radians(a))] for level, a in angle.items()}
    dataset = _dataset(tmp_path / "d", [_flat_with_dot(level) for level in angle])
    cfg = NearDuplicateConfig(method="embedding", min_cosine=math.cos(math.radians(25.0)) - 1e-6)
    result = near_duplicate_stage(read_rows(dataset), cfg, embed=_embed_by_brightness(vectors), batch_size=2)
    # 20° is within 25° of 0° (removed); 40° is compared with the kept 0° row, not the removed 20° one (kept);
    # 90° is far from all; 25° lies 15° from the kept 40° row and exactly 25° from 0°, so it goes as 40°'s copy
    assert [row.sample_id for row in result.kept] == ["img_0", "img_2", "img_3"]
    removed = {removal.row.sample_id: removal.reason for removal in result.removed}
    assert set(removed) == {"img_1", "img_4"}
    assert "sample_id 'img_0'" in removed["img_1"] and "sample_id 'img_2'" in removed["img_4"]

    with pytest.raises(ConfigError, match="needs an embed function"):
        near_duplicate_stage(read_rows(dataset), cfg)
    with pytest.raises(DataError, match="zero or non-finite"):
        near_duplicate_stage(read_rows(dataset), cfg, embed=lambda images: np.zeros((len(images), 2)))


def test_embedding_stage_agrees_with_a_brute_force_reference(pool):
    pytest.importorskip("faiss")
    rows = read_rows(pool)[:40]

    def embed(images):  # low-frequency DCT coefficients of the grey thumbnail, the DC term left out
        basis = image_hash.dct_matrix(32)
        return np.array([(basis @ image_hash.area_resize(image_hash.to_grey(i), 32, 32) @ basis.T)[:8, :8].ravel()[1:]
                         for i in images])

    readable = decode_stage(rows).kept
    cfg = NearDuplicateConfig(method="embedding", min_cosine=0.97)
    result = near_duplicate_stage(readable, cfg, embed=embed)
    vectors = embed([row.load() for row in readable])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = vectors @ vectors.T
    assert not np.any(np.abs(cosines - cfg.min_cosine) < 1e-4), "a pair at the threshold: float32 could tip it"
    kept: list[int] = []
    for i in range(len(readable)):
        if not kept or max(cosines[i, j] for j in kept) < cfg.min_cosine:
            kept.append(i)
    assert [row.sample_id for row in result.kept] == [readable[i].sample_id for i in kept]
    assert len(result.removed) > 0


# ---------------------------------------------------------------- outlier scores


def test_outlier_thresholds_and_rules(tmp_path):
    rng = np.random.default_rng(4)
    dataset = _dataset(tmp_path / "d", [_noise(rng, (40, 40, 3)) for _ in range(4)],
                       ["aerial a", "aerial b", "aerial c", "aerial d"])
    rows = read_rows(dataset)
    scores = {"aerial a": 0.30, "aerial b": 0.2999, "aerial c": 0.9, "aerial d": 0.1}
    looks = iter([0.5, 0.9, 0.4999, 0.2])  # handed out in row order, batch after batch
    cfg = OutlierConfig(min_image_text_score=0.30, min_rs_score=0.5)
    result = outlier_stage(rows, lambda images, texts: [scores[t] for t in texts],
                           lambda images: [next(looks) for _ in images], cfg, batch_size=3)
    assert [row.sample_id for row in result.kept] == ["img_0"]  # both scores exactly at their thresholds
    rules = {removal.row.sample_id: removal for removal in result.removed}
    assert rules["img_1"].rule == "image_text_score" and "0.2999" in rules["img_1"].reason
    assert rules["img_2"].rule == "rs_score" and "image-text" not in rules["img_2"].reason
    assert rules["img_3"].rule == "rs_score" and "image-text score 0.1000" in rules["img_3"].reason

    with pytest.raises(DataError, match="image_text_score returned 1 scores for 3 inputs"):
        outlier_stage(rows, lambda images, texts: [1.0], lambda images: [1.0] * len(images), cfg, batch_size=3)
    with pytest.raises(DataError, match="NaN"):
        outlier_stage(rows, lambda images, texts: [float("nan")] * len(texts), lambda images: [1.0] * len(images), cfg)


def test_zero_shot_rs_score_is_the_two_class_softmax(tmp_path):
    rng = np.random.default_rng(5)
    images = [_noise(rng, (8, 8, 3)).transpose(2, 0, 1).astype(np.float32) for _ in range(3)]
    rs_prompts, other_prompts = ["a satellite image.", "an aerial image."], ["a photo."]

    def cosine(batch, texts):  # a fake CLIP: satellite-ish prompts score by image mean, photos a constant
        return [float(image.mean()) / 1000 if "photo" not in text else 0.12 for image, text in zip(batch, texts)]

    scores = zero_shot_rs_score(cosine, rs_prompts, other_prompts, logit_scale=100.0)(images)
    for image, score in zip(images, scores):
        margin = 100.0 * (float(image.mean()) / 1000 - 0.12)
        assert score == pytest.approx(1.0 / (1.0 + math.exp(-margin)), rel=1e-12)
    huge = zero_shot_rs_score(lambda b, t: [0.0 if "photo" in x else 50.0 for x in t], rs_prompts, other_prompts)
    assert huge(images).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError):
        zero_shot_rs_score(cosine, [], other_prompts)


def test_run_funnel_defaults_to_the_zero_shot_rs_score(pool, tmp_path):
    """Without an rs_score the funnel asks the image-text scorer about the configured prompts."""
    asked: set[str] = set()

    def scorer(images, texts):
        asked.update(texts)
        return [1.0] * len(texts)

    report = run_funnel(pool, tmp_path / "out", FunnelConfig(outliers=THRESHOLDS), image_text_score=scorer)
    assert set(OutlierConfig().rs_prompts + OutlierConfig().other_prompts) <= asked
    assert report.stages[-1].removed == 0  # equal scores: probability 0.5, at the threshold
    assert read_meta(tmp_path / "out")["funnel"]["scorers"]["rs_score"] == "zero_shot_rs_score"


def test_run_funnel_refuses_bad_places(pool, tmp_path):
    with pytest.raises(DataError, match="must not be the dataset"):
        run_funnel(pool, pool / "inside", image_text_score=colour_match_score)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="dataset.json is missing"):
        run_funnel(tmp_path / "empty", tmp_path / "out", image_text_score=colour_match_score)


def test_config_rules():
    with pytest.raises(ValidationError, match="below the 64 bits"):
        NearDuplicateConfig(hash_size=8, max_distance=64)
    with pytest.raises(ValidationError, match="greater than max_side"):
        DecodeRules(min_side=100, max_side=50)
    with pytest.raises(ValidationError):
        FunnelConfig.model_validate({"near_duplicates": {"method": "ahash"}})
    assert FunnelConfig().near_duplicates.method == "phash"


# ---------------------------------------------------------------- the pool generator


def test_pool_is_deterministic_and_its_truth_holds(tmp_path):
    write_rs5m_pool(tmp_path / "a", seed=3, spec=PoolSpec(per_class=4, exact_duplicates=4, near_duplicates=6))
    write_rs5m_pool(tmp_path / "b", seed=3, spec=PoolSpec(per_class=4, exact_duplicates=4, near_duplicates=6))
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")
    write_rs5m_pool(tmp_path / "c", seed=4, spec=PoolSpec(per_class=4, exact_duplicates=4, near_duplicates=6))
    assert _snapshot(tmp_path / "a") != _snapshot(tmp_path / "c")

    dataset = tmp_path / "a"
    truth = read_truth(dataset)
    manifest = read_manifest(dataset)
    assert list(manifest["sample_id"]) == sorted(truth)
    spec = PoolSpec(per_class=4, exact_duplicates=4, near_duplicates=6)
    counts = {kind: sum(row["kind"] == kind for row in truth.values()) for kind in EXPECTED}
    assert counts == {"rs": 4 * len(optical_scenes.DRAWERS), "photo": spec.photos, "corrupt": spec.corrupt,
                      "tiny": spec.tiny, "exact_duplicate": 4, "near_duplicate": 6, "mismatched": spec.mismatched,
                      "keyword_photo": spec.keyword_photos, "uncaptioned": spec.uncaptioned}
    image = dict(zip(manifest["sample_id"], manifest["image"]))

    def pixels(sample_id):
        with Image.open(dataset / image[sample_id]) as picture:
            return np.asarray(picture.convert("RGB"))

    position = {sample_id: n for n, sample_id in enumerate(manifest["sample_id"])}
    matcher = KeywordMatcher.from_file()
    records = {record["sample_id"]: record for record in manifest.to_dict("records")}
    metadata = ("label", "lat", "lon", "timestamp")
    variants = []
    for sample_id, row in truth.items():
        record = records[sample_id]
        if row["kind"] != "uncaptioned":
            assert len(record["captions"]) == 1 and all(record[key] is None for key in metadata)
            continue
        assert record["captions"] == [] and record["label"] == row["image_class"] and row["caption_class"] is None
        variants.append(row["variant"])
        if row["variant"] == "label only":
            assert record["lat"] is None and record["lon"] is None and record["timestamp"] is None
        else:
            assert any(box.lat_min <= record["lat"] <= box.lat_max and box.lon_min <= record["lon"] <= box.lon_max
                       for box in country_boxes())
            assert re.fullmatch(r"20(1[7-9]|2[01])-\d\d-\d\dT(09|10):\d\d:\d\d\+00:00", record["timestamp"])
    assert sorted(variants) == sorted(UNCAPTIONED_VARIANTS * (spec.uncaptioned // 2))
    captions = {sample_id: record["captions"][0] for sample_id, record in records.items() if record["captions"]}
    file_differs = 0
    for sample_id, row in truth.items():
        assert (row["stage"], row["rule"]) == EXPECTED[row["kind"]]
        if row["kind"] == "uncaptioned":
            continue
        has_keyword = matcher.find(captions[sample_id]) is not None
        assert has_keyword == (row["kind"] != "photo"), captions[sample_id]
        if row["duplicate_of"] is None:
            continue
        original = row["duplicate_of"]
        assert position[original] < position[sample_id] and truth[original]["kind"] == "rs"
        if row["kind"] == "exact_duplicate":
            assert np.array_equal(pixels(sample_id), pixels(original))
            file_differs += (dataset / image[sample_id]).read_bytes() != (dataset / image[original]).read_bytes()
        else:
            copy, source = pixels(sample_id), pixels(original)
            assert copy.shape != source.shape or not np.array_equal(copy, source)
    assert file_differs == 2  # half the exact copies carry a metadata chunk
    for sample_id, row in truth.items():
        if row["kind"] == "corrupt":
            with pytest.raises(OSError), Image.open(dataset / image[sample_id]) as picture:
                picture.load()
        if row["kind"] == "mismatched":
            assert row["caption_class"] != row["image_class"]
            assert row["caption_class"] in captions[sample_id].split(".")[0]


@pytest.mark.slow
def test_pool_is_the_same_bytes_under_the_baseline_cpu_dispatch(tmp_path):
    """Written again with NumPy's and torch's AVX2/AVX-512 kernels disabled (as test_generate_any_cpu does)."""
    write_rs5m_pool(tmp_path / "native", seed=1)
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
           "ATEN_CPU_CAPABILITY": "default"}
    code = ("from rsvl.data.synthetic.rs5m_pool import write_rs5m_pool; "
            f"write_rs5m_pool({str(tmp_path / 'base')!r}, seed=1)")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert _snapshot(tmp_path / "base") == _snapshot(tmp_path / "native")


def test_pool_refuses_impossible_specs(tmp_path):
    with pytest.raises(DataError, match="unknown classes"):
        write_rs5m_pool(tmp_path / "p", classes=["moon"])
    with pytest.raises(DataError, match="duplicates need"):
        write_rs5m_pool(tmp_path / "p", classes=["forest"], spec=PoolSpec(per_class=2))
    with pytest.raises(DataError, match="two classes"):
        write_rs5m_pool(tmp_path / "p", classes=["forest"], spec=PoolSpec(exact_duplicates=1, near_duplicates=1))
