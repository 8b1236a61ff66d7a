"""Write and read canonical datasets (see :mod:`rsvl.data.schema` for the layout).

Writers copy media into the dataset so a DVC-tracked directory is self-contained, hash every
file for provenance, and keep rejected rows in a quarantine table instead of dropping them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rsvl.data.schema import (
    FILES_SCHEMA,
    KINDS,
    MANIFEST_SCHEMA,
    QUARANTINE_SCHEMA,
    SCHEMA_VERSION,
    empty_row,
)
from rsvl.errors import DataError, SchemaVersionError

META_FILE = "dataset.json"
MANIFEST_FILE = "manifest.parquet"
FILES_FILE = "files.parquet"
QUARANTINE_FILE = "quarantine.parquet"
MEDIA_DIR = "media"
VALIDATE_STAGE = "validate"

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hash a file in chunks so large rasters never sit in memory twice.

    Args:
        path: File to hash.
        chunk: Read size in bytes.

    Returns:
        The hex SHA-256 digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(path: str | Path, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative paths and contents, in sorted order).

    Args:
        path: A file or a folder.
        skip: Relative paths (POSIX) in the folder left out (a file that records the digest itself).

    Returns:
        The hex digest; a missing path has the digest of nothing.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    for file in files:
        name = file.relative_to(path).as_posix()
        if name not in skip:
            digest.update(name.encode() + b"\0" + bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def safe_media_name(name: str) -> str:
    """Turn a source-relative name into a flat, portable file name inside ``media/``.

    Args:
        name: A relative source name such as ``aGrass/a001.jpg``.

    Returns:
        A name made of letters, digits, ``.``, ``_`` and ``-`` (``aGrass__a001.jpg``).
    """
    # drop '..' and root parts so a source name cannot climb out of media/
    parts = [p for p in Path(name).parts if p not in ("", ".", "..", "/")]
    flat = "__".join(_SAFE_NAME.sub("_", p) for p in parts)
    if not flat:
        raise DataError(f"media name {name!r} has no usable characters")
    return flat


@dataclass
class QuarantineRecord:
    """One rejected row: where it came from, which rule it broke and why."""

    stage: str
    where: str
    rule: str
    reason: str
    sample_id: str | None = None


@dataclass
class IngestReport:
    """What a writer produced: counts and paths that the CLI prints and pipelines log."""

    out_dir: Path
    rows: int
    quarantined: int
    files: int
    by_rule: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Return a one-paragraph human summary naming the quarantine location."""
        text = f"{self.rows} rows, {self.files} media files written to {self.out_dir}"
        if self.quarantined:
            rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.by_rule.items()))
            text += (
                f"; {self.quarantined} rows quarantined ({rules}) in "
                f"{self.out_dir / QUARANTINE_FILE}"
            )
        return text


