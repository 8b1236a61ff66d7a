"""The ``data`` section: where a run's data comes from and how strictly its rows are checked."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rsvl.config.base import StrictModel


class CaptionRules(StrictModel):
    """Limits a caption must meet; captions outside them are quarantined by validation."""

    min_words: int = Field(1, ge=1)
    max_words: int = Field(120, ge=1)
    max_chars: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "CaptionRules":
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is greater than max_words ({self.max_words})")
        return self


class DataSource(StrictModel):
    """A dataset to ingest (``rsvl data ingest``) when its canonical folder is not there yet: an eval
    set's or a progressive stage's."""

    format: str = Field(min_length=1)
    path: str = Field(min_length=1)


class DataConfig(StrictModel):
    """Where a run's data comes from and how strictly it is checked."""

    source: Literal["generate", "ingest"] = "generate"
    format: str | None = None
    path: str | None = None
    root: str = "data"
    seed: int = 0
    generate_scale: int = Field(1, ge=1, le=100)
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    captions: CaptionRules = CaptionRules()

    @model_validator(mode="after")
    def _ingest_needs_source(self) -> "DataConfig":
        if self.source == "ingest" and (self.format is None or self.path is None):
            raise ValueError("source 'ingest' needs both 'format' and 'path'")
        return self
