"""The ``curation`` section: RS5M-style data construction in the ``caption`` and ``filter`` steps.

Two models serve it. The *scorer* is the run's own start model (``model``; "the current model"):
its image–text cosine picks ``ssl-cap`` over rotated copies and drives the funnel's outlier stage
(and, with ``near_duplicates.method: embedding``, its image embeddings). In the cluster profile it
is a pretrained CLIP used as it is. The local profile's start model has an untrained projection
(no CLIP weights exist offline), so ``fit`` first fits it, with the run's own objective and
trainable settings, on a captioned remote-sensing dataset, once per config and data: the fit is
reused by every later step and run (:mod:`rsvl.steps.curation_model`). The *captioner* writes the
top-k candidate captions of rows that have none (:mod:`rsvl.caption.captioners`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rsvl.config.base import StrictModel
from rsvl.config.funnel import FunnelConfig
from rsvl.config.model import ModelConfig


class CurationFit(StrictModel):
    """Fit the scorer (the run's start model) first, with the run's objective and trainable settings.

    Attributes:
        dataset: A captioned canonical dataset under ``data.root`` (its ``train`` rows are fitted).
        epochs: Passes over it.
        batch_size: Images per step.
        lr: Peak learning rate (AdamW, cosine after ``warmup_steps``).
        warmup_steps: Linear warm-up steps.
        seed: Seed of the fit (batch order, captions drawn, augmentation).
        init_training: The run's training (and its ``base`` comparison) starts from the fitted
            scorer, as the cluster profile's starts from the pretrained CLIP that scores its data.
    """

    dataset: str = Field("default/optical", min_length=1)
    epochs: int = Field(2, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0.0)
    warmup_steps: int = Field(4, ge=0)
    seed: int = 0
    init_training: bool = False


class CaptionerConfig(StrictModel):
    """Which registered captioner writes the candidates (:data:`rsvl.caption.captioners.CAPTIONERS`).

    Attributes:
        name: ``coca`` (beam search over a CoCa's decoder, :class:`rsvl.caption.topk.CocaTopK`) or
            ``nearest`` (the captions of the most similar captioned reference images).
        model: The CoCa of ``coca`` (``coca_ViT-L-14`` with its tag, or a saved model folder as
            ``pretrained``); unused by ``nearest``.
        reference: ``nearest``'s captioned dataset under ``data.root`` (its ``train`` rows).
    """

    name: str = Field("nearest", min_length=1)
    model: ModelConfig | None = None
    reference: str = Field("default/optical", min_length=1)

    @model_validator(mode="after")
    def _coca_has_model(self) -> "CaptionerConfig":
        if self.name == "coca" and self.model is None:
            raise ValueError("captioner 'coca' needs a 'model' (e.g. {name: coca_ViT-L-14, pretrained: "
                             "mscoco_finetuned_laion2b_s13b_b90k})")
        return self


class Rs5mCaptionSettings(StrictModel):
    """How the caption step writes RS5M captions for rows without captions (:mod:`rsvl.caption.rs5m`).

    Attributes:
        k: Candidates per image (RS5M: the top five).
        beams: Beam width of the top-k search (at least ``k``).
        seq_len: Longest candidate in tokens, start and end included.
        min_tokens: Fewest caption tokens before end-of-text.
        angles: Rotations in degrees of the ``ssl-cap`` stability score.
        spread: ``std`` (population standard deviation over the rotations) or ``range``.
        geo: Put the geo-metadata sentence in front of both captions when a row has metadata.
        batch_size: Images per captioning batch.
    """

    k: int = Field(5, ge=1, le=20)
    beams: int = Field(10, ge=1)
    seq_len: int = Field(30, ge=2)
    min_tokens: int = Field(4, ge=0)
    angles: list[float] = Field(default_factory=lambda: [0.0, 90.0, 180.0, 270.0], min_length=2)
    spread: Literal["std", "range"] = "std"
    geo: bool = True
    batch_size: int = Field(16, gt=0)

    @model_validator(mode="after")
    def _beams_cover_k(self) -> "Rs5mCaptionSettings":
        if self.beams < self.k:
            raise ValueError(f"beams ({self.beams}) must be at least k ({self.k})")
        return self


class CurationConfig(StrictModel):
    """RS5M data construction: the scorer's fit, the captioner, the captions it writes and the funnel.

    Attributes:
        fit: Fit the scorer (the run's ``model``) first; ``None`` uses it as built (pretrained weights).
        captioner: The captioner of rows without captions.
        captions: RS5M captions for rows without captions in the ``caption`` step; ``None``: none written.
        funnel: The funnel the ``filter`` step runs before its validation suites; ``None``: no funnel.
    """

    fit: CurationFit | None = None
    captioner: CaptionerConfig = CaptionerConfig()
    captions: Rs5mCaptionSettings | None = None
    funnel: FunnelConfig | None = None
