"""A closed-set VQA head on the image tower's spatial feature map as well as its global embedding.

A global CLIP embedding is pooled over the whole image, so "how many" and "where" survive in it
only weakly. :class:`ClipSpatialHead` also reads the tower's feature grid before pooling: for a
timm CNN trunk (the local profile's efficientnet_lite0) the feature map of the stage before the
last (stride 16: 6×6 cells at 96 px), for an open_clip ViT its patch tokens. Each cell's channels
are projected onto their first principal components (fitted on the training images' cells, so a
cell costs a few dozen numbers), and the image's features are the global embedding, the cells'
mean and maximum, and every cell in grid order; one softmax head per question string is fitted
on these, as :class:`rsvl.vqa.models.ClipLinearHead` does on the embedding alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from rsvl.errors import DataError, ModelError
from rsvl.vqa.models import ClipImageEncoder, ClipLinearHead, fit_heads, standardise

MAX_GRID = 6
"""A finer grid is average-pooled down to this many cells a side (a ViT-L/14's 16×16 tokens)."""
COMPONENTS = 32
"""Principal components kept per cell."""


def tower_grid(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image embedding and the spatial feature grid of one preprocessed batch, in one pass.

    Args:
        model: An open_clip model whose image tower is a timm trunk (``TimmModel``) or a ViT.
        batch: (images, bands, H, W) preprocessed.

    Returns:
        ``(embedding, grid)``: the un-normalised ``encode_image`` output (images, dim) and the
        grid (images, channels, h, w), at most :data:`MAX_GRID` cells a side.

    Raises:
        ModelError: The image tower is of another kind.
    """
    visual = model.visual
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "forward_intermediates") and hasattr(visual, "head"):
        final, stages = trunk.forward_intermediates(batch)
        embedding = visual.head(trunk.forward_head(final))
        # the stage before the last: stride 16, finer than the final 3×3 map at 96 px
        grid = stages[-2] if len(stages) > 1 else stages[-1]
    elif hasattr(visual, "output_tokens"):
        before = visual.output_tokens
        visual.output_tokens = True
        try:
            embedding, tokens = visual(batch)
        finally:
            visual.output_tokens = before
        side = int(round(tokens.shape[1] ** 0.5))
        if side * side != tokens.shape[1]:
            raise ModelError(f"{type(visual).__name__} gives {tokens.shape[1]} patch tokens, not a square grid")
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
    else:
        raise ModelError(f"spatial_head needs a timm trunk or a ViT image tower, not {type(visual).__name__}")
    if max(grid.shape[-2:]) > MAX_GRID:
        grid = nn.functional.adaptive_avg_pool2d(grid, (min(grid.shape[-2], MAX_GRID), min(grid.shape[-1], MAX_GRID)))
    return embedding, grid


class GridEncoder(ClipImageEncoder):
    """A :class:`ClipImageEncoder` that also returns the tower's feature grid (:func:`tower_grid`)."""

    def _encode_grid(self, images: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, grid = tower_grid(self.model, self._batch(images).to(self.device))
        return nn.functional.normalize(embedding.float(), dim=-1).cpu(), grid.float().cpu()

    @torch.no_grad()
    def embed_grid(self, images: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised embeddings and grids of images in memory; a repeated image object is encoded once."""
        order, firsts = self._unique(images)
        parts = [self._encode_grid(firsts[start:start + self.batch_size])
                 for start in range(0, len(firsts), self.batch_size)]
        index = torch.tensor(order, dtype=torch.long)
        return torch.cat([p[0] for p in parts])[index], torch.cat([p[1] for p in parts])[index]

    @torch.no_grad()
    def embed_grid_sequence(self, images: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and grids of a long, possibly lazy sequence, one slice at a time (no de-duplication)."""
        parts = [self._encode_grid(images[start:start + self.batch_size])
                 for start in range(0, len(images), self.batch_size)]
        if not parts:
            raise DataError("no images to embed")
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@dataclass(frozen=True)
class CellProjection:
    """Grid cells onto their principal components, and the image features built from them.

    Attributes:
        mean: (channels,) mean cell of the training images.
        basis: (channels, components) principal directions.
        grid: (h, w) of the grid it was fitted on (the features' layout depends on it).
    """

    mean: torch.Tensor
    basis: torch.Tensor
    grid: tuple[int, int]

    @classmethod
    def fit(cls, grids: torch.Tensor, components: int = COMPONENTS) -> "CellProjection":
        """Principal components of every training cell (at most ``components``, cells and channels allowing).

        Args:
            grids: (images, channels, h, w) of the training images.
            components: Components kept.
        """
        cells = grids.permute(0, 2, 3, 1).reshape(-1, grids.shape[1]).double()
        mean = cells.mean(dim=0)
        _, _, vh = torch.linalg.svd(cells - mean, full_matrices=False)
        basis = vh[:min(components, vh.shape[0])].T
        # the sign of a singular vector is arbitrary: fix it so the largest entry is positive
        signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
        return cls(mean.float(), (basis * signs).float(), (int(grids.shape[2]), int(grids.shape[3])))

    @property
    def dim(self) -> int:
        """Length of :meth:`features` minus the embedding's."""
        return self.basis.shape[1] * (2 + self.grid[0] * self.grid[1])

    def features(self, embeddings: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """``[embedding, mean cell, max cell, every cell]`` of each image, cells projected.

        Raises:
            ModelError: The grid is not the one the projection was fitted on.
        """
        if tuple(grids.shape[2:]) != self.grid:
            raise ModelError(f"feature grid {tuple(grids.shape[2:])} differs from the fitted {self.grid}")
        cells = (grids.permute(0, 2, 3, 1) - self.mean) @ self.basis
        return torch.cat([embeddings, cells.mean(dim=(1, 2)), cells.amax(dim=(1, 2)), cells.flatten(1)], dim=1)


class ClipSpatialHead(ClipLinearHead):
    """Closed-set VQA by one softmax head per question on the global embedding plus the feature grid.

    Build with :meth:`fit`; features are :meth:`CellProjection.features`, standardised with the
    training images' mean and standard deviation.
    """

    def __init__(self, encoder: GridEncoder, projection: CellProjection, mean: torch.Tensor, std: torch.Tensor,
                 heads: dict[str, tuple[list[str], nn.Linear | None]]) -> None:
        super().__init__(encoder, mean, std, heads)
        self.projection = projection

    @classmethod
    def fit(cls, model: nn.Module, preprocess: Any, records: Sequence[dict[str, Any]],
            images: Sequence[Any], device: str | torch.device = "cpu",
            weight_decay: float = 1e-3) -> "ClipSpatialHead":
        """Encode the training images slice by slice, fit the cell projection, then the heads.

        Args:
            model: An rsvl open_clip model (frozen; only the projection and heads are fitted).
            preprocess: Its validation preprocessing.
            records: Training LLaVA records.
            images: The image of each record, in order (a lazy :class:`rsvl.vqa.scoring.RecordImages`).
            device: Where the model lives.
            weight_decay: L2 penalty of each head.

        Raises:
            DataError: ``records`` is empty or its length differs from ``images``.
            ModelError: The image tower has no feature grid :func:`tower_grid` can read.
        """
        if not records or len(records) != len(images):
            raise DataError(f"need one image per training record and at least one record "
                            f"({len(records)} records, {len(images)} images)")
        encoder = GridEncoder(model, preprocess, device)
        embeddings, grids = encoder.embed_grid_sequence(images)
        projection = CellProjection.fit(grids)
        mean, std, features = standardise(projection.features(embeddings, grids))
        return cls(encoder, projection, mean, std, fit_heads(records, features, weight_decay))

    def _features(self, images: Sequence[Any]) -> torch.Tensor:
        return self.projection.features(*self.encoder.embed_grid(images))