class DatasetWriter:
    """Build a canonical dataset directory row by row; use as a context manager (written on exit).

    The dataset is built in a hidden sibling folder and renamed over ``out_dir`` only once it is
    whole, so an existing dataset there is replaced as a whole or, when anything fails (a full
    disk, a bad row, an interrupt), left exactly as it was.

    Args:
        out_dir: Destination directory.
        name: Dataset name recorded in the metadata.
        kind: One of :data:`rsvl.data.schema.KINDS`.
        adapter: Name of the adapter or generator that produced the rows.
        source: Source path or description (provenance).
        extra_meta: Additional JSON-serialisable metadata (for example band statistics).
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        name: str,
        kind: str,
        adapter: str,
        source: str,
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise DataError(f"dataset kind {kind!r} is not one of {KINDS}")
        self.out_dir = Path(out_dir)
        self.meta: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "kind": kind,
            "adapter": adapter,
            "source": source,
            **(extra_meta or {}),
        }
        self._rows: list[dict] = []
        self._ids: set[str] = set()
        self._files: dict[str, dict] = {}
        self._quarantine: list[QuarantineRecord] = []

    def __enter__(self) -> "DatasetWriter":
        self._target = self.out_dir
        # built beside the target and renamed over it when whole: a failure leaves the old dataset
        self.out_dir = self._target.parent / f".{self._target.name}.writing-{os.getpid()}"
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        (self.out_dir / MEDIA_DIR).mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        staging, self.out_dir = self.out_dir, self._target
        try:
            if exc_type is None:
                report = self.close(staging)
                _replace_dir(staging, self._target)
                report.out_dir = self._target
                self.report = report
        except OSError as err:
            raise _disk_error(err, self._target) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _disk_error(exc, self._target) from exc

    def _claim(self, name: str) -> str:
        rel = f"{MEDIA_DIR}/{safe_media_name(name)}"
        if rel in self._files:
            raise DataError(f"two media files map to the same name {rel!r}")
        return rel

    def _record(self, rel: str, source_path: str | None) -> str:
        target = self.out_dir / rel
        self._files[rel] = {
            "path": rel,
            "sha256": sha256_file(target),
            "bytes": target.stat().st_size,
            "source_path": source_path,
        }
        return rel

    def copy_media(self, src: str | Path, name: str) -> str:
        """Copy a source file into ``media/`` and record its hash.

        Args:
            src: Source file.
            name: Source-relative name used to build the media file name.

        Returns:
            The path relative to the dataset directory, for a media column.
        """
        rel = self._claim(name)
        shutil.copyfile(src, self.out_dir / rel)
        return self._record(rel, str(src))

    def write_bytes(self, data: bytes, name: str, source_path: str | None = None) -> str:
        """Write raw bytes (an encoded image) into ``media/`` and record the hash.

        Args:
            data: File content.
            name: Media file name.
            source_path: Provenance of the bytes, if any.

        Returns:
            The path relative to the dataset directory.
        """
        rel = self._claim(name)
        (self.out_dir / rel).write_bytes(data)
        return self._record(rel, source_path)

    def write_array(self, array: np.ndarray, name: str, source_path: str | None = None) -> str:
        """Save a band array (CHW) as float32 ``.npy`` inside ``media/``.

        Args:
            array: Array of shape (bands, height, width).
            name: Media file name; ``.npy`` is appended when missing.
            source_path: Provenance of the array.

        Returns:
            The path relative to the dataset directory.
        """
        if array.ndim != 3:
            raise DataError(f"array {name!r} must be (bands, height, width), got shape {array.shape}")
        if not name.endswith(".npy"):
            name += ".npy"
        rel = self._claim(name)
        np.save(self.out_dir / rel, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
        return self._record(rel, source_path)

    def add_row(self, **values: Any) -> None:
        """Append one sample; unknown columns and duplicate ids are errors, not silent drops.

        Args:
            **values: Manifest columns; unset ones default to null or empty.
        """
        row = empty_row()
        unknown = set(values) - set(row)
        if unknown:
            raise DataError(f"unknown manifest columns {sorted(unknown)}")
        row.update(values)
        sample_id = row["sample_id"]
        if sample_id in self._ids:
            self.quarantine(
                where=str(row.get("source") or sample_id),
                rule="unique_id",
                reason=f"sample_id {sample_id!r} already used by an earlier row",
                sample_id=sample_id,
            )
            return
        self._ids.add(sample_id)
        self._rows.append(row)

    def quarantine(self, *, where: str, rule: str, reason: str, sample_id: str | None = None) -> None:
        """Record a rejected source row with the rule it broke.

        Args:
            where: Source file and row, for example ``labels.csv:12``.
            rule: Short rule name (``file_exists``, ``caption_utf8`` ...).
            reason: Human sentence saying what is wrong.
            sample_id: Id of the sample, when one could be formed.
        """
        self._quarantine.append(QuarantineRecord("ingest", where, rule, reason, sample_id))

    def close(self, folder: Path | None = None) -> IngestReport:
        """Write manifest, files table, quarantine table and metadata.

        Args:
            folder: Where (default ``out_dir``; the context manager passes its staging folder).

        Returns:
            Counts and paths of what was written.
        """
        folder = Path(folder) if folder is not None else self.out_dir
        table = pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA)
        write_parquet(table, folder / MANIFEST_FILE)
        # sorted by path, so the table's bytes do not depend on the order files were written
        files = pa.Table.from_pylist(sorted(self._files.values(), key=lambda f: f["path"]), schema=FILES_SCHEMA)
        write_parquet(files, folder / FILES_FILE)
        write_quarantine(folder, self._quarantine)
        by_rule: dict[str, int] = {}
        for record in self._quarantine:
            by_rule[record.rule] = by_rule.get(record.rule, 0) + 1
        self.meta.update(
            counts={
                "rows": len(self._rows),
                "files": len(self._files),
                "quarantined": len(self._quarantine),
                "splits": _count(r["split"] for r in self._rows),
            },
        )
        # sort_keys: stable bytes, so the same data gives the same DVC version
        (folder / META_FILE).write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
        return IngestReport(folder, len(self._rows), len(self._quarantine), len(self._files), by_rule)


def _replace_dir(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``, moving an existing ``target`` aside first and deleting it last."""
    old = target.parent / f".{target.name}.replaced-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def free_bytes(path: Path) -> tuple[Path, int]:
    """The nearest existing folder at or above ``path`` and the bytes free on its file system."""
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return probe, shutil.disk_usage(probe).free


