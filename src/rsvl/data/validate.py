"""Validate canonical datasets with Great Expectations and quarantine the rows that fail.

Per dataset: compute per-row facts (:mod:`rsvl.data.facts`), run the kind's suite
(:mod:`rsvl.data.suites`) on them and turn every unexpected row into a ``validate`` quarantine
record. Earlier ``validate`` records of rows still listed are replaced; ingest records and those of
rows a filter removed stay. The report goes to ``validation.json`` (see ``docs/data.md``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rsvl.config import CaptionRules
from rsvl.data.facts import compute_facts
from rsvl.data.store import (
    MANIFEST_FILE,
    VALIDATE_STAGE,
    QuarantineRecord,
    find_datasets,
    read_manifest,
    read_meta,
    read_quarantine,
    write_quarantine,
)
from rsvl.errors import DataError, ValidationFailed
from rsvl.processes import run_jobs

STAGE = VALIDATE_STAGE
REPORT_FILE = "validation.json"


@dataclass
class ValidationReport:
    """Outcome of validating one dataset."""

    dataset: Path
    kind: str
    rows: int
    bad_rows: int
    max_bad_fraction: float
    quarantine_path: Path
    by_rule: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def bad_fraction(self) -> float:
        """Share of manifest rows with at least one failed rule (0 for an empty manifest)."""
        return self.bad_rows / self.rows if self.rows else 0.0

    @property
    def passed(self) -> bool:
        """Whether the bad share is within ``max_bad_fraction``."""
        return self.bad_fraction <= self.max_bad_fraction

    def summary(self) -> str:
        """Return one line naming the counts, the failed rules and the quarantine table."""
        verdict = "passed" if self.passed else "FAILED"
        text = (f"{self.dataset}: {verdict}: {self.bad_rows} of {self.rows} rows ({self.bad_fraction:.1%}) "
                f"broke a rule (limit {self.max_bad_fraction:.1%})")
        if self.by_rule:
            rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.by_rule.items()))
            text += f"; rules: {rules}; quarantined rows are in {self.quarantine_path}"
        return text

    def to_dict(self) -> dict:
        """Return the report as JSON-ready values (what ``validation.json`` holds).

        Paths are relative to the dataset and timings are left out, so the same data always
        gives the same bytes (and so the same DVC version).
        """
        return {
            "dataset": self.dataset.name,
            "kind": self.kind,
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "bad_fraction": self.bad_fraction,
            "max_bad_fraction": self.max_bad_fraction,
            "passed": self.passed,
            "by_rule": dict(sorted(self.by_rule.items())),
            "quarantine": self.quarantine_path.name,
        }

    def raise_if_failed(self) -> None:
        """Raise :class:`ValidationFailed` with :meth:`summary` when the dataset did not pass."""
        if not self.passed:
            raise ValidationFailed(self.summary())


def _read(dataset_dir: Path):
    meta = read_meta(dataset_dir)
    path = dataset_dir / MANIFEST_FILE
    try:
        stored = pq.read_schema(path).names
        # read every stored row, quarantined or not, so a row that was fixed gets cleared
        manifest = read_manifest(dataset_dir, include_quarantined=True)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: cannot read the manifest ({err})") from err
    return meta, manifest, stored


def _run_suite(kind: str, facts, table_expectations: list, checks: list):
    # great_expectations is slow to import; load it only when validating
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX's progress bars would flood the step logs
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("manifest").add_dataframe_asset("facts")
             .add_batch_definition_whole_dataframe("all_rows"))
    for index, expectation in enumerate(table_expectations):
        # the meta tags tell table-level results from row checks and lead each result back to its check
        expectation.meta = {"table": index}
    for index, check in enumerate(checks):
        check.expectation.meta = {"check": index}
    expectations = table_expectations + [check.expectation for check in checks]
    suite = context.suites.add(gx.ExpectationSuite(name=f"rsvl-{kind}", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"rsvl-{kind}-rows", data=batch, suite=suite))
    index_columns = ["row", "sample_id"] if "sample_id" in facts else ["row"]
    return definition.run(
        batch_parameters={"dataframe": facts},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns},
    )


def _raised(result) -> str | None:
    info = result.exception_info or {}
    entries = info.values() if info and "raised_exception" not in info else [info]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return entry.get("exception_message") or "unknown error"
    return None


def check_rows(dataset_dir: Path, kind: str, manifest, facts, rules: CaptionRules) -> list[QuarantineRecord]:
    """Run the kind's suite on the facts and word every unexpected row as a quarantine record.

    Args:
        dataset_dir: Dataset directory (named in errors).
        kind: Dataset kind from ``dataset.json``.
        manifest: The manifest rows.
        facts: The facts table of the manifest.
        rules: Caption limits.

    Returns:
        One record per (failed expectation, row) in row order, ``where`` naming the 0-based row.

    Raises:
        DataError: A table-level expectation failed (a required column is not stored).
    """
    from rsvl.data.suites import build_checks

    table_expectations, checks = build_checks(kind, rules, facts)
    results = _run_suite(kind, facts, table_expectations, checks).results
    missing = [r.expectation_config.kwargs["column"] for r in results
               if "table" in r.expectation_config.meta and not r.success]
    if missing:
        raise DataError(f"{dataset_dir / MANIFEST_FILE}: a {kind} manifest needs columns {missing}, "
                        "which are not stored (expect_column_to_exist)")
    # missing values become None (not NaN), so reasons and sample ids read None
    facts_rows = facts.astype(object).where(facts.notna(), None).to_dict("records")
    records = []
    for result in results:
        if "check" not in result.expectation_config.meta:
            continue
        check = checks[result.expectation_config.meta["check"]]
        error = _raised(result)
        if error:
            # an expectation that raised is a bug, not bad data; fail rather than pass the rows
            raise RuntimeError(f"expectation {check.rule} could not run on {dataset_dir}: {error}")
        for hit in result.result.get("unexpected_index_list") or []:
            row = int(hit["row"])
            fact, record = facts_rows[row], manifest.iloc[row].to_dict()
            records.append((row, QuarantineRecord(
                stage=STAGE,
                where=f"{MANIFEST_FILE} row {row} (sample_id {fact.get('sample_id')!r})",
                rule=check.rule,
                reason=check.reason(fact, record),
                sample_id=fact.get("sample_id"),
            )))
    # row then rule order, so the quarantine table is the same bytes on every run
    return [record for _, record in sorted(records, key=lambda pair: (pair[0], pair[1].rule))]


def replace_validation_records(dataset_dir: Path, records: list[QuarantineRecord], listed: set[str]) -> Path:
    """Swap the ``validate`` quarantine rows of the rows still listed for ``records``.

    Other stages' records, and ``validate`` records of rows no longer listed, stay.

    Args:
        dataset_dir: Dataset directory.
        records: New validation records.
        listed: The sample ids the manifest lists (every stored row).

    Returns:
        Path of the quarantine table.
    """
    kept = [QuarantineRecord(**row) for row in read_quarantine(dataset_dir).to_dict("records")
            if row["stage"] != STAGE or (row["sample_id"] is not None and row["sample_id"] not in listed)]
    return write_quarantine(dataset_dir, kept + records)


def validate_dataset(
    dataset_dir: str | Path,
    rules: CaptionRules | None = None,
    max_bad_fraction: float = 0.01,
    workers: int | None = None,
) -> ValidationReport:
    """Validate one dataset, quarantine its bad rows and write ``validation.json``.

    Args:
        dataset_dir: A canonical dataset directory.
        rules: Caption limits (default: :class:`CaptionRules` defaults).
        max_bad_fraction: Largest share of bad rows with which the dataset still passes.
        workers: Threads that decode media (default: CPU count, at most 8).

    Returns:
        The report; check :attr:`ValidationReport.passed` or call ``raise_if_failed()``.

    Raises:
        DataError: Not a dataset, or its manifest is unreadable or lacks a column its kind needs.
        SchemaVersionError: The dataset was written by a newer schema version.
    """
    started = time.perf_counter()
    dataset_dir = Path(dataset_dir)
    rules = rules or CaptionRules()
    meta, manifest, stored = _read(dataset_dir)
    facts = compute_facts(dataset_dir, manifest, stored, workers)
    records = check_rows(dataset_dir, meta["kind"], manifest, facts, rules)
    path = replace_validation_records(dataset_dir, records, set(manifest["sample_id"]))
    by_rule: dict[str, int] = {}
    for record in records:
        by_rule[record.rule] = by_rule.get(record.rule, 0) + 1
    report = ValidationReport(
        dataset=dataset_dir,
        kind=meta["kind"],
        rows=len(manifest),
        # a row breaking several rules counts once
        bad_rows=len({r.where for r in records}),
        max_bad_fraction=max_bad_fraction,
        quarantine_path=path,
        by_rule=by_rule,
        seconds=time.perf_counter() - started,
    )
    (dataset_dir / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


RAW_POOL_KEY = "raw_pool"
"""``dataset.json`` key of a raw pool: why its rows are checked downstream instead of here (its value)."""


def raw_pools(root: str | Path) -> list[Path]:
    """The datasets under ``root`` that are raw pools (``dataset.json`` has :data:`RAW_POOL_KEY`).

    A raw pool, such as RS5M's mixed web pool (:mod:`rsvl.data.synthetic.rs5m_pool`), holds bad rows on
    purpose (corrupt files, uncaptioned images): the caption step and the funnel deal with them and the
    filter step validates what is left, so :func:`validate_tree` leaves it out (the CLI says so).

    Args:
        root: A dataset directory or a directory holding several.
    """
    return [d for d in find_datasets(root) if RAW_POOL_KEY in read_meta(d)]


def validate_tree(
    root: str | Path,
    rules: CaptionRules | None = None,
    max_bad_fraction: float = 0.01,
    workers: int | None = None,
    processes: int = 1,
) -> list[ValidationReport]:
    """Validate every dataset under ``root`` (all but raw pools, :func:`raw_pools`) and fail if any passed the limit.

    Args:
        root: A dataset directory or a directory holding several.
        rules: Caption limits.
        max_bad_fraction: Largest share of bad rows per dataset.
        workers: Decoding threads.
        processes: Datasets validated at the same time, each in its own process
            (:func:`rsvl.processes.run_jobs`; each imports Great Expectations once, ~4 s).

    Returns:
        One report per dataset, in path order.

    Raises:
        ValidationFailed: A dataset's bad share passed ``max_bad_fraction`` (one summary line each).
    """
    pools = set(raw_pools(root))
    jobs = [(d, rules, max_bad_fraction, workers) for d in find_datasets(root) if d not in pools]
    reports = run_jobs(validate_dataset, jobs, processes)
    failed = [r for r in reports if not r.passed]
    if failed:
        raise ValidationFailed("\n".join(r.summary() for r in failed))
    return reports

