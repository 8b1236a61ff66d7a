"""The registered captioners of the ``caption`` step's RS5M path: who writes the top-k candidates.

:data:`CAPTIONERS` maps ``curation.captioner.name`` to a factory ``(cfg, scorer) -> (captioner,
preprocess)``; :func:`build_captioner` looks it up. Each captioner follows
:class:`~rsvl.caption.topk.TopKCaptioner`: preprocessed images in, per image up to ``k`` distinct
:class:`~rsvl.caption.topk.Candidate` captions out, best first.

* ``coca``: beam search over an open_clip CoCa's decoder (:class:`~rsvl.caption.topk.CocaTopK`),
  scores are sequence log-probabilities. The cluster profile's captioner (``coca_ViT-L-14``); a
  saved model folder (the SAR-TEXT CoCa track's) works as ``pretrained``. Offline, without the
  weights in the cache, building it raises :class:`~rsvl.errors.WeightsNotCachedError`.
* ``nearest``: caption transfer from the nearest captioned images (Devlin et al. 2015, "Exploring
  Nearest Neighbor Approaches for Image Captioning"), :class:`NearestCaptions`. The local
  stand-in: no generative captioner's weights exist offline, and a CoCa decoder trained from
  scratch for 3 minutes on the 490 default training pairs wrote "in the image ." for every image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsvl.caption.rs5m import Preprocess
from rsvl.caption.topk import Candidate, CocaTopK, TopKCaptioner
from rsvl.config.curation import CurationConfig, Rs5mCaptionSettings
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import META_FILE
from rsvl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rsvl.config import RunConfig


class Scorer(Protocol):
    """The data steps' scorer as a captioner sees it (:class:`rsvl.steps.curation_model.CurationModel`)."""

    model: nn.Module
    preprocess: Preprocess
    tokenizer: Any


CaptionerFactory = Callable[["RunConfig", Scorer], tuple[TopKCaptioner, Preprocess]]
"""``(cfg, scorer) -> (captioner, the preprocessing its images need)``."""


