"""Settings of the SAR-Narrator caption step: how many captions per route, limits, which rewriter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rsvl.config.base import StrictModel


class ChatEndpoint(StrictModel):
    """An OpenAI-compatible chat endpoint (``POST {base_url}/v1/chat/completions``)."""

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    timeout_s: float = Field(30.0, gt=0)
    api_key_env: str | None = None
    """Name of an environment variable holding a bearer token; the token itself never sits in a config."""
    temperature: float = Field(0.8, gt=0, le=2)
    """Sampling temperature when drafts are diversified (``rewrite_drafts``); optical rewrites use 0."""
    variants: int = Field(3, ge=1, le=8)
    """Wordings asked for per diversified draft; the first one not already used for the image is kept."""


class CaptionConfig(StrictModel):
    """How :func:`rsvl.caption.caption_dataset` drafts, rewrites and filters captions.

    Size thresholds are box area as a share of the chip: below ``size_medium`` a box is small,
    below ``size_large`` medium, else large. ``mask_values`` maps mask pixel values to class names
    (``{"0": "sea", "1": "land"}``); when unset the dataset's ``mask_values`` metadata is used, and
    a dataset with neither (HRSID's instance masks) gets no SA2C captions.
    """

    seed: int = Field(0, ge=0)
    a2c_captions: int = Field(4, ge=0, le=8)
    sa2c_captions: int = Field(2, ge=0, le=4)
    min_words: int = Field(3, ge=1)
    max_words: int = Field(60, ge=1)
    max_chars: int = Field(400, ge=1)
    size_medium: float = Field(0.003, gt=0, lt=1)
    size_large: float = Field(0.015, gt=0, lt=1)
    land_margin_px: int = Field(3, ge=0)
    share_tolerance: float = Field(0.05, ge=0, le=1)
    rewriter: Literal["rule", "chat"] = "rule"
    chat: ChatEndpoint | None = None
    rewrite_drafts: bool = False
    recaption: bool = False
    optical_captions: str | None = None
    """JSON file ``{sample_id: [optical captions]}`` of co-registered optical images (optical route)."""
    mask_values: dict[str, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "CaptionConfig":
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is greater than max_words ({self.max_words})")
        if self.size_medium >= self.size_large:
            raise ValueError(f"size_medium ({self.size_medium}) must be below size_large ({self.size_large})")
        if self.rewriter == "chat" and self.chat is None:
            raise ValueError("rewriter 'chat' needs a 'chat' section with base_url and model")
        return self