def _disk_error(err: OSError, target: Path) -> Exception:
    """A full disk as a :class:`DataError` that says what to free; other OS errors unchanged."""
    if err.errno != errno.ENOSPC:
        return err
    probe, free = free_bytes(target)
    kept = "the previous dataset there is unchanged" if target.exists() else "nothing was written"
    return DataError(f"{target}: the disk filled up while writing the dataset ({free:,} bytes free on the file "
                     f"system of {probe}); {kept}; free space there (old runs under build/, mlflow/artifacts, "
                     "unused datasets) and run again")


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write a dataset table uncompressed (the default data is pinned by the md5 of these bytes).

    Args:
        table: The table.
        path: Where to write it.
    """
    # compressors may pick different matches on different CPUs (hardware CRC on ARM)
    pq.write_table(table, path, compression="none")


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def write_quarantine(out_dir: Path, records: list[QuarantineRecord], append: bool = False) -> Path:
    """Write (or extend) the quarantine table of a dataset.

    Args:
        out_dir: Dataset directory.
        records: Rejected rows.
        append: Keep rows of earlier stages and add these (validation after ingest).

    Returns:
        Path of the quarantine table.
    """
    path = Path(out_dir) / QUARANTINE_FILE
    rows = [record.__dict__ for record in records]
    table = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)
    if append and path.exists():
        table = pa.concat_tables([pq.read_table(path, schema=QUARANTINE_SCHEMA), table])
    write_parquet(table, path)
    return path


def read_meta(dataset_dir: str | Path) -> dict[str, Any]:
    """Read ``dataset.json`` and refuse manifests from a newer schema.

    Args:
        dataset_dir: Dataset directory.

    Returns:
        The metadata dict.

    Raises:
        DataError: The directory is not a dataset.
        SchemaVersionError: The manifest's schema version is newer than this package's.
    """
    path = Path(dataset_dir) / META_FILE
    if not path.is_file():
        raise DataError(f"{dataset_dir} is not an rsvl dataset: {META_FILE} is missing")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not valid UTF-8 JSON ({err})") from err
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise DataError(f"{path}: schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path}: manifest schema version {version} is newer than this rsvl's {SCHEMA_VERSION}; "
            "upgrade rsvl to read it"
        )
    return meta


def check_manifest_schema(path: Path) -> None:
    """Refuse a manifest with columns the schema lacks or columns of another type than the schema's.

    A column the schema has and the file lacks reads as nulls (validation says which ones a kind
    needs); an extra column would be dropped silently and a retyped one cast or misread, so both
    are errors.

    Args:
        path: A ``manifest.parquet``.

    Raises:
        DataError: Naming the file, the columns and the rule (``manifest_schema``).
    """
    try:
        stored = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: cannot read the manifest ({err})") from err
    extra = [name for name in stored.names if name not in MANIFEST_SCHEMA.names]
    if extra:
        raise DataError(f"{path}: columns {extra} are not in the manifest schema (rule manifest_schema: "
                        f"allowed {MANIFEST_SCHEMA.names}); keep other fields in a table of their own")
    retyped = [f"{name} is {stored.field(name).type}, the schema says {MANIFEST_SCHEMA.field(name).type}"
               for name in stored.names if not stored.field(name).type.equals(MANIFEST_SCHEMA.field(name).type)]
    if retyped:
        raise DataError(f"{path}: {'; '.join(retyped)} (rule manifest_schema)")


def read_manifest(dataset_dir: str | Path, *, include_quarantined: bool = False) -> pd.DataFrame:
    """Read a dataset's manifest with the canonical column types, without its quarantined rows.

    Rows validation quarantined (:func:`quarantined_ids`) are left out even when still listed.

    Args:
        dataset_dir: Dataset directory.
        include_quarantined: Return every stored row (for validation, which re-checks them).

    Returns:
        One row per sample; list columns hold Python lists, null scalars are ``None``.
    """
    read_meta(dataset_dir)
    check_manifest_schema(Path(dataset_dir) / MANIFEST_FILE)
    table = pq.read_table(Path(dataset_dir) / MANIFEST_FILE, schema=MANIFEST_SCHEMA)
    if not include_quarantined:
        table = without_ids(table, quarantined_ids(dataset_dir))
    return table_to_frame(table)


def quarantined_ids(dataset_dir: str | Path) -> set[str]:
    """The sample ids of the rows validation quarantined (stage ``validate``) in a dataset.

    Ingest records name source records, not manifest rows, so they are not included.

    Args:
        dataset_dir: Dataset directory.

    Returns:
        The ids (empty when the dataset has no quarantine table).
    """
    table = read_quarantine(dataset_dir)
    rejected = table[(table["stage"] == VALIDATE_STAGE) & table["sample_id"].notna()]
    return set(rejected["sample_id"])


def without_ids(table: pa.Table, ids: set[str]) -> pa.Table:
    """Drop the manifest rows whose ``sample_id`` is in ``ids`` (the table itself when none match).

    Args:
        table: A manifest table.
        ids: Sample ids to leave out.

    Returns:
        The remaining rows, in their stored order.
    """
    if not ids:
        return table
    keep = [sample_id not in ids for sample_id in table.column("sample_id").to_pylist()]
    return table if all(keep) else table.filter(pa.array(keep, type=pa.bool_()))


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow manifest table to pandas with lists as lists and nulls as ``None``."""
    frame = pd.DataFrame({name: table.column(name).to_pylist() for name in table.column_names})
    # object dtype so nulls are None, not NaN or NaT
    return frame.astype(object).where(frame.notna(), None) if len(frame) else frame


