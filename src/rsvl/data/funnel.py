"""The RS5M data-construction funnel: filter a pool of image–text pairs down to remote-sensing pairs.

Five stages run in order, each a function from rows to a :class:`StageResult` (the rows kept and
the rows removed, each with a rule and a reason):

1. :func:`keyword_stage`: a caption must contain a remote-sensing keyword
   (:mod:`rsvl.data.keywords`, the list in ``tables/rs_keywords.txt``);
2. :func:`decode_stage`: the image decodes (:func:`rsvl.data.media.load_raster`, the loader every
   reader uses) and has a sane size, band count and value range;
3. :func:`exact_duplicate_stage`: the SHA-256 of the decoded pixels was not seen before (the first
   occurrence in manifest order is kept, so a re-encoded copy is caught too);
4. :func:`near_duplicate_stage`: no earlier kept row is within ``max_distance`` bits of the row's
   perceptual hash (dHash or pHash, :mod:`rsvl.data.image_hash`), or within ``min_cosine`` of its
   embedding (FAISS inner product); a row is compared with the rows kept so far, so each removed
   row names the kept row it copies;
5. :func:`outlier_stage`: the image–text score (a callable: the current CLIP's cosine) and the
   "is remote sensing" score (a callable; default :func:`zero_shot_rs_score`, CLIP zero-shot
   "satellite image" against "photo") must reach their thresholds.

:func:`run_funnel` runs them on a canonical dataset and writes a canonical dataset of the kept rows.
Nothing is dropped silently: every removed row is a ``quarantine.parquet`` record with stage
``funnel.<stage>``, the rule it broke and why, next to the source's own quarantine records, and
``dataset.json`` holds the per-stage counts (``funnel``; :func:`funnel_metrics` reads them back as
MLflow metrics). A source whose ``dataset.json`` names a ground-truth file (``truth_file``, the
synthetic pool's ``truth.json``) passes it on to the output. Settings: :class:`rsvl.config.funnel.FunnelConfig`.

Each stage that needs pixels decodes the images again (decode, near duplicates, outliers in
batches), so no stage holds every image at once; the near-duplicate stage keeps one hash (or
embedding) per row, and compares each row with all rows kept so far (quadratic in the pool size:
fine for pools of tens of thousands, not for RS5M's millions without an approximate index).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsvl.config.funnel import DecodeRules, FunnelConfig, NearDuplicateConfig, OutlierConfig
from rsvl.data import image_hash
from rsvl.data.facts import VALUE_RANGES, value_range
from rsvl.data.keywords import KEYWORDS_FILE, KeywordMatcher
from rsvl.data.media import load_raster
from rsvl.data.schema import MANIFEST_SCHEMA, MEDIA_COLUMNS
from rsvl.data.store import (
    MANIFEST_FILE,
    MEDIA_DIR,
    META_FILE,
    QUARANTINE_FILE,
    DatasetWriter,
    QuarantineRecord,
    quarantined_ids,
    read_manifest,
    read_meta,
    read_quarantine,
    relative_to_dataset,
    sha256_file,
    write_quarantine,
)
from rsvl.errors import ConfigError, DataError

STAGES = ("keyword", "decode", "exact_duplicates", "near_duplicates", "outliers")
"""Stage names, in the order the funnel runs them."""
STAGE_PREFIX = "funnel."
"""Quarantine records of stage ``s`` carry ``stage = "funnel.s"``."""
ADAPTER = "rsvl.data.funnel"
TRUTH_META_KEY = "truth_file"
"""``dataset.json`` key naming a ground-truth file beside the manifest (the synthetic pool's ``truth.json``)."""
_META_OWN = ("schema_version", "name", "kind", "adapter", "source", "counts", "filter", "funnel", "raw_pool")
"""Keys of the source's dataset.json the funnel's output does not carry (a funnelled pool is no longer raw)."""

ImageTextScorer = Callable[[list[np.ndarray], list[str]], Sequence[float]]
"""``(images, texts) -> scores``: one score per (image, text) pair.

Images are float32 (bands, height, width) with their stored values (0..255 for 8-bit files), as
:func:`rsvl.data.media.load_raster` returns them; the scorer applies its model's preprocessing."""
RsScorer = Callable[[list[np.ndarray]], Sequence[float]]
"""``(images) -> scores``: how likely each image is remote sensing (higher is more likely)."""
Embedder = Callable[[list[np.ndarray]], np.ndarray]
"""``(images) -> (n, d) embeddings`` for the ``embedding`` near-duplicate method."""


@dataclass(eq=False)
class FunnelRow:
    """One manifest row travelling through the funnel.

    Attributes:
        index: Row number in the source manifest (as stored, from 0).
        record: The manifest columns.
        dataset_dir: The source dataset (media paths are relative to it).
        digest: SHA-256 of the decoded pixels, set by the decode stage.
    """

    index: int
    record: dict[str, Any]
    dataset_dir: Path
    digest: str | None = None

    @property
    def sample_id(self) -> str:
        """The row's ``sample_id``."""
        return self.record["sample_id"]

    @property
    def where(self) -> str:
        """The source row as quarantine records name it: ``pool/manifest.parquet row 3 (sample_id 'x')``.

        The source dataset's folder name comes first: the funnel's output lists the row in its own
        quarantine table, where a bare ``manifest.parquet`` would read as the output's manifest.
        """
        return f"{self.dataset_dir.name}/{MANIFEST_FILE} row {self.index} (sample_id {self.sample_id!r})"

    def texts(self) -> list[str]:
        """The row's non-blank short captions, else its long caption, else nothing."""
        texts = [c for c in self.record.get("captions") or [] if c and c.strip()]
        long_caption = self.record.get("long_caption")
        if not texts and long_caption and long_caption.strip():
            texts = [long_caption]
        return texts

    def load(self) -> np.ndarray:
        """Decode the row's image as float32 (bands, height, width).

        Raises:
            DataError: No image, a path outside the dataset, or a file that does not decode.
        """
        rel = self.record.get("image")
        if rel is None:
            raise DataError(f"{self.where}: the row has no image")
        return load_raster(relative_to_dataset(self.dataset_dir, rel))


@dataclass(frozen=True)
class Removal:
    """A row a stage removed, the rule it broke and why."""

    row: FunnelRow
    rule: str
    reason: str

    def record(self, stage: str) -> QuarantineRecord:
        """The quarantine record of this removal in ``stage`` (stage ``funnel.<stage>``)."""
        return QuarantineRecord(f"{STAGE_PREFIX}{stage}", self.row.where, self.rule, self.reason, self.row.sample_id)


@dataclass(frozen=True)
class StageCounts:
    """Rows into one stage, removed by it and kept.

    Attributes:
        stage: Stage name (one of :data:`STAGES`).
        rows_in: Rows the stage saw.
        removed: Rows it removed.
        kept: Rows it passed on (``rows_in - removed``).
        by_rule: Removed rows per rule.
    """

    stage: str
    rows_in: int
    removed: int
    kept: int
    by_rule: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        return {"stage": self.stage, "rows_in": self.rows_in, "removed": self.removed, "kept": self.kept,
                "by_rule": dict(sorted(self.by_rule.items()))}


@dataclass
class StageResult:
    """What one stage did: the rows it kept (in order) and the rows it removed (in order)."""

    stage: str
    kept: list[FunnelRow]
    removed: list[Removal]

    def counts(self) -> StageCounts:
        """The stage's :class:`StageCounts`."""
        by_rule: dict[str, int] = {}
        for removal in self.removed:
            by_rule[removal.rule] = by_rule.get(removal.rule, 0) + 1
        return StageCounts(self.stage, len(self.kept) + len(self.removed), len(self.removed), len(self.kept), by_rule)

    def records(self) -> list[QuarantineRecord]:
        """One quarantine record per removed row."""
        return [removal.record(self.stage) for removal in self.removed]


@dataclass(frozen=True)
class FunnelReport:
    """Counts of a funnel run and where its output went.

    Attributes:
        out_dir: The dataset of kept rows.
        source: The funnelled dataset.
        stages: Per-stage counts, in run order.
        settings: The config, keyword list and scorers used (JSON-ready), for ``dataset.json``.
    """

    out_dir: Path
    source: Path
    stages: tuple[StageCounts, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        """Rows that entered the funnel."""
        return self.stages[0].rows_in if self.stages else 0

    @property
    def rows_kept(self) -> int:
        """Rows that passed every stage."""
        return self.stages[-1].kept if self.stages else 0

    def summary(self) -> str:
        """One line: rows in, removed per stage (with rules), rows kept and the quarantine table."""
        parts = []
        for stage in self.stages:
            rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(stage.by_rule.items()))
            parts.append(f"{stage.stage} -{stage.removed}" + (f" ({rules})" if rules else ""))
        return (f"funnel: {self.rows_in} rows in; " + "; ".join(parts) + f"; {self.rows_kept} kept in {self.out_dir}; "
                f"removed rows are listed with stage and reason in {self.out_dir / QUARANTINE_FILE}")

    def to_dict(self) -> dict[str, Any]:
        """The report as the ``funnel`` entry of ``dataset.json``."""
        return {"rows_in": self.rows_in, "rows_kept": self.rows_kept,
                "stages": [stage.to_dict() for stage in self.stages], **self.settings}

    def metrics(self) -> dict[str, float]:
        """Counts as MLflow metrics: ``funnel.rows_in``, ``funnel.rows_kept``, ``funnel.<stage>.{in,removed,kept}``."""
        return metrics_of(self.to_dict())


def metrics_of(entry: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of a ``funnel`` entry of ``dataset.json`` (:meth:`FunnelReport.to_dict`).

    Counts: ``funnel.rows_in``, ``funnel.rows_kept`` and ``funnel.<stage>.{in,removed,kept}``. When
    the entry has ground-truth scores (``truth``, :mod:`rsvl.data.funnel_truth`), also
    ``funnel.<stage>.precision`` and ``funnel.<stage>.recall`` where defined (``<stage>`` ``kept``
    for the rows the funnel kept).

    Args:
        entry: The ``funnel`` entry.

    Returns:
        ``{name: value}``.
    """
    values: dict[str, float] = {"funnel.rows_in": entry["rows_in"], "funnel.rows_kept": entry["rows_kept"]}
    for stage in entry["stages"]:
        name = stage["stage"]
        values.update({f"funnel.{name}.in": stage["rows_in"], f"funnel.{name}.removed": stage["removed"],
                       f"funnel.{name}.kept": stage["kept"]})
    for score in (entry.get("truth") or {}).get("stages", []):
        for measure in ("precision", "recall"):
            if score.get(measure) is not None and math.isfinite(score[measure]):
                values[f"funnel.{score['stage']}.{measure}"] = score[measure]
    return values


def funnel_metrics(dataset_dir: str | Path) -> dict[str, float]:
    """The funnel's MLflow metrics (:func:`metrics_of`) as the dataset's ``dataset.json`` records them.

    Args:
        dataset_dir: A canonical dataset (a funnel's output, or a dataset made from one).

    Returns:
        The metrics; empty when no funnel made the dataset.
    """
    entry = read_meta(dataset_dir).get("funnel")
    return metrics_of(entry) if entry else {}


def _workers(workers: int | None) -> int:
    return workers or min(8, os.cpu_count() or 1)


def _parallel(fn: Callable, rows: Sequence[FunnelRow], workers: int | None) -> list:
    """``[fn(row) for row in rows]`` on a thread pool (decoding releases the GIL), in row order."""
    with ThreadPoolExecutor(max_workers=_workers(workers)) as pool:
        return list(pool.map(fn, rows))


def read_rows(dataset_dir: str | Path) -> list[FunnelRow]:
    """The rows of a canonical dataset that validation did not quarantine, with their row numbers.

    Args:
        dataset_dir: A canonical dataset directory.

    Returns:
        One :class:`FunnelRow` per readable manifest row, in manifest order.
    """
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir, include_quarantined=True)
    rejected = quarantined_ids(dataset_dir)
    return [FunnelRow(index, record, dataset_dir) for index, record in enumerate(manifest.to_dict("records"))
            if record["sample_id"] not in rejected]


def keyword_stage(rows: Sequence[FunnelRow], matcher: KeywordMatcher) -> StageResult:
    """Keep the rows with a remote-sensing keyword in a caption (any of the row's :meth:`~FunnelRow.texts`).

    Args:
        rows: Input rows.
        matcher: The keyword matcher.

    Returns:
        The stage result; removals have rule ``rs_keyword``.
    """
    kept, removed = [], []
    for row in rows:
        texts = row.texts()
        if any(matcher.find(text) for text in texts):
            kept.append(row)
        elif not texts:
            removed.append(Removal(row, "rs_keyword", "the row has no caption to look for a remote-sensing keyword in"))
        else:
            removed.append(Removal(row, "rs_keyword", f"none of its {len(texts)} caption(s) contains a remote-sensing "
                                                      f"keyword of {matcher.source} (whole words, any case)"))
    return StageResult("keyword", kept, removed)


def _check_image(row: FunnelRow, rules: DecodeRules) -> tuple[str, str] | None:
    """Decode one row's image, store its pixel digest and return ``(rule, reason)`` when it fails."""
    rel = row.record.get("image")
    if rel is None:
        return "image_present", "the row has no image (the image column is empty)"
    try:
        pixels = row.load()
    except DataError as err:
        return "image_decodes", f"the image does not decode: {err}"
    bands, height, width = pixels.shape
    if bands not in rules.bands:
        return "image_bands", f"the image {rel} has {bands} band(s); accepted: {rules.bands}"
    short, long = min(height, width), max(height, width)
    if short < rules.min_side or long > rules.max_side or long / short > rules.max_aspect:
        return "image_size", (f"the image {rel} is {width}x{height} px; sides must lie in "
                              f"{rules.min_side}..{rules.max_side} px with an aspect ratio up to {rules.max_aspect}")
    finite = np.isfinite(pixels)
    if not finite.all():
        return "image_range", f"the image {rel} has {int(pixels.size - finite.sum())} NaN or infinite value(s)"
    low, high = float(pixels.min()), float(pixels.max())
    expected = value_range("image", rel, row.record.get("modality"))
    if expected is not None:
        lo, hi = VALUE_RANGES[expected]
        if low < lo or high > hi:
            return "image_range", (f"the image {rel} has values {low:g}..{high:g} outside the {expected} "
                                   f"range {lo:g}..{hi:g}")
    if high - low < rules.min_value_range:
        return "image_flat", (f"the image {rel} is flat (values {low:g}..{high:g}, range below "
                              f"{rules.min_value_range:g}): a placeholder, not a picture")
    row.digest = image_hash.pixel_digest(pixels)
    return None


def decode_stage(rows: Sequence[FunnelRow], rules: DecodeRules | None = None,
                 workers: int | None = None) -> StageResult:
    """Keep the rows whose image decodes and meets ``rules``; records each kept row's pixel digest.

    Args:
        rows: Input rows.
        rules: Size, band and value rules (default: :class:`DecodeRules` defaults).
        workers: Decoding threads (default: CPU count, at most 8).

    Returns:
        The stage result; removals have rule ``image_present``, ``image_decodes``, ``image_bands``,
        ``image_size``, ``image_range`` or ``image_flat`` (the first one broken, in that order).
    """
    rules = rules or DecodeRules()
    outcomes = _parallel(lambda row: _check_image(row, rules), rows, workers)
    kept = [row for row, outcome in zip(rows, outcomes) if outcome is None]
    removed = [Removal(row, *outcome) for row, outcome in zip(rows, outcomes) if outcome is not None]
    return StageResult("decode", kept, removed)


def exact_duplicate_stage(rows: Sequence[FunnelRow], workers: int | None = None) -> StageResult:
    """Remove rows whose decoded pixels equal an earlier row's (the first occurrence is kept).

    Args:
        rows: Input rows (decoded by :func:`decode_stage`, or decoded here when their digest is unset).
        workers: Decoding threads for rows without a digest.

    Returns:
        The stage result; removals have rule ``exact_duplicate`` and name the kept row.
    """
    missing = [row for row in rows if row.digest is None]
    for row, digest in zip(missing, _parallel(lambda r: image_hash.pixel_digest(r.load()), missing, workers)):
        row.digest = digest
    first: dict[str, FunnelRow] = {}
    kept, removed = [], []
    for row in rows:
        original = first.setdefault(row.digest, row)
        if original is row:
            kept.append(row)
        else:
            removed.append(Removal(row, "exact_duplicate", f"its decoded pixels equal those of {original.where} "
                                                           f"(pixel sha256 {row.digest[:16]}...)"))
    return StageResult("exact_duplicates", kept, removed)


def _hash_duplicates(rows: Sequence[FunnelRow], cfg: NearDuplicateConfig, workers: int | None) -> StageResult:
    hasher = image_hash.dhash if cfg.method == "dhash" else image_hash.phash
    hashes = _parallel(lambda row: hasher(row.load(), cfg.hash_size), rows, workers)
    bits = cfg.hash_size ** 2
    kept: list[FunnelRow] = []
    # the kept rows' hashes fill this table from the top; row i of it is kept[i]'s hash
    table = np.zeros((len(rows), len(hashes[0]) if hashes else 0), dtype=np.uint8)
    removed = []
    for row, value in zip(rows, hashes):
        if kept:
            distances = image_hash.hamming(table[:len(kept)], value)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= cfg.max_distance:
                removed.append(Removal(row, "near_duplicate", (
                    f"near duplicate of {kept[nearest].where}: {cfg.method} Hamming distance {int(distances[nearest])}"
                    f" of {bits} bits, within max_distance {cfg.max_distance}")))
                continue
        table[len(kept)] = value
        kept.append(row)
    return StageResult("near_duplicates", kept, removed)


def _embeddings(rows: Sequence[FunnelRow], embed: Embedder, batch_size: int) -> np.ndarray:
    """L2-normalised float32 embeddings of the rows' images, ``batch_size`` images per call."""
    chunks = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        vectors = np.asarray(embed([row.load() for row in batch]), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(batch):
            raise DataError(f"embed returned shape {vectors.shape} for {len(batch)} images; expected (n, d) with "
                            f"n = {len(batch)} (rows from {batch[0].where})")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        bad = [row.where for row, ok in zip(batch, np.isfinite(vectors).all(axis=1) & (norms[:, 0] > 0)) if not ok]
        if bad:
            raise DataError(f"embed returned a zero or non-finite embedding for {', '.join(bad)}")
        chunks.append(vectors / norms)
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def _embedding_duplicates(rows: Sequence[FunnelRow], cfg: NearDuplicateConfig, embed: Embedder | None,
                          batch_size: int) -> StageResult:
    if embed is None:
        raise ConfigError("near_duplicates.method 'embedding' needs an embed function (images -> vectors)")
    try:
        import faiss
    except ImportError as err:
        raise ConfigError("near_duplicates.method 'embedding' needs faiss-cpu (pip install faiss-cpu); "
                          "or use method 'dhash'/'phash'") from err
    if not rows:
        return StageResult("near_duplicates", [], [])
    vectors = _embeddings(rows, embed, batch_size)
    # inner product of unit vectors is their cosine; the flat index searches exactly
    index = faiss.IndexFlatIP(vectors.shape[1])
    kept: list[FunnelRow] = []
    removed = []
    for row, vector in zip(rows, vectors):
        if index.ntotal:
            scores, ids = index.search(vector[None, :], 1)
            if scores[0, 0] >= cfg.min_cosine:
                removed.append(Removal(row, "near_duplicate", (
                    f"near duplicate of {kept[int(ids[0, 0])].where}: embedding cosine {float(scores[0, 0]):.4f},"
                    f" at least min_cosine {cfg.min_cosine}")))
                continue
        index.add(vector[None, :])
        kept.append(row)
    return StageResult("near_duplicates", kept, removed)


def near_duplicate_stage(rows: Sequence[FunnelRow], cfg: NearDuplicateConfig | None = None, *,
                         embed: Embedder | None = None, batch_size: int = 64,
                         workers: int | None = None) -> StageResult:
    """Remove rows that nearly copy an earlier kept row (a crop, a brightness change, re-compression).

    Rows are visited in order; a row is compared with the rows kept so far and removed when the
    closest of them is within the threshold, else kept. So chains do not collapse: C is compared
    with A, the kept leader, not with B that was removed as A's copy.

    Args:
        rows: Input rows.
        cfg: Method and threshold (default: pHash, 34 of 144 bits).
        embed: Image embedding function, needed by the ``embedding`` method.
        batch_size: Images per ``embed`` call.
        workers: Decoding and hashing threads.

    Returns:
        The stage result; removals have rule ``near_duplicate`` and name the kept row and the distance.

    Raises:
        ConfigError: Method ``embedding`` without ``embed`` or without faiss-cpu installed.
        DataError: ``embed`` returned a wrong shape or a zero/non-finite vector.
    """
    cfg = cfg or NearDuplicateConfig()
    if cfg.method == "embedding":
        return _embedding_duplicates(rows, cfg, embed, batch_size)
    return _hash_duplicates(rows, cfg, workers)


def _scores(values: Sequence[float], expected: int, name: str, rows: Sequence[FunnelRow]) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(scores) != expected:
        raise DataError(f"{name} returned {len(scores)} scores for {expected} inputs (rows from {rows[0].where})")
    return scores


def zero_shot_rs_score(image_text_score: ImageTextScorer, rs_prompts: Sequence[str], other_prompts: Sequence[str],
                       logit_scale: float = 100.0) -> RsScorer:
    """The default "is remote sensing" score: CLIP zero-shot, remote-sensing prompts against photo prompts.

    For an image, ``s_rs`` and ``s_other`` are the mean image–text scores over the two prompt sets;
    the score is the softmax probability of the first, ``1 / (1 + exp(-logit_scale (s_rs - s_other)))``,
    as CLIP's zero-shot classifier with two classes and its logit scale would give.

    Args:
        image_text_score: The pair scorer (CLIP cosine).
        rs_prompts: Remote-sensing prompts (``OutlierConfig.rs_prompts``).
        other_prompts: Everyday-photo prompts (``OutlierConfig.other_prompts``).
        logit_scale: Multiplier of the difference (CLIP's 100).

    Returns:
        ``(images) -> scores`` in ``[0, 1]``.
    """
    prompts = [*rs_prompts, *other_prompts]
    if not rs_prompts or not other_prompts:
        raise ConfigError("zero_shot_rs_score needs at least one remote-sensing and one other prompt")

    def rs_score(images: list[np.ndarray]) -> np.ndarray:
        pairs = np.asarray(image_text_score([image for image in images for _ in prompts], prompts * len(images)),
                           dtype=np.float64).reshape(-1)
        if len(pairs) != len(images) * len(prompts):
            raise DataError(f"image_text_score returned {len(pairs)} scores for {len(images) * len(prompts)} pairs")
        grid = pairs.reshape(len(images), len(prompts))
        margin = logit_scale * (grid[:, :len(rs_prompts)].mean(axis=1) - grid[:, len(rs_prompts):].mean(axis=1))
        # the logistic written per sign, so a large margin never overflows exp
        return np.where(margin >= 0, 1.0 / (1.0 + np.exp(-np.abs(margin))),
                        np.exp(-np.abs(margin)) / (1.0 + np.exp(-np.abs(margin))))

    return rs_score


def outlier_stage(rows: Sequence[FunnelRow], image_text_score: ImageTextScorer, rs_score: RsScorer | None = None,
                  cfg: OutlierConfig | None = None, *, batch_size: int = 64) -> StageResult:
    """Remove rows that do not look like remote sensing or whose captions do not match the image.

    A row's image–text score is the mean of its captions' scores (:meth:`FunnelRow.texts`). A row
    below ``min_rs_score`` is removed with rule ``rs_score`` (the reason also says when the
    image–text score failed too); else a row below ``min_image_text_score`` with rule
    ``image_text_score``. A score equal to its threshold passes.

    Args:
        rows: Input rows.
        image_text_score: ``(images, texts) -> scores`` (the integrator passes the current CLIP's cosine).
        rs_score: ``(images) -> scores``; default :func:`zero_shot_rs_score` on ``image_text_score``
            with the config's prompts.
        cfg: Thresholds and prompts (default: :class:`OutlierConfig` defaults).
        batch_size: Rows per scorer call.

    Returns:
        The stage result.

    Raises:
        DataError: A scorer returned the wrong number of scores or a NaN.
    """
    cfg = cfg or OutlierConfig()
    if rs_score is None:
        rs_score = zero_shot_rs_score(image_text_score, cfg.rs_prompts, cfg.other_prompts, cfg.logit_scale)
    kept, removed = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        images = [row.load() for row in batch]
        texts = [row.texts() for row in batch]
        pairs = _scores(image_text_score([image for image, row_texts in zip(images, texts) for _ in row_texts],
                                         [text for row_texts in texts for text in row_texts]),
                        sum(map(len, texts)), "image_text_score", batch)
        looks = _scores(rs_score(images), len(batch), "rs_score", batch)
        offsets = np.cumsum([0, *map(len, texts)])
        for i, row in enumerate(batch):
            match = float(pairs[offsets[i]:offsets[i + 1]].mean()) if texts[i] else float("-inf")
            if np.isnan(match) or np.isnan(looks[i]):
                raise DataError(f"{row.where}: a scorer returned NaN (image-text {match}, remote sensing {looks[i]})")
            low_match = match < cfg.min_image_text_score
            what = (f"image-text score {match:.4f} (mean over {len(texts[i])} caption(s)) is below "
                    f"min_image_text_score {cfg.min_image_text_score}") if texts[i] else "row has no caption to score"
            if looks[i] < cfg.min_rs_score:
                reason = f"'is remote sensing' score {looks[i]:.4f} is below min_rs_score {cfg.min_rs_score}"
                removed.append(Removal(row, "rs_score", reason + (f"; its {what}" if low_match else "")))
            elif low_match:
                removed.append(Removal(row, "image_text_score", f"its {what}"))
            else:
                kept.append(row)
    return StageResult("outliers", kept, removed)


def _name(fn: Callable | None) -> str | None:
    if fn is None:
        return None
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _write_kept(source: Path, out: Path, meta: dict, rows: Sequence[FunnelRow]) -> None:
    """Write the kept rows (media copied, provenance hashed) as a canonical dataset at ``out``."""
    extra = {key: value for key, value in meta.items() if key not in _META_OWN}
    copied: dict[str, str] = {}
    # the source named by its own provenance, not its path, so the output's bytes do not depend on where it ran
    provenance = f"funnel of {meta['name']} ({meta.get('source')})"
    with DatasetWriter(out, name=f"{meta['name']}-funnel", kind=meta["kind"], adapter=ADAPTER, source=provenance,
                       extra_meta=extra) as writer:
        for row in rows:
            values = {key: value for key, value in row.record.items() if key in MANIFEST_SCHEMA.names}
            for column in MEDIA_COLUMNS:
                rel = values.get(column)
                if rel is None:
                    continue
                if rel not in copied:
                    copied[rel] = writer.copy_media(relative_to_dataset(source, rel), rel.removeprefix(f"{MEDIA_DIR}/"))
                values[column] = copied[rel]
            writer.add_row(**values)


def truth_file(dataset_dir: str | Path) -> Path | None:
    """The ground-truth file a dataset's ``dataset.json`` names (``truth_file``), when it names one that exists.

    A step that rewrites a dataset copies it along (the funnel does), so the truth follows the rows.

    Args:
        dataset_dir: A canonical dataset.

    Returns:
        The file's path, or ``None`` when the dataset names none or it is absent.

    Raises:
        DataError: ``truth_file`` is not a plain file name (a path could point outside the dataset).
    """
    dataset_dir = Path(dataset_dir)
    name = read_meta(dataset_dir).get(TRUTH_META_KEY)
    if not name:
        return None
    if not isinstance(name, str) or Path(name).name != name:
        raise DataError(f"{dataset_dir / META_FILE}: {TRUTH_META_KEY} must be a file name beside the manifest, "
                        f"got {name!r}")
    return dataset_dir / name if (dataset_dir / name).is_file() else None


def run_funnel(source_dataset_dir: str | Path, out_dir: str | Path, cfg: FunnelConfig | None = None, *,
               image_text_score: ImageTextScorer, rs_score: RsScorer | None = None,
               embed: Embedder | None = None) -> FunnelReport:
    """Run the five stages on a canonical dataset and write the kept rows as a canonical dataset.

    The source is left unchanged. ``out_dir`` (replaced when it exists) gets the kept rows and
    their media; its ``quarantine.parquet`` holds the source's quarantine records and one record
    per removed row (stage ``funnel.<stage>``, the row, the rule and the reason); its
    ``dataset.json`` holds the counts (``counts``) and the :class:`FunnelReport` (``funnel``). A
    ground-truth file the source's ``dataset.json`` names (``truth_file``) is copied beside the output's manifest.

    Args:
        source_dataset_dir: The pool to funnel (a canonical dataset; rows validation quarantined
            are skipped, their records carried over).
        out_dir: Where the kept dataset goes; not the source nor inside it.
        cfg: Funnel settings (default: :class:`FunnelConfig` defaults).
        image_text_score: ``(images, texts) -> scores`` for the outlier stage.
        rs_score: ``(images) -> scores``; default :func:`zero_shot_rs_score` with ``cfg.outliers`` prompts.
        embed: ``(images) -> vectors``, for the ``embedding`` near-duplicate method.

    Returns:
        The :class:`FunnelReport`.

    Raises:
        DataError: The source is not a dataset, ``out_dir`` is the source or inside it, a scorer
            misbehaved, or ``truth_file`` is not a plain file name.
        ConfigError: The near-duplicate method cannot run (see :func:`near_duplicate_stage`).
    """
    cfg = cfg or FunnelConfig()
    source, out = Path(source_dataset_dir).resolve(), Path(out_dir).resolve()
    if out == source or source in out.parents:
        raise DataError(f"funnel: the output {out} must not be the dataset {source} or inside it")
    meta = read_meta(source)
    truth = truth_file(source)
    keywords = Path(cfg.keywords_file) if cfg.keywords_file else KEYWORDS_FILE
    matcher = KeywordMatcher.from_file(keywords)
    stages: list[Callable[[list[FunnelRow]], StageResult]] = [
        lambda rows: keyword_stage(rows, matcher),
        lambda rows: decode_stage(rows, cfg.decode, cfg.workers),
        lambda rows: exact_duplicate_stage(rows, cfg.workers),
        lambda rows: near_duplicate_stage(rows, cfg.near_duplicates, embed=embed, batch_size=cfg.batch_size,
                                          workers=cfg.workers),
        lambda rows: outlier_stage(rows, image_text_score, rs_score, cfg.outliers, batch_size=cfg.batch_size),
    ]
    rows = read_rows(source)
    results = []
    for stage in stages:
        results.append(stage(rows))
        rows = results[-1].kept
    _write_kept(source, out, meta, rows)
    settings = {"config": cfg.model_dump(mode="json"),
                "keywords": {"file": keywords.name, "sha256": sha256_file(keywords), "count": len(matcher.keywords)},
                "scorers": {"image_text_score": _name(image_text_score), "rs_score": _name(rs_score) or
                            "zero_shot_rs_score", "embed": _name(embed)}}
    report = FunnelReport(out, source, tuple(result.counts() for result in results), settings)
    carried = [QuarantineRecord(**record) for record in read_quarantine(source).to_dict("records")]
    written = [QuarantineRecord(**record) for record in read_quarantine(out).to_dict("records")]
    records = carried + written + [record for result in results for record in result.records()]
    write_quarantine(out, records)
    out_meta = read_meta(out)
    out_meta["counts"] = {**out_meta.get("counts", {}), "quarantined": len(records)}
    out_meta["funnel"] = report.to_dict()
    if truth is not None:
        shutil.copyfile(truth, out / truth.name)
    # sort_keys: the same run writes the same bytes (the dataset's DVC version)
    (out / META_FILE).write_text(json.dumps(out_meta, indent=2, sort_keys=True) + "\n")
    return report
