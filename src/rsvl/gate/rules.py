"""The promotion decision: a candidate's metrics against the thresholds and the champion's metrics.

Pure and deterministic, so the same numbers always give the same decision and the reasons can be
shown to people verbatim (model-version tags, the Markdown report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from rsvl.config import GateConfig


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why.

    Attributes:
        promote: Whether the candidate becomes the champion.
        reasons: One line per rule checked, each saying pass or fail with the numbers.
        deltas: Candidate minus champion for every metric both have (empty without a champion).
        candidate: The candidate's metrics.
        champion: The champion's metrics on the same data, ``None`` when there is no champion.
        champion_version: The champion's registry version, ``None`` when there is none.
    """

    promote: bool
    reasons: list[str]
    deltas: dict[str, float] = field(default_factory=dict)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] | None = None
    champion_version: str | None = None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def decide(
    gate: GateConfig,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    """Apply the gate's rules.

    Every rule is checked (not only up to the first failure) so the report lists all reasons. A
    metric named by a rule but missing from the candidate (or from the champion, for the relative
    rules) fails that rule: a candidate cannot pass on numbers nobody measured.

    Args:
        gate: The thresholds.
        candidate: The candidate's metrics.
        champion: The champion's metrics scored on the same data in the same run, or ``None``.
        champion_version: The champion's version, for the record.

    Returns:
        The :class:`GateDecision`.
    """
    reasons: list[str] = []
    passed = True

    def check(ok: bool, text: str) -> None:
        nonlocal passed
        passed = passed and ok
        reasons.append(f"{'PASS' if ok else 'FAIL'} {text}")

    for metric, floor in sorted(gate.minimums.items()):
        if metric not in candidate:
            check(False, f"{metric}: missing from the candidate's metrics (minimum {_fmt(floor)})")
        else:
            check(candidate[metric] >= floor, f"{metric} = {_fmt(candidate[metric])}, minimum {_fmt(floor)}")
    deltas: dict[str, float] = {}
    if champion is None:
        reasons.append("no champion yet: only the minimums apply")
    else:
        deltas = {m: float(candidate[m]) - float(champion[m]) for m in sorted(candidate) if m in champion}
        for metric, margin in sorted(gate.min_improvement.items()):
            if metric not in deltas:
                check(False, f"{metric}: not measured for both candidate and champion")
            else:
                check(deltas[metric] > margin,
                      f"{metric} = {_fmt(candidate[metric])} vs champion {_fmt(champion[metric])}: "
                      f"change {deltas[metric]:+.4g}, must be more than +{_fmt(margin)}")
        for metric, margin in sorted(gate.max_regression.items()):
            if metric not in deltas:
                check(False, f"{metric}: not measured for both candidate and champion")
            else:
                check(deltas[metric] >= -margin,
                      f"{metric} = {_fmt(candidate[metric])} vs champion {_fmt(champion[metric])}: "
                      f"change {deltas[metric]:+.4g}, may fall by at most {_fmt(margin)}")
    return GateDecision(
        promote=passed, reasons=reasons, deltas=deltas, candidate=dict(candidate),
        champion=dict(champion) if champion is not None else None, champion_version=champion_version,
    )
