"""Filter a dataset: validate a copy, drop the rows validation quarantined, keep them listed.

:func:`filter_dataset` copies a dataset (the source folder is never changed), validates the copy
(:func:`rsvl.data.validate.validate_dataset`), stops past ``max_bad_fraction`` and then removes
the quarantined rows from the copy's manifest (:func:`drop_quarantined`). The rows stay in the
copy's ``quarantine.parquet`` with stage ``validate``, where, rule and reason; their media files
leave ``media/`` and ``files.parquet``, and ``dataset.json`` counts what is left, with a
``filter`` entry saying how many rows came in, how many were kept and which rules removed the
others. Readers skip quarantined rows anyway (:func:`rsvl.data.store.read_manifest`), so a
dataset validated in place is safe to read too; the filter makes the manifest itself honest.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rsvl.config import CaptionRules
from rsvl.data.schema import FILES_SCHEMA, MANIFEST_SCHEMA, MEDIA_COLUMNS
from rsvl.data.store import (
    FILES_FILE,
    MANIFEST_FILE,
    META_FILE,
    QUARANTINE_FILE,
    VALIDATE_STAGE,
    find_datasets,
    quarantined_ids,
    read_manifest,
    read_meta,
    read_quarantine,
    relative_to_dataset,
    without_ids,
    write_parquet,
)
from rsvl.data.validate import ValidationReport, validate_dataset
from rsvl.errors import DataError, ValidationFailed


@dataclass(frozen=True)
class FilterReport:
    """What :func:`drop_quarantined` removed from a dataset's manifest.

    Attributes:
        dataset: The filtered dataset.
        rows_in: Manifest rows before the filter.
        rows_kept: Manifest rows after it.
        by_rule: Removed rows per broken rule (a row that broke two rules counts under both).
        files_removed: Media files no kept row uses, taken out of ``media/`` and ``files.parquet``.
    """

    dataset: Path
    rows_in: int
    rows_kept: int
    by_rule: dict[str, int] = field(default_factory=dict)
    files_removed: int = 0

    @property
    def rows_removed(self) -> int:
        """Rows the filter took out of the manifest."""
        return self.rows_in - self.rows_kept

    def summary(self) -> str:
        """Return one line with the kept and removed rows, the rules and the quarantine table."""
        text = f"kept {self.rows_kept} of {self.rows_in} rows"
        if self.rows_removed:
            rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.by_rule.items()))
            text += (f"; removed {self.rows_removed} quarantined rows ({rules}), listed with their reasons in "
                     f"{self.dataset / QUARANTINE_FILE}")
        return text

    def to_dict(self) -> dict:
        """The report as the ``filter`` entry of ``dataset.json``."""
        return {"rows_in": self.rows_in, "rows_kept": self.rows_kept, "rows_removed": self.rows_removed,
                "by_rule": dict(sorted(self.by_rule.items())), "files_removed": self.files_removed}


@dataclass(frozen=True)
class RowCounts:
    """Rows a dataset offers its readers and rows it set aside.

    Attributes:
        kept: Manifest rows a reader yields (quarantined rows left out).
        quarantined: Quarantined source records or manifest rows, each counted once (by its
            ``where``) however many rules it broke, over all stages.
        by_stage: ``quarantined`` per stage (``ingest``, ``validate``).
    """

    kept: int
    quarantined: int
    by_stage: dict[str, int] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        """The counts as MLflow params: ``data.rows_kept`` and ``data.rows_quarantined``."""
        return {"data.rows_kept": str(self.kept), "data.rows_quarantined": str(self.quarantined)}


def row_counts(dataset_dir: str | Path) -> RowCounts:
    """Count a dataset's readable rows and its quarantined records.

    Args:
        dataset_dir: A canonical dataset directory.

    Returns:
        The :class:`RowCounts`.
    """
    quarantine = read_quarantine(dataset_dir)
    by_stage = {str(stage): int(group["where"].nunique()) for stage, group in quarantine.groupby("stage")}
    return RowCounts(len(read_manifest(dataset_dir)), sum(by_stage.values()), dict(sorted(by_stage.items())))


def _media(table: pa.Table) -> set[str]:
    return {path for column in MEDIA_COLUMNS for path in table.column(column).to_pylist() if path is not None}


def _prune_files(dataset_dir: Path, unused: set[str]) -> int:
    """Delete ``unused`` media files and their ``files.parquet`` entries; return how many were listed."""
    files = pq.read_table(dataset_dir / FILES_FILE, schema=FILES_SCHEMA)
    listed = files.column("path").to_pylist()
    keep = [path not in unused for path in listed]
    write_parquet(files.filter(pa.array(keep, type=pa.bool_())), dataset_dir / FILES_FILE)
    for rel in sorted(unused):
        relative_to_dataset(dataset_dir, rel).unlink(missing_ok=True)
    return keep.count(False)


def _rules_of(dataset_dir: Path, removed: set[str]) -> dict[str, int]:
    quarantine = read_quarantine(dataset_dir)
    hits = quarantine[(quarantine["stage"] == VALIDATE_STAGE) & quarantine["sample_id"].isin(removed)]
    pairs = hits.drop_duplicates(["sample_id", "rule"])
    return {str(rule): int(n) for rule, n in pairs["rule"].value_counts().items()}


def _write_counts(dataset_dir: Path, kept: pa.Table, report: FilterReport) -> None:
    meta = read_meta(dataset_dir)
    splits: dict[str, int] = {}
    for split in kept.column("split").to_pylist():
        splits[split] = splits.get(split, 0) + 1
    files = pq.read_metadata(dataset_dir / FILES_FILE).num_rows
    quarantined = len(read_quarantine(dataset_dir))
    meta["counts"] = {**meta.get("counts", {}), "rows": kept.num_rows, "files": files,
                      "quarantined": quarantined, "splits": splits}
    meta["filter"] = report.to_dict()
    (dataset_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def drop_quarantined(dataset_dir: str | Path) -> FilterReport:
    """Remove the rows validation quarantined from a dataset's manifest, in place.

    Meant for a copy (the filter step's output): the quarantine table keeps the removed rows, the
    media only they used are deleted, and ``dataset.json`` counts what is left.

    Args:
        dataset_dir: A validated dataset directory (its ``validate`` records name the bad rows).

    Returns:
        The :class:`FilterReport`.
    """
    dataset_dir = Path(dataset_dir)
    read_meta(dataset_dir)
    table = pq.read_table(dataset_dir / MANIFEST_FILE, schema=MANIFEST_SCHEMA)
    bad = quarantined_ids(dataset_dir)
    kept = without_ids(table, bad)
    removed = set(table.column("sample_id").to_pylist()) & bad
    unused = set()
    if removed:
        write_parquet(kept, dataset_dir / MANIFEST_FILE)
        unused = _media(table) - _media(kept)
    report = FilterReport(dataset_dir, table.num_rows, kept.num_rows, _rules_of(dataset_dir, removed),
                          _prune_files(dataset_dir, unused) if unused else 0)
    _write_counts(dataset_dir, kept, report)
    return report


def filter_dataset(
    dataset_dir: str | Path,
    out_dir: str | Path,
    rules: CaptionRules | None = None,
    max_bad_fraction: float = 0.01,
    workers: int | None = None,
) -> tuple[ValidationReport, FilterReport]:
    """Write a validated copy of a dataset that lists only its good rows.

    Args:
        dataset_dir: The dataset to filter (left unchanged).
        out_dir: Where the filtered copy goes (replaced when it exists).
        rules: Caption limits.
        max_bad_fraction: Largest share of bad rows with which the dataset still passes.
        workers: Decoding threads.

    Returns:
        The validation report of the copy (all its rows) and the :class:`FilterReport`.

    Raises:
        ValidationFailed: More than ``max_bad_fraction`` of the rows are bad; the message names
            the rows, the rules and the copy's quarantine table (the copy keeps every row).
        DataError: ``out_dir`` is ``dataset_dir`` or inside it, or the source is not a dataset.
    """
    source, out = Path(dataset_dir).resolve(), Path(out_dir).resolve()
    if out == source or source in out.parents:
        raise DataError(f"filter: the output {out} must not be the dataset {source} or inside it")
    read_meta(source)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    return filter_in_place(out, rules, max_bad_fraction, workers)


def filter_in_place(
    dataset_dir: str | Path,
    rules: CaptionRules | None = None,
    max_bad_fraction: float = 0.01,
    workers: int | None = None,
) -> tuple[ValidationReport, FilterReport]:
    """Validate a dataset a step just wrote and remove the rows validation quarantined, in place.

    The second half of :func:`filter_dataset`, for a step whose own output is the dataset to
    filter (the filter step's funnel writes its kept rows there first).

    Args:
        dataset_dir: The dataset to filter (changed: it is the step's output, not its input).
        rules: Caption limits.
        max_bad_fraction: Largest share of bad rows with which the dataset still passes.
        workers: Decoding threads.

    Returns:
        The validation report (all its rows) and the :class:`FilterReport`.

    Raises:
        ValidationFailed: More than ``max_bad_fraction`` of the rows are bad; the dataset keeps
            every row and the quarantine table for inspection.
    """
    report = validate_dataset(dataset_dir, rules=rules, max_bad_fraction=max_bad_fraction, workers=workers)
    report.raise_if_failed()
    return report, drop_quarantined(dataset_dir)


def filter_tree(
    root: str | Path,
    out: str | Path,
    rules: CaptionRules | None = None,
    max_bad_fraction: float = 0.01,
    workers: int | None = None,
) -> list[tuple[ValidationReport, FilterReport]]:
    """Filter every dataset under ``root`` into the same place under ``out``.

    Every dataset is validated before the first failure is raised; a failed dataset's copy under
    ``out`` keeps all its rows and the quarantine table for inspection.

    Args:
        root: A dataset directory or a directory holding several.
        out: The filtered copy of ``root``.
        rules: Caption limits.
        max_bad_fraction: Largest share of bad rows per dataset.
        workers: Decoding threads.

    Returns:
        ``(validation report, filter report)`` per dataset, in path order.

    Raises:
        ValidationFailed: A dataset's bad share passed ``max_bad_fraction``; the message names
            each failed dataset's rows, rules and quarantine table.
    """
    root, out = Path(root), Path(out)
    results: list[tuple[ValidationReport, FilterReport]] = []
    failures: list[str] = []
    for dataset in find_datasets(root):
        target = out / dataset.relative_to(root)
        try:
            results.append(filter_dataset(dataset, target, rules, max_bad_fraction, workers))
        except ValidationFailed as err:
            failures.append(str(err))
    if failures:
        raise ValidationFailed("\n".join(failures))
    return results
