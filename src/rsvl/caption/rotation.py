"""Image–text scores of captions over rotated copies of an image (RS5M's rotation-invariance test).

A remote-sensing scene has no "up": a caption that describes the scene, not its orientation in
the frame, should score the same against every rotated copy. :func:`rotation_scores` gives, per
image, the cosine ``s[r, c] = cos(E_img(rot_r(x)), E_txt(c))`` of every candidate caption ``c``
against every rotated copy ``rot_r(x)``, with any CLIP-like model (``encode_image``,
``encode_text``); :func:`stability` turns them into the mean and spread over rotations.

Rotations act on the preprocessed image tensor (square, as open_clip's preprocessing makes it),
counter-clockwise in degrees. Multiples of 90° are exact pixel permutations. Any other angle
leaves empty corners, so when the set holds one, every copy (0° too) is cut to the largest
central square that lies inside all rotated frames and resized back to the model's input size:
all copies then show the same disc of the scene, only turned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

RIGHT_ANGLES: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
"""The default rotation set: the four exact rotations."""
SPREADS = ("std", "range")
"""How :func:`stability` measures a caption's spread over rotations."""


def _right(angle: float) -> bool:
    return float(angle) % 90.0 == 0.0


def common_crop(size: int, angles: Sequence[float]) -> int:
    """Side of the largest central square inside a ``size``-pixel square rotated by each angle.

    A square of side ``S`` turned by ``θ`` contains the axis-aligned central square of side
    ``S / (|cos θ| + |sin θ|)``; the common square is the smallest of these (floored).

    Args:
        size: Side of the (square) image in pixels.
        angles: Rotation angles in degrees.

    Returns:
        The side in pixels (``size`` when every angle is a multiple of 90°).
    """
    if all(_right(angle) for angle in angles):
        return size
    factor = max(abs(math.cos(math.radians(a))) + abs(math.sin(math.radians(a))) for a in angles)
    return int(math.floor(size / factor + 1e-9))


def rotated_copies(images: torch.Tensor, angles: Sequence[float] = RIGHT_ANGLES) -> torch.Tensor:
    """Rotated copies of a batch of square images.

    Args:
        images: (N, C, S, S) preprocessed images.
        angles: Counter-clockwise angles in degrees; multiples of 90° only: exact copies, else
            every copy is cut to :func:`common_crop` and resized back to ``S`` (bilinear).

    Returns:
        (N, len(angles), C, S, S) copies, in ``angles`` order.

    Raises:
        ValueError: No angles, or the images are not square.
    """
    if not angles:
        raise ValueError("the rotation set is empty; give at least one angle")
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotations need square (N, C, S, S) images, got shape {tuple(images.shape)}")
    size = images.shape[-1]
    side = common_crop(size, angles)
    copies = []
    for angle in angles:
        if _right(angle):
            turned = torch.rot90(images, int(float(angle) % 360.0 // 90.0), dims=(-2, -1))
        else:
            turned = TF.rotate(images, float(angle), interpolation=TF.InterpolationMode.BILINEAR)
        if side != size:
            turned = TF.resize(TF.center_crop(turned, [side, side]), [size, size],
                               interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        copies.append(turned)
    return torch.stack(copies, dim=1)


@torch.no_grad()
def rotation_scores(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    images: torch.Tensor,
    captions: Sequence[Sequence[str]],
    angles: Sequence[float] = RIGHT_ANGLES,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Cosine of every caption against every rotated copy of its image.

    Args:
        model: A CLIP-like model (``encode_image``, ``encode_text``), in eval mode.
        tokenizer: Its tokenizer (list of texts → token tensor).
        images: (N, C, S, S) images, preprocessed for ``model``.
        captions: Per image, its candidate captions (at least one each).
        angles: The rotation set (see :func:`rotated_copies`).
        device: Where the model lives (default: where its first parameter is).

    Returns:
        Per image, a float64 (len(angles), len(captions[i])) array of cosines.

    Raises:
        ValueError: Images and caption lists differ in number, or an image has no caption.
    """
    if len(captions) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(captions)} caption lists")
    empty = [i for i, texts in enumerate(captions) if not texts]
    if empty:
        raise ValueError(f"images {empty[:5]} have no captions to score")
    if device is None:
        device = next(model.parameters()).device
    copies = rotated_copies(images, angles)
    count, rotations = copies.shape[:2]
    image_vectors = F.normalize(model.encode_image(copies.flatten(0, 1).to(device)).float(), dim=-1)
    image_vectors = image_vectors.view(count, rotations, -1)
    flat = [str(text) for texts in captions for text in texts]
    text_vectors = F.normalize(model.encode_text(tokenizer(flat).to(device)).float(), dim=-1)
    out, start = [], 0
    for i, texts in enumerate(captions):
        block = text_vectors[start:start + len(texts)]
        out.append((image_vectors[i] @ block.T).double().cpu().numpy())
        start += len(texts)
    return out


@dataclass(frozen=True)
class Stability:
    """How steady each caption's score is over the rotated copies of one image.

    Attributes:
        scores: (rotations, captions) cosines (:func:`rotation_scores`).
        mean: (captions,) mean cosine over rotations.
        spread: (captions,) population standard deviation, or max − min, over rotations.
        kind: ``"std"`` or ``"range"``.
    """

    scores: np.ndarray
    mean: np.ndarray
    spread: np.ndarray
    kind: str

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, for JSON or Parquet."""
        return {"rotation_mean": self.mean.tolist(), "rotation_spread": self.spread.tolist(),
                "spread_kind": self.kind}


def stability(scores: np.ndarray, spread: str = "std") -> Stability:
    """Mean and spread of each caption's cosine over rotations.

    Args:
        scores: (rotations, captions) cosines of one image.
        spread: ``"std"`` (population standard deviation, every rotation counts) or ``"range"``
            (max − min, the worst pair of rotations).

    Returns:
        The :class:`Stability` of the image's captions.

    Raises:
        ValueError: Unknown ``spread`` or a score matrix that is not 2-D and non-empty.
    """
    if spread not in SPREADS:
        raise ValueError(f"unknown spread {spread!r}; known: {list(SPREADS)}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be a non-empty (rotations, captions) matrix, got shape {scores.shape}")
    values = scores.std(axis=0) if spread == "std" else scores.max(axis=0) - scores.min(axis=0)
    return Stability(scores=scores, mean=scores.mean(axis=0), spread=values, kind=spread)
