"""The ``funnel`` settings: how the RS5M-style data funnel (:mod:`rsvl.data.funnel`) filters a pool.

Stages, in order: keyword filter → decode/validate → exact duplicates → near duplicates →
outliers. RS5M publishes neither its thresholds nor its de-duplication method (PAPERS.md §3),
so every default below is our choice, with its reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rsvl.config.base import StrictModel


class DecodeRules(StrictModel):
    """What an image must be to pass the decode/validate stage.

    Attributes:
        min_side: Shortest side in pixels; smaller pictures are icons and thumbnails, too small
            for a scene (CLIP would upsample them to 224 px of blur).
        max_side: Longest side in pixels (a larger one is a map sheet or a mosaic, not a scene).
        max_aspect: Longest over shortest side; web banners and panorama strips are wider.
        bands: Accepted band counts; 3 (RGB), what CLIP's image tower takes.
        min_value_range: Smallest max − min of the pixel values; a flat image (every pixel
            equal) is a placeholder ("image not available"), not a picture.
    """

    min_side: int = Field(32, ge=1)
    max_side: int = Field(10_000, ge=1)
    max_aspect: float = Field(4.0, ge=1.0)
    bands: list[int] = Field(default_factory=lambda: [3], min_length=1)
    min_value_range: float = Field(1.0, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> "DecodeRules":
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) is greater than max_side ({self.max_side})")
        if any(b < 1 for b in self.bands):
            raise ValueError(f"bands must be positive band counts, got {self.bands}")
        return self


class NearDuplicateConfig(StrictModel):
    """How near duplicates are found: a perceptual hash and a Hamming radius, or embedding cosine.

    The defaults come from the mixed pool (:mod:`rsvl.data.synthetic.rs5m_pool`, seeds 0-39): with
    pHash at 144 bits every planted variant (1-2 px crop, blockwise JPEG-like noise, brightness
    shift) lay within 32 bits of its original and every two distinct images 36 bits or more apart,
    so 34 sits in the gap. At 64 bits the two overlapped (a variant 12 bits from its original, two
    distinct forests 6 bits apart), and dHash (64 bits) gave two distinct parking lots, whose stalls
    repeat at a fixed pitch, equal hashes.

    Attributes:
        method: ``phash`` (DCT hash, the default), ``dhash`` (difference hash) or ``embedding``
            (cosine of image embeddings through a FAISS inner-product index; needs ``faiss-cpu``
            and an ``embed`` function, e.g. the CLIP image tower).
        hash_size: Hash side; the hash has ``hash_size**2`` bits.
        max_distance: A row within this many differing bits of an earlier kept row is a near
            duplicate (hash methods).
        min_cosine: A row whose embedding has at least this cosine with an earlier kept row's is a
            near duplicate (``embedding``). 0.95 is a starting point, not measured here (the pool
            has no trained CLIP to embed with): set it from the model's scores on known copies.
    """

    method: Literal["dhash", "phash", "embedding"] = "phash"
    hash_size: int = Field(12, ge=2, le=32)
    max_distance: int = Field(34, ge=0)
    min_cosine: float = Field(0.95, gt=-1.0, le=1.0)

    @model_validator(mode="after")
    def _within_hash(self) -> "NearDuplicateConfig":
        if self.max_distance >= self.hash_size ** 2:
            raise ValueError(f"max_distance ({self.max_distance}) must be below the {self.hash_size ** 2} "
                             f"bits of a hash_size {self.hash_size} hash")
        return self


class OutlierConfig(StrictModel):
    """Thresholds of the outlier stage and the prompts of the default "is remote sensing" score.

    Attributes:
        min_image_text_score: Rows whose image–text score (mean over the row's captions) is below
            this are removed. The default 0.28 is LAION-5B's CLIP ViT-B/32 cosine cut for English
            pairs; a fine-tuned or tiny model scores on its own scale, so set it per model.
        min_rs_score: Rows whose "is remote sensing" score is below this are removed. The default
            score is a probability (:func:`rsvl.data.funnel.zero_shot_rs_score`), so 0.5 means
            "more likely remote sensing than not".
        rs_prompts: Prompts of the remote-sensing side of the default score: the three image nouns
            of GeoRSCLIP's zero-shot templates.
        other_prompts: Prompts of the other side: everyday photos, CLIP's ``a photo of ...`` family.
        logit_scale: Multiplier of the score difference before the softmax (CLIP's 100).
    """

    min_image_text_score: float = 0.28
    min_rs_score: float = Field(0.5, ge=0.0, le=1.0)
    rs_prompts: list[str] = Field(default_factory=lambda: [
        "a remote sensing image.", "an aerial image.", "a satellite image."], min_length=1)
    other_prompts: list[str] = Field(default_factory=lambda: [
        "a photo.", "a close-up photo of an object.", "a photo taken at ground level."], min_length=1)
    logit_scale: float = Field(100.0, gt=0.0)


class FunnelConfig(StrictModel):
    """Settings of the whole funnel.

    Attributes:
        keywords_file: Keyword list, one keyword or phrase a line (``#`` comments); ``None`` reads
            the packaged list ``rsvl/data/tables/rs_keywords.txt``. A relative path is relative to
            the working directory.
        decode: Rules of the decode/validate stage.
        near_duplicates: Method and threshold of the near-duplicate stage.
        outliers: Thresholds of the outlier stage.
        batch_size: Images per call of the scoring and embedding functions.
        workers: Threads that decode and hash images (``None``: CPU count, at most 8).
    """

    keywords_file: str | None = None
    decode: DecodeRules = DecodeRules()
    near_duplicates: NearDuplicateConfig = NearDuplicateConfig()
    outliers: OutlierConfig = OutlierConfig()
    batch_size: int = Field(64, ge=1)
    workers: int | None = Field(None, ge=1)
