"""The ``lrsclip`` objective: LRSCLIP's dual long/short text loss (PAPERS.md §5).

Every image comes with its long caption and a short text, the long caption's first sentence
(:func:`rsvl.data.long_text.first_sentence`). With ``I``, ``T_long`` and ``T_short`` the
normalised features and ``L`` open_clip's symmetric InfoNCE over the gathered batch:

``loss = long_weight · L(I, T_long) + short_weight · L(I', T_short)``

where ``I' = I`` (LRSCLIP) or, with ``short_pca_dims`` set, Long-CLIP's short-text alignment:
``I`` reduced to its first ``short_pca_dims`` principal components and mapped back
(:func:`pca_reconstruct`), then normalised. The published weights are not released; both are in
config (``long_weight``, ``short_weight``; ``short_weight: 0`` is the long-caption-only
"KPS-248" ablation).

Long and short texts go through the text tower in one forward pass (the batch's long tokens
followed by its short ones), so a DDP-wrapped model runs one forward per step. For a Hugging Face
text tower the joint batch is cut after its last non-padding column first
(:func:`rsvl.models.text_batch.trim_padding`): the attention mask makes that exact, and it spares
the 248-token tower most of the padding of one-sentence short texts. A text tower with nothing
to train (the laptop profile's frozen MiniLM, ``stretched_positions: tower``) runs in eval mode and
gives a text the same features every epoch, so each distinct text is encoded once per fit and
kept (a 248-token MiniLM pass over 64 texts costs seconds on two cores; the image tower alone
then sets the step time).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from open_clip.loss import ClipLoss
from torch import nn
from torch.nn import functional as F

from rsvl.config import ObjectiveConfig
from rsvl.models.text_batch import trim_padding
from rsvl.train.objectives import ObjectiveContext, _ContrastiveScale, model_outputs, register_objective, unwrap
from rsvl.train.trainable import tower_trains


@torch.no_grad()
def principal_axes(features: torch.Tensor, dims: int) -> torch.Tensor:
    """The ``dims`` leading principal axes of a batch of features, as ``(D, dims)`` columns.

    Computed in float64 from the covariance's eigen-decomposition (``torch.linalg.eigh``), with
    each axis's sign fixed so its largest-magnitude entry is positive. No gradient flows through
    the axes: with fewer samples than dimensions the covariance has repeated zero eigenvalues and
    the eigenvector gradient is undefined; Long-CLIP's loss still reaches the features through the
    projection (:func:`pca_reconstruct`).

    Args:
        features: ``(N, D)``.
        dims: Axes to keep (at most ``D``).

    Returns:
        ``(D, dims)`` orthonormal columns, leading axis first, in ``features``' dtype.
    """
    if not 1 <= dims <= features.shape[1]:
        raise ValueError(f"short_pca_dims={dims} must be between 1 and the feature width {features.shape[1]}")
    centred = (features - features.mean(dim=0, keepdim=True)).double()
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    axes = vectors[:, -dims:].flip(-1)
    signs = torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    return (axes * signs).to(features.dtype)


def pca_reconstruct(features: torch.Tensor, dims: int) -> torch.Tensor:
    """Long-CLIP's ``PCA``: the batch's features projected onto their ``dims`` leading axes and mapped back.

    ``mean + (X − mean) · V · Vᵀ`` with ``V`` = :func:`principal_axes` (no gradient through ``V``).

    Args:
        features: ``(N, D)`` image features.
        dims: Principal components kept (Long-CLIP: 32).

    Returns:
        ``(N, D)``, not normalised.
    """
    axes = principal_axes(features, dims)
    mean = features.mean(dim=0, keepdim=True)
    return mean + (features - mean) @ axes @ axes.T


@register_objective("lrsclip")
class LrsclipObjective(_ContrastiveScale):
    """Dual-text InfoNCE: image ↔ long caption and image ↔ its first sentence; see the module docstring."""

    batch_fields: ClassVar[tuple[str, ...]] = ("image", "long_text", "short_text")

    def __init__(self, cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> None:
        super().__init__(cfg, context)
        self.loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size)
        self._text_cache: dict[bytes, torch.Tensor] = {}
        self._text_trains = True

    def prepare(self, model: nn.Module) -> None:
        """Set up the logit scale, and note once whether the text tower trains (the loop has applied ``trainable``)."""
        super().prepare(model)
        self._text_trains = tower_trains(unwrap(model), "text")

    def _frozen_texts(self, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text features of a frozen text tower, each distinct token row encoded once per fit."""
        keys = [row.numpy().tobytes() for row in tokens.cpu()]
        missing = list(dict.fromkeys(key for key in keys if key not in self._text_cache))
        if missing:
            rows = torch.stack([torch.frombuffer(bytearray(key), dtype=tokens.dtype) for key in missing])
            with torch.no_grad():
                features = model.encode_text(trim_padding(model, rows).to(tokens.device), normalize=True)
            self._text_cache.update(zip(missing, features.float().cpu()))
        return torch.stack([self._text_cache[key] for key in keys]).to(tokens.device)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        core = unwrap(model)
        long_tokens = batch["long_text"]
        count = long_tokens.shape[0]
        with_short = self.cfg.short_weight > 0
        tokens = torch.cat([long_tokens, batch["short_text"]]) if with_short else long_tokens
        if self._text_trains:
            out = model_outputs(model(image=batch["image"], text=trim_padding(core, tokens)))
            texts = out["text_features"]
        else:  # a frozen tower (in eval mode) gives every text the same features each epoch: encode each once
            out = model_outputs(model(image=batch["image"]))
            texts = self._frozen_texts(core, tokens).to(out["image_features"].dtype)
        images, scale = out["image_features"], out["logit_scale"]
        long_loss = self.loss(images, texts[:count], scale)
        metrics = {"long_loss": long_loss.detach(), "logit_scale": scale.detach()}
        loss = self.cfg.long_weight * long_loss
        if with_short:
            short_images = images
            if self.cfg.short_pca_dims is not None:
                short_images = F.normalize(pca_reconstruct(images, self.cfg.short_pca_dims), dim=-1)
            short_loss = self.loss(short_images, texts[count:], scale)
            loss = loss + self.cfg.short_weight * short_loss
            metrics["short_loss"] = short_loss.detach()
        return {"loss": loss, **metrics}
