"""The funnel's scorers from a CLIP-like model: image–text cosine, "is remote sensing" and image embeddings.

:func:`rsvl.data.funnel.run_funnel` takes its model-based scores as plain callables
(:data:`~rsvl.data.funnel.ImageTextScorer`, :data:`~rsvl.data.funnel.RsScorer`,
:data:`~rsvl.data.funnel.Embedder`); :class:`ClipScorers` builds all three from one model with
``encode_image`` and ``encode_text`` (the run's scorer, :func:`rsvl.steps.curation_model.load_curation_model`):

- ``image_text_score(images, texts)``: the cosine of each pair's L2-normalised image and text
  embeddings (CLIP's score before its logit scale);
- ``rs_score(images)``: :func:`rsvl.data.funnel.zero_shot_rs_score` on that cosine with the
  outlier config's prompts (the two-class zero-shot probability of "remote sensing");
- ``embed(images)``: the image embeddings (the funnel normalises them) for the ``embedding``
  near-duplicate method.

The funnel passes the same image object once per caption and once per prompt, and the same
prompts for every image: each distinct image object (by identity) and each distinct text of a call
is embedded once, in batches of ``batch_size``, without gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsvl.config.funnel import FunnelConfig, OutlierConfig
from rsvl.data.funnel import RsScorer, zero_shot_rs_score
from rsvl.errors import DataError


class ClipScorers:
    """Image–text, remote-sensing and embedding scorers of one CLIP-like model, for the funnel.

    Args:
        model: A model with ``encode_image`` and ``encode_text`` (put in eval mode here).
        preprocess: Its validation preprocessing: float (bands, H, W) arrays in stored units in,
            model input tensors out (:class:`rsvl.models.preprocess.Preprocess`).
        tokenizer: Its tokenizer (a list of strings in, token ids out).
        batch_size: Images or texts per forward pass.
        device: Where the model lives.

    Raises:
        ValueError: ``batch_size`` is not positive.
    """

    def __init__(self, model: nn.Module, preprocess: Any, tokenizer: Any, *, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = device

    @torch.no_grad()
    def _encode_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(image) for image in images[start:start + self.batch_size]])
            parts.append(self.model.encode_image(batch.to(self.device)).float().cpu())
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    @torch.no_grad()
    def _encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        parts = [self.model.encode_text(self.tokenizer(list(texts[start:start + self.batch_size])).to(self.device))
                 .float().cpu() for start in range(0, len(texts), self.batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, 0)

    def image_text_score(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """The cosine of each (image, text) pair's embeddings.

        Args:
            images: Float (bands, H, W) images in stored units; an image object may repeat.
            texts: One text per image.

        Returns:
            ``len(images)`` float64 scores in ``[-1, 1]``.

        Raises:
            DataError: ``images`` and ``texts`` differ in length.
        """
        if len(images) != len(texts):
            raise DataError(f"image_text_score got {len(images)} images and {len(texts)} texts; "
                            f"it scores pairs, one text per image")
        if not images:
            return np.zeros(0)
        image_slot: dict[int, int] = {}
        # keyed on object identity: the funnel repeats one decoded array per caption and per prompt
        image_order = [image_slot.setdefault(id(image), len(image_slot)) for image in images]
        distinct_images = list({id(image): image for image in images}.values())
        text_slot: dict[str, int] = {}
        text_order = [text_slot.setdefault(text, len(text_slot)) for text in texts]
        image_vectors = F.normalize(self._encode_images(distinct_images), dim=-1)
        text_vectors = F.normalize(self._encode_texts(list(text_slot)), dim=-1)
        pairs = (image_vectors[image_order] * text_vectors[text_order]).sum(dim=-1)
        return pairs.double().numpy()

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Image embeddings, as the ``embedding`` near-duplicate method takes them.

        Args:
            images: Float (bands, H, W) images in stored units.

        Returns:
            ``(len(images), dim)`` float32 embeddings, not normalised (the funnel normalises them).
        """
        return self._encode_images(images).numpy().astype(np.float32, copy=False)

    def rs_score(self, cfg: OutlierConfig | None = None) -> RsScorer:
        """The "is remote sensing" score: :func:`~rsvl.data.funnel.zero_shot_rs_score` on this model's cosine.

        Args:
            cfg: The outlier settings whose prompts and logit scale it uses (default: their defaults).

        Returns:
            ``(images) -> scores`` in ``[0, 1]``.
        """
        cfg = cfg or OutlierConfig()
        return zero_shot_rs_score(self.image_text_score, cfg.rs_prompts, cfg.other_prompts, cfg.logit_scale)

    def funnel_kwargs(self, cfg: FunnelConfig | None = None) -> dict[str, Any]:
        """The scorer arguments of :func:`rsvl.data.funnel.run_funnel` for ``cfg``.

        Args:
            cfg: The funnel settings (default: their defaults).

        Returns:
            ``{"image_text_score", "rs_score", "embed"}``; ``embed`` is ``None`` unless the
            near-duplicate method is ``embedding`` (the hash methods do not use it).
        """
        cfg = cfg or FunnelConfig()
        embed = self.embed if cfg.near_duplicates.method == "embedding" else None
        return {"image_text_score": self.image_text_score, "rs_score": self.rs_score(cfg.outliers), "embed": embed}
