"""BigEarthNet v2 (reBEN) paired Sentinel-2 / Sentinel-1 patches with CORINE-19 labels.

Layout::

    SOURCE/npz/<s2_patch_id>.npz   S2_B01..S2_B12 (uint16 reflectance x10000, no B10 in L2A) and
                                   S1_VV, S1_VH (float32 dB); 10 m bands HxW, 20 m H/2, 60 m H/6
    SOURCE/labels.csv              patch_id,s1_name,split,country,labels,snow,cloud_or_shadow
                                   (labels |-separated CORINE-19 names; split train/validation/test)

Without ``labels.csv`` the upstream ``metadata*.parquet`` tables are read instead (same fields,
``labels`` as a list, ``contains_seasonal_snow``/``contains_cloud_or_shadow`` flags).

Rows: modality ``s1s2``, ``s2`` a (12, H, W) float32 array in :data:`S2_BANDS` order with the raw
x10000 values, ``s1`` a (2, H, W) array [VV, VH] in dB, ``labels`` the CrisisLandMark classes of
the patch's CORINE-19 labels (the packaged table, :data:`rsvl.data.labels.CORINE19_TO_DYNAMIC_WORLD`;
unique, in first-seen order), and ``captions``/``long_caption`` their CLOSP label text
(:func:`rsvl.data.labels.labels_to_text`, e.g. ``"trees. water"``), since CLOSP trains and queries
with CrisisLandMark class text. The original CORINE-19 names stay in ``dataset.json`` under
``corine19_labels`` (``{sample_id: [names]}``, unique, source order), and ``label_table`` names the
mapping table. ``bands``/``width``/``height`` describe ``s2``.

Choices (ours): 20 m and 60 m bands are upsampled to the 10 m grid by bilinear interpolation
(the sampling of ``torch.nn.functional.interpolate``, ``align_corners=False``, in NumPy); 10 m
bands are copied unchanged.
The upstream metadata holds no coordinates, so ``lat``/``lon`` stay null; ``timestamp`` is the
sensing time in the S2 product name (``..._20170613T101031_...`` → ``2017-06-13T10:10:31+00:00``).
Patches flagged for seasonal snow or cloud/shadow are kept and listed in ``dataset.json`` under
``flags``. ``band_stats`` in ``dataset.json`` holds each band's mean and population std over the
train split (``s2`` in raw x10000 units, ``s1`` in dB), for normalisation at training time.

Quarantine rules: ``split_value``, ``label_value`` (no label, or one outside CORINE-19), ``file_exists``
(no npz), ``array_decode`` (npz unreadable), ``band_count`` (a band is missing),
``band_shape`` (a band's size does not fit its resolution), ``band_dtype`` (complex, text or object
values) and ``finite_values`` (NaN or inf).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import pandas as pd

from rsvl.data.adapters import register
from rsvl.data.band_stats import BandStats
from rsvl.data.labels import (
    CORINE19_TABLE,
    CORINE19_TO_DYNAMIC_WORLD,
    corine19_to_dynamic_world,
    labels_to_text,
    unique_labels,
)
from rsvl.data.media import REAL_KINDS
from rsvl.data.splits import canonical_split
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

S2_BANDS: Final[tuple[str, ...]] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_BANDS: Final[tuple[str, ...]] = ("VV", "VH")
S2_DOWNSAMPLING: Final[dict[str, int]] = {
    "B01": 6, "B02": 1, "B03": 1, "B04": 1, "B05": 2, "B06": 2,
    "B07": 2, "B08": 1, "B8A": 2, "B09": 6, "B11": 2, "B12": 2,
}
"""Pixel size of each S2 band relative to the 10 m grid (1 = 10 m, 2 = 20 m, 6 = 60 m)."""

_SENSING_TIME = re.compile(r"_(\d{8}T\d{6})_")


class PatchRecord(NamedTuple):
    """One patch as the label table describes it."""

    where: str
    patch_id: str
    split: str
    labels: list[str]
    snow: bool
    cloud_or_shadow: bool


class BandError(Exception):
    """A patch's arrays break a rule; ``rule`` names it."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule


