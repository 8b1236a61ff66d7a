"""CrisisLandMark (CLOSP): Sentinel-1 or Sentinel-2 patches in HDF5 shards plus a metadata table.

Layout (the CLOSP authors' loader reads the same structure)::

    SOURCE/metadata.parquet    key, split, labels (a list, or one string separated by "|"),
                               optionally file (the shard's path relative to SOURCE)
    SOURCE/**/*.h5 | *.hdf5    one top-level group per key:
        /<key>/image           (bands, H, W) values: 2 bands [VV, VH] dB for S1, 12 or 13 for S2
        /<key>/coords          (2, H, W) x and y of every pixel in the group's CRS, or (2,) a point
        /<key>.attrs["crs"]        "EPSG:32633", "EPSG:4326" ...
        /<key>.attrs["timestamp"]  ISO 8601 text (naive = UTC) or seconds since 1970 (UTC)

Rows: 2-band patches are ``sar``/``s1``, 12- or 13-band ones ``multispectral``/``s2``; lat/lon are
the centre pixel's WGS 84 position; labels are CrisisLandMark classes (CORINE-19 names mapped) and
the captions their text. Unlisted shard keys are counted as ``unlisted_keys`` in ``dataset.json``.
Quarantine rules (``where`` = ``metadata.parquet:<row>``): ``split_value``, ``label_value``,
``file_exists``, ``unique_id``, ``array_decode``, ``band_dtype``, ``band_shape``, ``band_count``,
``finite_values``, ``coords``, ``crs`` and ``timestamp``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from rsvl.data.adapters import register
from rsvl.data.geo import to_lonlat
from rsvl.data.labels import labels_to_text, to_crisis_class, unique_labels
from rsvl.data.media import REAL_KINDS
from rsvl.data.splits import canonical_split
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

METADATA_FILE = "metadata.parquet"
SHARD_SUFFIXES = (".h5", ".hdf5")
S1_BAND_COUNTS = (2,)
S2_BAND_COUNTS = (12, 13)


class MemberError(Exception):
    """A shard member breaks a rule; ``rule`` names it."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule


def parse_timestamp(value: object) -> str | None:
    """Normalise a timestamp attribute to ISO 8601 text.

    Args:
        value: ISO text or bytes (naive times are taken as UTC), or seconds since the epoch.

    Returns:
        ISO 8601 text with an offset, or ``None`` when ``value`` is ``None``.

    Raises:
        ValueError: The value is neither ISO text nor a number.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    # bool is an int subclass, but True is no timestamp
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        moment = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    elif isinstance(value, str):
        moment = dt.datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"timestamp {value!r} is neither ISO 8601 text nor seconds since 1970")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.isoformat()


def parse_labels(value: object) -> list[str]:
    """Read a ``labels`` cell: a list (any sequence) of names, or one ``|``-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return unique_labels(value.split("|"))
    return unique_labels(str(label) for label in value)


def index_shards(source: Path) -> tuple[dict[str, Path], list[tuple[str, str, str]]]:
    """Find which shard holds each key (the first shard holding a key wins).

    Args:
        source: The CrisisLandMark folder, searched recursively for ``*.h5``/``*.hdf5``.

    Returns:
        ``{key: shard}`` and the problems found as ``(where, rule, reason)``: ``unique_id`` for a
        repeated key, ``array_decode`` for a shard that cannot be opened.
    """
    index: dict[str, Path] = {}
    problems: list[tuple[str, str, str]] = []
    # sorted, so 'the first shard wins' picks the same shard on every machine
    shards = sorted(p for p in source.rglob("*") if p.suffix.lower() in SHARD_SUFFIXES and p.is_file())
    for shard in shards:
        try:
            with h5py.File(shard, "r") as handle:
                keys = list(handle.keys())
        except OSError as err:
            problems.append((shard.name, "array_decode", f"{shard}: not a readable HDF5 file ({err})"))
            continue
        for key in keys:
            if key in index:
                problems.append((f"{shard.name}:{key}", "unique_id",
                                 f"key {key!r} is in {index[key]} and again in {shard}; the first is used"))
            else:
                index[key] = shard
    return index, problems


