"""Score a funnel run against a pool's ground truth, and show its counts as a Markdown table.

A pool with ground truth (:mod:`rsvl.data.synthetic.rs5m_pool`: per row the funnel ``stage``
that should remove it, ``null`` for rows to keep) lets every stage be scored as a classifier of
the rows that entered the funnel. For stage ``s``, with ``R_s`` the rows ``s`` removed and
``E_s`` the rows of the funnel's input whose truth names ``s``:

- ``correct = |R_s ∩ E_s|``;
- precision ``= correct / |R_s|`` (undefined when ``s`` removed nothing);
- recall ``= correct / |E_s|`` (undefined when the truth expects nothing of ``s``).

Each row is removed by at most one stage, so a row an earlier stage removed than the truth names
is a false positive of that earlier stage and a miss of the expected one; a row removed by a later
stage is a miss of the expected one and a false positive of the later one. The last line,
``kept``, scores the rows the funnel kept against the rows whose truth is ``null`` the same way
(precision: the share of kept rows that should be kept; recall: the share of those rows kept).
Rows in the truth that never entered the funnel (rows validation had quarantined before it) are
not counted.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvl.data.funnel import STAGE_PREFIX, STAGES, read_rows, truth_file
from rsvl.data.store import read_manifest, read_quarantine
from rsvl.errors import DataError

KEPT = "kept"
"""The name of the last line of the scores: the rows the funnel kept."""
DEFINITION = ("precision = rows the stage removed that the truth says it should remove / rows it removed; "
              "recall = the same / rows of the funnel's input the truth says it should remove; a row removed "
              "by another stage than the truth names counts against both; 'kept' scores the kept rows against "
              "the rows the truth says to keep")
"""The definition, as ``dataset.json`` records it beside the scores."""


@dataclass(frozen=True)
class StageTruth:
    """One stage's removals scored against the truth.

    Attributes:
        stage: A stage of :data:`rsvl.data.funnel.STAGES`, or :data:`KEPT`.
        removed: Rows the stage removed (for ``kept``: rows the funnel kept).
        expected: Rows of the funnel's input the truth names for the stage (``kept``: truth ``null``).
        correct: Rows in both.
    """

    stage: str
    removed: int
    expected: int
    correct: int

    @property
    def precision(self) -> float | None:
        """``correct / removed``; ``None`` when the stage removed nothing."""
        return self.correct / self.removed if self.removed else None

    @property
    def recall(self) -> float | None:
        """``correct / expected``; ``None`` when the truth expects nothing of the stage."""
        return self.correct / self.expected if self.expected else None

    def to_dict(self) -> dict[str, Any]:
        """The scores as JSON-ready values."""
        return {"stage": self.stage, "removed": self.removed, "expected": self.expected, "correct": self.correct,
                "precision": self.precision, "recall": self.recall}


def score_stages(truth: Mapping[str, Mapping[str, Any]], rows_in: Collection[str],
                 removed: Mapping[str, Collection[str]], kept: Collection[str], *,
                 where: str = "truth") -> tuple[StageTruth, ...]:
    """Score each stage's removals, and the kept rows, against the truth (definitions in the module docstring).

    Args:
        truth: ``{sample_id: {"stage": stage or None, ...}}`` (:func:`rsvl.data.synthetic.rs5m_pool.read_truth`).
        rows_in: Sample ids that entered the funnel.
        removed: ``{stage: sample ids it removed}``; a stage missing from it removed nothing.
        kept: Sample ids the funnel kept.
        where: The truth's file, for error messages.

    Returns:
        One :class:`StageTruth` per stage of :data:`~rsvl.data.funnel.STAGES`, in order, then ``kept``.

    Raises:
        DataError: A row that entered the funnel has no truth, or its truth names an unknown stage.
    """
    rows_in = set(rows_in)
    missing = sorted(rows_in - set(truth))
    if missing:
        raise DataError(f"{where}: {len(missing)} row(s) of the funnel's input have no ground truth, e.g. "
                        f"sample_id {missing[0]!r}")
    expected: dict[str | None, set[str]] = {}
    for sample_id in sorted(rows_in):
        stage = truth[sample_id].get("stage")
        if stage is not None and stage not in STAGES:
            raise DataError(f"{where}: sample_id {sample_id!r} names stage {stage!r}; the funnel's stages are "
                            f"{list(STAGES)} (or null for a row to keep)")
        expected.setdefault(stage, set()).add(sample_id)
    scores = []
    for stage, predicted in [*((s, set(removed.get(s, ()))) for s in STAGES), (KEPT, set(kept))]:
        target = expected.get(None if stage == KEPT else stage, set())
        scores.append(StageTruth(stage, len(predicted), len(target), len(predicted & target)))
    return tuple(scores)


@dataclass(frozen=True)
class FunnelTruth:
    """A funnel run scored against its source's ground truth.

    Attributes:
        file: The truth file's name.
        stages: Per-stage scores, then ``kept`` (:func:`score_stages`).
    """

    file: str
    stages: tuple[StageTruth, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``truth`` entry of the ``funnel`` entry of ``dataset.json``."""
        return {"file": self.file, "definition": DEFINITION, "stages": [score.to_dict() for score in self.stages]}


