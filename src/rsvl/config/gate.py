"""The ``gate`` section: the rules a candidate must meet to become champion."""

from __future__ import annotations

from pydantic import model_validator

from rsvl.config.base import StrictModel


class GateConfig(StrictModel):
    """Promotion thresholds; every metric named is "higher is better" (recalls, accuracies, BLEU, ...).

    ``minimums`` are absolute floors the candidate must reach. Against a champion, scored on the
    same pinned data in the same run, the candidate must beat it by more than
    ``min_improvement[m]`` on each metric listed there and may fall behind it by at most
    ``max_regression[m]`` on each metric listed there. With no champion only the minimums apply.
    A gate with no rule at all is refused: promotion always needs a reason.
    """

    minimums: dict[str, float] = {}
    min_improvement: dict[str, float] = {}
    max_regression: dict[str, float] = {}

    @model_validator(mode="after")
    def _has_rules(self) -> "GateConfig":
        if not (self.minimums or self.min_improvement):
            raise ValueError("give gate.minimums or gate.min_improvement: a gate without rules would promote anything")
        for name, table in (("min_improvement", self.min_improvement), ("max_regression", self.max_regression)):
            negative = [metric for metric, value in table.items() if value < 0]
            if negative:
                raise ValueError(f"gate.{name} must be >= 0 (got negative values for {negative})")
        return self