def centre_lonlat(coords: np.ndarray | None, crs: object) -> tuple[float | None, float | None]:
    """Return WGS 84 (lon, lat) of a patch's centre pixel.

    Args:
        coords: ``(2, H, W)`` pixel coordinates or a ``(2,)`` point, in ``crs``; ``None`` for none.
        crs: The CRS attribute (text or bytes).

    Returns:
        ``(lon, lat)``, or ``(None, None)`` when there are no coordinates.

    Raises:
        MemberError: ``coords`` has the wrong shape, or the CRS is missing or not convertible.
    """
    if coords is None:
        return None, None
    if coords.shape == (2,):
        x, y = coords
    elif coords.ndim == 3 and coords.shape[0] == 2:
        x, y = coords[:, coords.shape[1] // 2, coords.shape[2] // 2]
    else:
        raise MemberError("coords", f"coords has shape {coords.shape}, expected (2, H, W) or (2,)")
    if isinstance(crs, bytes):
        crs = crs.decode("utf-8", "replace")
    if not isinstance(crs, str) or not crs.strip():
        raise MemberError("crs", f"coords are given but the crs attribute is {crs!r}")
    try:
        return to_lonlat(float(x), float(y), crs)
    except DataError as err:
        raise MemberError("crs", str(err)) from err


def read_member(shard: Path, key: str) -> dict:
    """Read one patch from a shard and check it.

    Args:
        shard: The HDF5 file.
        key: The patch's top-level group.

    Returns:
        ``image`` (float32 CHW), ``lon``, ``lat`` and ``timestamp``.

    Raises:
        MemberError: The member breaks a rule; ``rule`` says which.
    """
    try:
        with h5py.File(shard, "r") as handle:
            group = handle[key]
            if not isinstance(group, h5py.Group) or not isinstance(group.get("image"), h5py.Dataset):
                raise MemberError("array_decode", f"{shard.name}:{key} has no 'image' dataset")
            raw = group["image"][()]
            if np.asarray(raw).dtype.kind not in REAL_KINDS:
                raise MemberError("band_dtype", f"{shard.name}:{key} image has dtype {np.asarray(raw).dtype}, "
                                                "not a real number type")
            image = np.asarray(raw, dtype=np.float32)
            # float64, since UTM coordinates (~1e6 m) would lose metres in float32
            coords = np.asarray(group["coords"][()], dtype=np.float64) if "coords" in group else None
            crs = group.attrs.get("crs")
            timestamp = group.attrs.get("timestamp")
    # h5py raises any of these for a damaged member or a key that is not a group
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise MemberError("array_decode", f"{shard.name}:{key} cannot be read ({err})") from err
    if image.ndim != 3:
        raise MemberError("band_shape", f"{shard.name}:{key} image has shape {image.shape}, expected (bands, H, W)")
    if image.shape[0] not in S1_BAND_COUNTS + S2_BAND_COUNTS:
        raise MemberError("band_count", f"{shard.name}:{key} has {image.shape[0]} bands; S1 has "
                                        f"{S1_BAND_COUNTS}, S2 {S2_BAND_COUNTS}")
    nonfinite = int(image.size - np.isfinite(image).sum())
    if nonfinite:
        raise MemberError("finite_values", f"{shard.name}:{key} image holds {nonfinite} NaN or infinite values")
    lon, lat = centre_lonlat(coords, crs)
    try:
        iso = parse_timestamp(timestamp.item() if isinstance(timestamp, np.generic) else timestamp)
    except (ValueError, OverflowError, OSError) as err:
        raise MemberError("timestamp", f"{shard.name}:{key} timestamp {timestamp!r}: {err}") from err
    return {"image": image, "lon": lon, "lat": lat, "timestamp": iso}


def _crisis_labels(raw: object, where: str) -> list[str]:
    labels = parse_labels(raw)
    if not labels:
        raise MemberError("label_value", f"{where}: the patch has no labels")
    unknown = [label for label in labels if to_crisis_class(label) is None]
    if unknown:
        raise MemberError("label_value", f"{where}: labels {unknown} are neither CrisisLandMark nor CORINE-19 classes")
    return unique_labels(to_crisis_class(label) for label in labels)


@register("crisislandmark")
def ingest_crisislandmark(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest CrisisLandMark shards as single-sensor rows with label text.

    Args:
        source: Directory with ``metadata.parquet`` and the HDF5 shards.
        out: Destination dataset directory.
        name: Dataset name (default: the source folder name).

    Returns:
        The ingest report.

    Raises:
        DataError: ``metadata.parquet`` is missing or lacks ``key``, ``split`` or ``labels``.
    """
    table = source / METADATA_FILE
    if not table.is_file():
        raise DataError(f"{source}: {METADATA_FILE} is missing")
    frame = pd.read_parquet(table)
    missing = {"key", "split", "labels"} - set(frame.columns)
    if missing:
        raise DataError(f"{table}: missing columns {sorted(missing)}")
    index, problems = index_shards(source)
    with DatasetWriter(out, name=name or source.name, kind="multisensor", adapter="crisislandmark",
                       source=str(source)) as writer:
        for where, rule, reason in problems:
            writer.quarantine(where=where, rule=rule, reason=reason)
        listed = set()
        for row, record in enumerate(frame.to_dict("records")):
            where = f"{METADATA_FILE}:{row}"
            key = str(record["key"])
            listed.add(key)
            split = canonical_split(record["split"])
            try:
                if split is None:
                    raise MemberError("split_value", f"{where}: split {record['split']!r} is not train/val/test")
                labels = _crisis_labels(record["labels"], where)
                shard = _shard_of(source, record, index)
                if shard is None:
                    raise MemberError("file_exists", f"{where}: key {key!r} is in no HDF5 shard under {source}")
                member = read_member(shard, key)
            except MemberError as err:
                writer.quarantine(where=where, rule=err.rule, reason=str(err), sample_id=key)
                continue
            image = member["image"]
            sensor = "s1" if image.shape[0] in S1_BAND_COUNTS else "s2"
            text = labels_to_text(labels)
            writer.add_row(
                sample_id=key,
                split=split,
                modality="sar" if sensor == "s1" else "multispectral",
                **{sensor: writer.write_array(image, f"{sensor}/{key}", f"{shard}:{key}")},
                bands=image.shape[0],
                width=image.shape[2],
                height=image.shape[1],
                labels=labels,
                captions=[text],
                long_caption=text,
                lat=member["lat"],
                lon=member["lon"],
                timestamp=member["timestamp"],
                source=where,
            )
        writer.meta.update(unlisted_keys=len(set(index) - listed))
    return writer.report


def _shard_of(source: Path, record: dict, index: dict[str, Path]) -> Path | None:
    named = record.get("file")
    if not isinstance(named, str) or not named:
        return index.get(str(record["key"]))
    path = source / named
    try:
        with h5py.File(path, "r") as handle:
            return path if str(record["key"]) in handle else None
    except OSError:
        return None
