"""RS5M's captions for uncaptioned images: top-5 candidates, ``top-cap``, ``ssl-cap``, geo sentence.

For every image (:func:`rs5m_captions`):

1. A captioner writes up to five candidate captions with its own score, the sequence
   log-probability (:class:`~rsvl.caption.topk.TopKCaptioner`; :class:`~rsvl.caption.topk.CocaTopK`
   for the project's CoCa captioners).
2. ``top-cap`` is the candidate the generator scores highest (:func:`top_cap`).
3. ``ssl-cap`` is the candidate whose image–text score is most stable over rotated copies of the
   image (:func:`ssl_cap`). RS5M does not publish its exact score; ours, for candidates
   ``c`` and a rotation set ``R`` (default 0°, 90°, 180°, 270°)::

       s[r, c]   = cos(E_img(rot_r(x)), E_txt(c))          for r in R  (any CLIP-like model)
       spread[c] = population standard deviation of s[·, c] over R   (or max − min)
       ssl-cap   = argmin spread; ties (within tie_tol) → higher mean of s[·, c];
                   still tied → higher generator score

   Why: an overhead scene has no "up", so a caption that describes the scene scores the same
   however the image is turned, while one that leans on the frame ("on the left", "at the top")
   or on an orientation-dependent accident of the image does not. The standard deviation uses
   every rotation (the range only the two extremes); cosines, not scaled logits, keep it
   independent of the model's temperature. Stability alone does not measure relevance, which is
   why only the captioner's own top candidates compete and the mean breaks ties.
4. The geo-metadata sentence (:mod:`rsvl.caption.geo_template`) is kept beside them and put in
   front of whichever caption is used, when the image has metadata.

Training then reads, each time it draws an image, ``top-cap`` or ``ssl-cap`` with probability
one half each (:class:`CaptionVariantSampler`), as a function of ``(seed, epoch, index)`` like
:class:`rsvl.train.data.CaptionPairs`'s caption draw, so resumed and multi-worker runs draw the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsvl.caption.geo_template import geo_sentence, geo_sentence_for, month_year, with_geo
from rsvl.caption.rotation import RIGHT_ANGLES, Stability, rotation_scores, stability
from rsvl.caption.topk import Candidate, CocaTopK, TopKCaptioner, sequence_log_probs
from rsvl.data.countries import country_at, relative_location
from rsvl.data.dataset import ManifestDataset
from rsvl.errors import DataError, ModelError

TOP_CAP = "top-cap"
SSL_CAP = "ssl-cap"
VARIANTS = (TOP_CAP, SSL_CAP)
CANDIDATES = 5
"""Candidates per image (RS5M's top five)."""
TIE_TOL = 1e-6
"""Spreads this close to the smallest count as tied (float32 encoders leave ~1e-7 of noise)."""
VARIANT_STREAM = 5
"""Fourth key of the variant draw's RNG, so it does not repeat CaptionPairs' ``(seed, epoch, index)`` stream."""

Preprocess = Callable[[Any], torch.Tensor]


def top_cap(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate with the highest generator score (the first listed on equal scores).

    Raises:
        ValueError: No candidates.
    """
    if not candidates:
        raise ValueError("no candidate captions to choose from")
    return max(candidates, key=lambda candidate: candidate.score)


def ssl_index(stable: Stability, tie_tol: float = TIE_TOL) -> int:
    """Index of the rotation-invariance pick: smallest spread, then highest mean, then first.

    Args:
        stable: The candidates' :class:`~rsvl.caption.rotation.Stability`, in candidate order
            (best generator score first, so "first" means the generator's preference).
        tie_tol: Spreads within this of the smallest are tied.

    Returns:
        The chosen column of ``stable.scores``.
    """
    lowest = float(stable.spread.min())
    tied = [i for i, spread in enumerate(stable.spread.tolist()) if spread <= lowest + tie_tol]
    return max(tied, key=lambda i: (float(stable.mean[i]), -i))


def ssl_cap(candidates: Sequence[Candidate], stable: Stability, tie_tol: float = TIE_TOL) -> Candidate:
    """The rotation-invariance pick among ``candidates`` (see the module docstring).

    Args:
        candidates: One image's candidates, highest generator score first.
        stable: Their stability over rotations, same order.
        tie_tol: Spreads within this of the smallest are tied.

    Raises:
        ValueError: The stability does not have one column per candidate.
    """
    if stable.scores.shape[1] != len(candidates):
        raise ValueError(f"{stable.scores.shape[1]} score columns for {len(candidates)} candidates")
    return candidates[ssl_index(stable, tie_tol)]


@dataclass(frozen=True)
class Rs5mCaptions:
    """One image's RS5M captions.

    Attributes:
        sample_id: The image's sample id.
        candidates: Up to five candidates, highest generator score first.
        stability: Their image–text scores over rotated copies.
        top_cap: The best candidate by generator score.
        ssl_cap: The rotation-invariance pick.
        geo: The metadata sentence, ``""`` when the image has no metadata.
    """

    sample_id: str
    candidates: tuple[Candidate, ...]
    stability: Stability
    top_cap: str
    ssl_cap: str
    geo: str = ""

    def caption(self, variant: str) -> str:
        """The training caption of ``variant`` (``top-cap`` or ``ssl-cap``), geo sentence in front.

        Raises:
            ValueError: Unknown variant.
        """
        if variant not in VARIANTS:
            raise ValueError(f"unknown caption variant {variant!r}; known: {list(VARIANTS)}")
        return with_geo(self.top_cap if variant == TOP_CAP else self.ssl_cap, self.geo)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON or Parquet."""
        return {"sample_id": self.sample_id, "candidates": [c.text for c in self.candidates],
                "scores": [c.score for c in self.candidates], **self.stability.as_dict(),
                TOP_CAP: self.top_cap, SSL_CAP: self.ssl_cap, "geo": self.geo}


def choose(sample_id: str, candidates: Sequence[Candidate], scores: np.ndarray, *, spread: str = "std",
           tie_tol: float = TIE_TOL, geo: str = "") -> Rs5mCaptions:
    """``top-cap`` and ``ssl-cap`` of one image from its candidates and their rotation scores.

    Args:
        sample_id: The image's sample id.
        candidates: Its candidates, highest generator score first.
        scores: (rotations, candidates) cosines (:func:`~rsvl.caption.rotation.rotation_scores`).
        spread: ``"std"`` or ``"range"`` (:func:`~rsvl.caption.rotation.stability`).
        tie_tol: Spreads within this of the smallest are tied.
        geo: The image's metadata sentence.

    Returns:
        The image's :class:`Rs5mCaptions`.

    Raises:
        ModelError: The captioner wrote no caption for the image.
    """
    if not candidates:
        raise ModelError(f"sample {sample_id!r}: the captioner wrote no caption (every candidate decoded empty)")
    stable = stability(scores, spread)
    return Rs5mCaptions(sample_id, tuple(candidates), stable, top_cap(candidates).text,
                        ssl_cap(candidates, stable, tie_tol).text, geo)


class _TwoViews(Dataset):
    """A media column preprocessed for the captioner and for the scoring model."""

    def __init__(self, dataset: ManifestDataset, media: str, first: Preprocess, second: Preprocess) -> None:
        self.dataset, self.media, self.first, self.second = dataset, media, first, second

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.dataset[index]
        if self.media not in sample:
            raise DataError(f"{self.dataset.root} sample {sample['sample_id']!r}: no {self.media!r} media to caption")
        return self.first(sample[self.media]), self.second(sample[self.media])


@torch.no_grad()
def rs5m_captions(
    captioner: TopKCaptioner,
    captioner_preprocess: Preprocess,
    clip_model: nn.Module,
    clip_preprocess: Preprocess,
    clip_tokenizer: Callable[[list[str]], torch.Tensor],
    dataset: ManifestDataset,
    media: str = "image",
    *,
    k: int = CANDIDATES,
    angles: Sequence[float] = RIGHT_ANGLES,
    spread: str = "std",
    tie_tol: float = TIE_TOL,
    geo: bool = True,
    batch_size: int = 16,
    num_workers: int = 0,
) -> dict[str, Rs5mCaptions]:
    """Candidates, ``top-cap``, ``ssl-cap`` and geo sentence for every row of ``dataset``.

    Args:
        captioner: Writes the scored candidates (e.g. ``CocaTopK(model, tokenizer)``).
        captioner_preprocess: The captioner's validation preprocessing.
        clip_model: The model scoring captions against rotated copies (``encode_image``,
            ``encode_text``), in eval mode.
        clip_preprocess: Its validation preprocessing (square output).
        clip_tokenizer: Its tokenizer.
        dataset: The images to caption.
        media: Media column to read.
        k: Candidates per image.
        angles: Rotation set in degrees (:func:`~rsvl.caption.rotation.rotated_copies`).
        spread: ``"std"`` or ``"range"``.
        tie_tol: Spreads within this of the smallest are tied.
        geo: Build each row's metadata sentence (:func:`~rsvl.caption.geo_template.geo_sentence_for`).
        batch_size: Images per batch.
        num_workers: DataLoader processes decoding images.

    Returns:
        Sample id → :class:`Rs5mCaptions`, in row order.

    Raises:
        DataError: A row lacks ``media`` or has bad metadata.
        ModelError: The captioner wrote no caption for an image.
    """
    loader = DataLoader(_TwoViews(dataset, media, captioner_preprocess, clip_preprocess),
                        batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out: dict[str, Rs5mCaptions] = {}
    row = 0
    for for_captioner, for_clip in loader:
        found = captioner(for_captioner, k)
        texts = [[c.text for c in candidates] or [""] for candidates in found]  # empty: refused by choose()
        scores = rotation_scores(clip_model, clip_tokenizer, for_clip, texts, angles)
        for candidates, image_scores in zip(found, scores):
            record = dataset.record(row)
            sample_id = str(record["sample_id"])
            sentence = geo_sentence_for(record) if geo else ""
            out[sample_id] = choose(sample_id, candidates, image_scores[:, :len(candidates)], spread=spread,
                                    tie_tol=tie_tol, geo=sentence)
            row += 1
    return out


def caption_variant(seed: int, epoch: int, index: int, p_top: float = 0.5) -> str:
    """Which caption a training read of sample ``index`` uses: ``top-cap`` with probability ``p_top``.

    The draw is ``numpy.random.default_rng([seed, epoch, index, VARIANT_STREAM]).random() < p_top``.

    Args:
        seed: Run seed.
        epoch: Epoch of the read.
        index: Sample index in the training split.
        p_top: Probability of ``top-cap``.

    Returns:
        ``"top-cap"`` or ``"ssl-cap"``.

    Raises:
        ValueError: ``p_top`` outside [0, 1].
    """
    if not 0.0 <= p_top <= 1.0:
        raise ValueError(f"p_top must be a probability in [0, 1], got {p_top}")
    draw = np.random.default_rng([int(seed), int(epoch), int(index), VARIANT_STREAM]).random()
    return TOP_CAP if draw < p_top else SSL_CAP


class CaptionVariantSampler:
    """Draw ``top-cap`` or ``ssl-cap`` each time training reads an image, reproducibly.

    Args:
        seed: Run seed.
        p_top: Probability of ``top-cap`` (RS5M: one half).

    Raises:
        ValueError: ``p_top`` outside [0, 1].
    """

    def __init__(self, seed: int = 0, p_top: float = 0.5) -> None:
        if not 0.0 <= p_top <= 1.0:
            raise ValueError(f"p_top must be a probability in [0, 1], got {p_top}")
        self.seed, self.p_top, self.epoch = seed, p_top, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose draws the next reads make."""
        self.epoch = epoch

    def variant(self, index: int) -> str:
        """The variant of sample ``index`` this epoch (:func:`caption_variant`)."""
        return caption_variant(self.seed, self.epoch, index, self.p_top)

    def caption(self, index: int, captions: Rs5mCaptions) -> str:
        """The caption sample ``index`` trains on this epoch, geo sentence in front."""
        return captions.caption(self.variant(index))


__all__ = [
    "CANDIDATES", "SSL_CAP", "TIE_TOL", "TOP_CAP", "VARIANTS", "VARIANT_STREAM",
    "Candidate", "CaptionVariantSampler", "CocaTopK", "Rs5mCaptions", "TopKCaptioner",
    "caption_variant", "choose", "country_at", "geo_sentence", "geo_sentence_for", "month_year",
    "relative_location", "rotation_scores", "rs5m_captions", "sequence_log_probs", "ssl_cap", "ssl_index",
    "stability", "top_cap", "with_geo",
]