class NearestCaptions:
    """Captions of the most similar captioned reference images, scored by image–image cosine.

    The reference images are embedded once, on the first call, with ``model``'s image tower
    (L2-normalised ``encode_image``). For a query image, the references are ranked by the cosine
    of their embedding with the query's, highest first (ties: reference order); walking down
    that ranking, each reference's captions are taken in their listed order, skipping texts
    already taken, until ``k`` distinct texts are found. Every candidate's score is the cosine of
    the reference image it came from, so the captions of one reference share a score and the
    list is sorted best first. Nothing else is excluded: a query that is itself one of the
    references (or a copy of one) gets that reference's own captions at cosine ~1; the caller
    decides which images to caption. :attr:`Candidate.length` is 0 (no tokens are summed).

    Args:
        model: A CLIP-like model (``encode_image``), used in eval mode.
        preprocess: Its validation preprocessing; queries must be preprocessed with it too.
        reference: The captioned reference rows (their media and ``captions``).
        media: Media column of the reference images.
        batch_size: Reference images per embedding batch.

    Raises:
        DataError: No reference row has a caption.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess, reference: ManifestDataset, *,
                 media: str = "image", batch_size: int = 32) -> None:
        captions = [[str(text) for text in (captions or []) if str(text).strip()]
                    for captions in reference.frame["captions"]]
        keep = [bool(texts) for texts in captions]
        if not any(keep):
            raise DataError(f"{reference.root}: no reference row has a caption to transfer")
        # rows without captions have nothing to give; they are not embedded
        self.reference = reference.subset(keep)
        self.captions = [texts for texts in captions if texts]
        self.model, self.preprocess, self.media, self.batch_size = model, preprocess, media, batch_size
        self._bank: torch.Tensor | None = None

    @property
    def reference_ids(self) -> list[str]:
        """Sample ids of the reference rows, in the order of :meth:`embeddings`."""
        return [str(sample_id) for sample_id in self.reference.frame["sample_id"]]

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            return F.normalize(self.model.encode_image(images.to(device)).float(), dim=-1)
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def embeddings(self) -> torch.Tensor:
        """The reference images' unit embeddings (references, dim), computed on first use and kept.

        Raises:
            DataError: A reference row lacks the media column.
        """
        if self._bank is None:
            vectors = []
            for start in range(0, len(self.reference), self.batch_size):
                batch = []
                for index in range(start, min(start + self.batch_size, len(self.reference))):
                    sample = self.reference[index]
                    if self.media not in sample:
                        raise DataError(f"{self.reference.root} sample {sample['sample_id']!r}: no {self.media!r} "
                                        "media to embed as a caption reference")
                    batch.append(self.preprocess(sample[self.media]))
                vectors.append(self._encode(torch.stack(batch)))
            self._bank = torch.cat(vectors)
        return self._bank

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, k: int) -> list[list[Candidate]]:
        """Caption a batch (see :class:`~rsvl.caption.topk.TopKCaptioner`).

        Args:
            images: (N, C, H, W) images, preprocessed with :attr:`preprocess`.
            k: Most captions per image.

        Returns:
            Per image, up to ``k`` distinct captions, highest cosine first.

        Raises:
            ValueError: ``k`` below 1.
        """
        if k < 1:
            raise ValueError(f"k={k}: at least one caption per image")
        bank = self.embeddings()
        cosines = (self._encode(images) @ bank.to(images.device).T).double().cpu().numpy()
        return [self._take(row, k) for row in cosines]

    def _take(self, cosines: np.ndarray, k: int) -> list[Candidate]:
        found: dict[str, Candidate] = {}
        for reference in np.argsort(-cosines, kind="stable"):
            for text in self.captions[int(reference)]:
                if text not in found:
                    found[text] = Candidate(text, float(cosines[reference]), 0)
                if len(found) == k:
                    return list(found.values())
        return list(found.values())


def _curation(cfg: "RunConfig") -> CurationConfig:
    if cfg.curation is None:
        raise ConfigError(f"{cfg.paper} ({cfg.profile}): a captioner needs the 'curation' section")
    return cfg.curation


def _settings(cfg: "RunConfig") -> Rs5mCaptionSettings:
    return _curation(cfg).captions or Rs5mCaptionSettings()


def build_coca(cfg: "RunConfig", scorer: Scorer) -> tuple[TopKCaptioner, Preprocess]:
    """The ``coca`` captioner: :class:`~rsvl.caption.topk.CocaTopK` over ``curation.captioner.model``.

    A ``pretrained`` that is a folder is loaded as a saved model (:func:`rsvl.models.load_model`);
    otherwise the model is built by name with that tag or weights file. Beam width, longest caption
    and fewest tokens come from ``curation.captions``.

    Args:
        cfg: The run config.
        scorer: Unused (the CoCa scores its own captions).

    Returns:
        The captioner and the CoCa's validation preprocessing.

    Raises:
        ConfigError: The model is not a CoCa, or the lengths do not fit its decoder.
        ModelError: The model cannot be built or loaded.
        WeightsNotCachedError: Its weights are not cached and the hub is offline.
    """
    from rsvl.models import build_model, load_model

    spec = _curation(cfg).captioner.model
    if spec is None:  # the config refuses this; kept for configs built without validation
        raise ConfigError("curation.captioner 'coca' needs a 'model'")
    settings = _settings(cfg)
    if spec.pretrained and Path(spec.pretrained).is_dir():
        model, _, preprocess, tokenizer = load_model(spec.pretrained)
    else:
        model, _, preprocess, tokenizer = build_model(spec.name, spec.pretrained, image_size=spec.image_size)
    try:
        captioner = CocaTopK(model.eval(), tokenizer, beams=settings.beams, seq_len=settings.seq_len,
                             min_tokens=settings.min_tokens)
    except ValueError as err:
        raise ConfigError(f"curation.captioner.model {spec.name!r} (pretrained {spec.pretrained!r}) with "
                          f"curation.captions: {err}") from err
    return captioner, preprocess


def build_nearest(cfg: "RunConfig", scorer: Scorer) -> tuple[TopKCaptioner, Preprocess]:
    """The ``nearest`` captioner: :class:`NearestCaptions` over ``curation.captioner.reference``'s ``train`` rows.

    Args:
        cfg: The run config (``data.root``, ``curation.captioner.reference``, ``curation.captions.batch_size``).
        scorer: Its image tower embeds references and queries.

    Returns:
        The captioner and the scorer's validation preprocessing.

    Raises:
        DataError: The reference is not a dataset under ``data.root``, or has no captioned ``train`` rows.
    """
    name = _curation(cfg).captioner.reference
    root = Path(cfg.data.root) / name
    if not (root / META_FILE).is_file():
        raise DataError(f"curation.captioner.reference {name!r}: {root} is not a dataset under data.root")
    reference = ManifestDataset(root, split="train")
    if not len(reference):
        raise DataError(f"curation.captioner.reference {name!r}: {root} has no train rows")
    captioner = NearestCaptions(scorer.model, scorer.preprocess, reference, batch_size=_settings(cfg).batch_size)
    return captioner, scorer.preprocess


CAPTIONERS: dict[str, CaptionerFactory] = {"coca": build_coca, "nearest": build_nearest}
"""``curation.captioner.name`` → factory."""


def build_captioner(cfg: "RunConfig", scorer: Scorer) -> tuple[TopKCaptioner, Preprocess]:
    """The captioner ``curation.captioner`` names, with the preprocessing its images need.

    Args:
        cfg: The run config with a ``curation`` section.
        scorer: The data steps' scorer (:func:`rsvl.steps.curation_model.load_curation_model`).

    Returns:
        ``(captioner, preprocess)``.

    Raises:
        ConfigError: No ``curation`` section, or an unknown captioner name.
    """
    name = _curation(cfg).captioner.name
    if name not in CAPTIONERS:
        raise ConfigError(f"curation.captioner.name {name!r} is not a registered captioner; known: "
                          f"{sorted(CAPTIONERS)}")
    return CAPTIONERS[name](cfg, scorer)


__all__ = ["CAPTIONERS", "CaptionerFactory", "NearestCaptions", "Scorer", "build_captioner", "build_coca",
           "build_nearest"]