def read_files(dataset_dir: str | Path) -> pd.DataFrame:
    """Read the provenance table (path, sha256, bytes, source path) of a dataset."""
    return pq.read_table(Path(dataset_dir) / FILES_FILE, schema=FILES_SCHEMA).to_pandas()


def read_quarantine(dataset_dir: str | Path) -> pd.DataFrame:
    """Read the quarantine table of a dataset (empty frame when nothing was rejected).

    A null ``sample_id`` (a record naming a source row, not a manifest row) reads as ``None``, not
    NaN, so ``QuarantineRecord(**row)`` of a row writes back as it was read.
    """
    path = Path(dataset_dir) / QUARANTINE_FILE
    if not path.exists():
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    frame = pq.read_table(path, schema=QUARANTINE_SCHEMA).to_pandas()
    return frame.astype(object).where(frame.notna(), None)


def find_datasets(root: str | Path) -> list[Path]:
    """Return ``root`` if it is a dataset, else every dataset directory below it (sorted).

    Args:
        root: A dataset directory or a directory holding several.
    """
    root = Path(root)
    if (root / META_FILE).is_file():
        return [root]
    found = sorted(p.parent for p in root.rglob(META_FILE))
    if not found:
        raise DataError(f"no rsvl dataset ({META_FILE}) under {root}")
    return found


def relative_to_dataset(dataset_dir: Path, rel: str) -> Path:
    """Resolve a media path from the manifest, refusing paths that leave the dataset.

    Args:
        dataset_dir: Dataset directory.
        rel: Path as stored in a media column.

    Returns:
        The absolute path inside the dataset.
    """
    base = Path(dataset_dir).resolve()
    target = (base / rel).resolve()
    # resolve() follows '..' and symlinks, so a link out of the dataset is refused too
    if os.path.isabs(rel) or base not in target.parents:
        raise DataError(f"{dataset_dir}: media path {rel!r} points outside the dataset")
    return target
