"""The base of every config section: strict types, no unknown keys, immutable once loaded.

Its own module so config sections defined next to the code that reads them (the eval sets in
:mod:`rsvl.config.evaluate`) and the run config that gathers them share it without a cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for config sections: no coercion, no unknown keys, immutable once loaded."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")