def sensing_time(product_name: str) -> str | None:
    """Read the sensing time from a Sentinel product or patch name.

    Args:
        product_name: For example ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_37_88``.

    Returns:
        ISO 8601 UTC text (``2017-06-13T10:10:31+00:00``), or ``None`` when the name has none.
    """
    match = _SENSING_TIME.search(product_name)
    if not match:
        return None
    try:
        moment = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.timezone.utc).isoformat()


def _flag(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _records_from_csv(path: Path) -> Iterator[PatchRecord]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"patch_id", "split", "labels"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        for line_no, record in enumerate(reader, start=2):
            yield PatchRecord(f"{path.name}:{line_no}", record["patch_id"], record["split"],
                              (record["labels"] or "").split("|"), _flag(record.get("snow")),
                              _flag(record.get("cloud_or_shadow")))


def _records_from_parquet(source: Path) -> Iterator[PatchRecord]:
    tables = sorted(source.glob("metadata*.parquet"))
    if not tables:
        raise DataError(f"{source}: neither labels.csv nor metadata*.parquet is present")
    for table in tables:
        frame = pd.read_parquet(table)
        missing = {"patch_id", "split", "labels"} - set(frame.columns)
        if missing:
            raise DataError(f"{table}: missing columns {sorted(missing)}")
        for index, record in enumerate(frame.to_dict("records")):
            yield PatchRecord(f"{table.name}:{index}", record["patch_id"], record["split"],
                              [str(label) for label in record["labels"]],
                              _flag(record.get("contains_seasonal_snow")),
                              _flag(record.get("contains_cloud_or_shadow")))


def patch_records(source: Path) -> Iterator[PatchRecord]:
    """Yield the patches listed in ``labels.csv`` (or the upstream metadata parquet tables).

    Args:
        source: The BigEarthNet folder.

    Raises:
        DataError: No label table, or one without ``patch_id``, ``split`` and ``labels``.
    """
    labels = source / "labels.csv"
    return _records_from_csv(labels) if labels.is_file() else _records_from_parquet(source)


def _bilinear_weights(size: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    source = np.maximum((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    return low, high, (source - low).astype(np.float32)


def upsample(band: np.ndarray, factor: int) -> np.ndarray:
    """Bilinearly upsample a (height, width) band by an integer factor.

    Sample positions follow ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (pixel centres, edges clamped), computed in NumPy so ingest does not
    import torch.

    Args:
        band: One band.
        factor: Output pixels per input pixel along each axis; 1 returns the band as float32.

    Returns:
        A float32 array of shape (height * factor, width * factor).
    """
    band = band.astype(np.float32)
    if factor == 1:
        return band
    low, high, weight = _bilinear_weights(band.shape[0], factor)
    rows = band[low] * (1 - weight[:, None]) + band[high] * weight[:, None]
    low, high, weight = _bilinear_weights(band.shape[1], factor)
    return rows[:, low] * (1 - weight) + rows[:, high] * weight


def load_patch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one npz patch as an S2 (12, H, W) and an S1 (2, H, W) float32 array.

    Args:
        path: The patch's ``.npz``.

    Returns:
        ``(s2, s1)`` with S2 bands in :data:`S2_BANDS` order on the 10 m grid and S1 as [VV, VH].

    Raises:
        BandError: A band is missing (``band_count``), not real numbers (``band_dtype``), mis-sized (``band_shape``) or holds NaN/inf
            (``finite_values``).
        DataError: The file is not a readable npz.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz ({err})") from err
    wanted = [f"S2_{b}" for b in S2_BANDS] + [f"S1_{b}" for b in S1_BANDS]
    missing = [key for key in wanted if key not in arrays]
    if missing:
        raise BandError("band_count", f"{path}: has {len(wanted) - len(missing)} of {len(wanted)} bands; "
                                      f"missing {', '.join(missing)}")
    height, width = arrays["S2_B02"].shape if arrays["S2_B02"].ndim == 2 else (0, 0)
    expected = {f"S2_{b}": (height // f, width // f) for b, f in S2_DOWNSAMPLING.items()}
    expected.update({f"S1_{b}": (height, width) for b in S1_BANDS})
    for key in wanted:
        if arrays[key].dtype.kind not in REAL_KINDS:
            raise BandError("band_dtype", f"{path}: {key} has dtype {arrays[key].dtype}, not a real number type")
        if arrays[key].shape != expected[key] or height % 6 or width % 6 or not height:
            raise BandError("band_shape", f"{path}: {key} has shape {arrays[key].shape}, expected "
                                          f"{expected[key]} (10 m grid {height}x{width}, a multiple of 6)")
        if not np.isfinite(arrays[key]).all():
            bad = int(arrays[key].size - np.isfinite(arrays[key]).sum())
            raise BandError("finite_values", f"{path}: {key} holds {bad} NaN or infinite values")
    s2 = np.stack([upsample(arrays[f"S2_{b}"], S2_DOWNSAMPLING[b]) for b in S2_BANDS])
    s1 = np.stack([arrays[f"S1_{b}"].astype(np.float32) for b in S1_BANDS])
    return s2, s1


def _check_record(record: PatchRecord) -> tuple[str, str] | None:
    if canonical_split(record.split) is None:
        return "split_value", f"{record.where}: split {record.split!r} is not train/validation/test"
    labels = unique_labels(record.labels)
    if not labels:
        return "label_value", f"{record.where}: the patch has no labels"
    unknown = [label for label in labels if label not in CORINE19_TO_DYNAMIC_WORLD]
    if unknown:
        return "label_value", f"{record.where}: labels {unknown} are not CORINE-19 classes"
    return None


@register("bigearthnet")
def ingest_bigearthnet(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest BigEarthNet v2 S1/S2 pairs as a multisensor dataset.

    Args:
        source: Directory with ``npz/`` and ``labels.csv`` (or ``metadata*.parquet``).
        out: Destination dataset directory.
        name: Dataset name (default: the source folder name).

    Returns:
        The ingest report; band statistics of the train split and each row's CORINE-19 names are
        in ``dataset.json``.
    """
    stats = {"s2": BandStats(list(S2_BANDS)), "s1": BandStats(list(S1_BANDS))}
    flags: dict[str, list[str]] = {"seasonal_snow": [], "cloud_or_shadow": []}
    corine: dict[str, list[str]] = {}
    meta = {"bands": {"s2": list(S2_BANDS), "s1": list(S1_BANDS)}, "label_table": f"rsvl.data/{CORINE19_TABLE}"}
    with DatasetWriter(out, name=name or source.name, kind="multisensor", adapter="bigearthnet",
                       source=str(source), extra_meta=meta) as writer:
        for record in patch_records(source):
            problem = _check_record(record)
            if problem:
                writer.quarantine(where=record.where, rule=problem[0], reason=problem[1], sample_id=record.patch_id)
                continue
            path = source / "npz" / f"{record.patch_id}.npz"
            if not path.is_file():
                writer.quarantine(where=record.where, rule="file_exists", reason=f"{path} does not exist",
                                  sample_id=record.patch_id)
                continue
            try:
                s2, s1 = load_patch(path)
            except BandError as err:
                writer.quarantine(where=record.where, rule=err.rule, reason=str(err), sample_id=record.patch_id)
                continue
            except DataError as err:
                writer.quarantine(where=record.where, rule="array_decode", reason=str(err), sample_id=record.patch_id)
                continue
            split = canonical_split(record.split)
            if split == "train":
                stats["s2"].add(s2)
                stats["s1"].add(s1)
            if record.snow:
                flags["seasonal_snow"].append(record.patch_id)
            if record.cloud_or_shadow:
                flags["cloud_or_shadow"].append(record.patch_id)
            original = unique_labels(record.labels)
            labels = corine19_to_dynamic_world(original)
            text = labels_to_text(labels)
            writer.add_row(
                sample_id=record.patch_id,
                split=split,
                modality="s1s2",
                s2=writer.write_array(s2, f"s2/{record.patch_id}", str(path)),
                s1=writer.write_array(s1, f"s1/{record.patch_id}", str(path)),
                bands=s2.shape[0],
                width=s2.shape[2],
                height=s2.shape[1],
                labels=labels,
                captions=[text],
                long_caption=text,
                timestamp=sensing_time(record.patch_id),
                source=record.where,
            )
            corine[record.patch_id] = original
        writer.meta.update(
            corine19_labels=corine,
            band_stats={"split": "train", **{sensor: acc.to_dict() for sensor, acc in stats.items()}},
            flags=flags,
        )
    return writer.report