def funnel_truth(source_dir: str | Path, funnel_dir: str | Path) -> FunnelTruth | None:
    """Score a funnel run (:func:`rsvl.data.funnel.run_funnel`) against the ground truth of its source.

    The rows that entered are the source's readable rows; the removals are the output's
    ``funnel.<stage>`` quarantine records of those rows; the kept rows are the output's manifest.
    The truth is the file the output's ``dataset.json`` names (``truth_file``; the funnel copies it).

    Args:
        source_dir: The funnelled dataset.
        funnel_dir: The funnel's output, before any later step drops rows from it.

    Returns:
        The :class:`FunnelTruth`, or ``None`` when the output has no ground truth.

    Raises:
        DataError: The truth file is not valid JSON, lacks a row that entered, or names an unknown stage.
    """
    path = truth_file(funnel_dir)
    if path is None:
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    rows_in = {row.sample_id for row in read_rows(source_dir)}
    records = read_quarantine(funnel_dir)
    removed = {stage: set(records[(records["stage"] == f"{STAGE_PREFIX}{stage}")
                                  & records["sample_id"].isin(rows_in)]["sample_id"]) for stage in STAGES}
    kept = set(read_manifest(funnel_dir)["sample_id"])
    return FunnelTruth(path.name, score_stages(truth, rows_in, removed, kept, where=str(path)))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def funnel_table(entry: Mapping[str, Any]) -> str:
    """The funnel's counts (and truth scores, when recorded) as Markdown.

    Args:
        entry: The ``funnel`` entry of ``dataset.json`` (:meth:`rsvl.data.funnel.FunnelReport.to_dict`,
            with ``truth`` from :meth:`FunnelTruth.to_dict` when the source had ground truth).

    Returns:
        A table with one line per stage (rows in, removed, kept, removed per rule; precision and
        recall with truth), a ``kept`` line with truth, and a sentence defining the scores.
    """
    truth = {score["stage"]: score for score in (entry.get("truth") or {}).get("stages", [])}
    header = ["stage", "rows in", "removed", "kept", "removed by rule"]
    if truth:
        header += ["precision", "recall"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in entry["stages"]:
        rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(stage["by_rule"].items())) or "–"
        cells = [stage["stage"], str(stage["rows_in"]), str(stage["removed"]), str(stage["kept"]), rules]
        if truth:
            score = truth.get(stage["stage"], {})
            cells += [_share(score.get("precision")), _share(score.get("recall"))]
        lines.append("| " + " | ".join(cells) + " |")
    if KEPT in truth:
        score = truth[KEPT]
        lines.append(f"| **{KEPT}** | {entry['rows_in']} | – | {entry['rows_kept']} | – | "
                     f"{_share(score['precision'])} | {_share(score['recall'])} |")
    text = "\n".join(lines)
    if truth:
        text += f"\n\nScored against the pool's ground truth (`{entry['truth']['file']}`): {DEFINITION}."
    return text
