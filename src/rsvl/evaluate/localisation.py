"""Semantic localisation (AIR-SLT protocol, GeoRSCLIP): a text's heat map over a large image, and its scores.

The heat map of Yuan et al. 2022 (the SeLo generator of github.com/xiaoyuan1996/SemanticLocalizationMetrics):

1. for every step ``s`` (the paper: 256, 512 and 768 px), square ``s``-px crops on two grids of
   stride ``s``, one from 0 and one shifted by ``s − ⌊s/2⌋`` (together: a stride of about ``s/2``);
   a crop that would pass the far edge is moved back to end on it, and a crop both grids reach
   that way is scored once;
2. each crop is embedded with the image tower (validation preprocessing, which resizes it to the
   model's input; the paper resized crops to 256 px), in batches of one crop side, the text with
   the text tower, and the crop's score is their cosine similarity;
3. every pixel gets the mean score of the crops covering it;
4. min–max normalisation to [0, 1] (a constant map becomes all zeros: it points nowhere);
5. a ``median``-px median filter (the paper: 251 px; edges repeat the border pixels).

Steps and the median kernel are pixels when ``int`` and fractions of the image's shorter side when
``float``. The defaults (:data:`DEFAULT_STEPS`, :data:`DEFAULT_MEDIAN`) are the paper's pixel
sizes over :data:`~rsvl.evaluate.localisation_metrics.REFERENCE_SIDE` (3000 px, a typical AIR-SLT
image): on a 384 px scene, steps 33, 66 and 98 px (699 crops) and a 33 px median kernel. The map is kept in
float (the paper stores it as an 8-bit JPEG; the metrics quantise where the paper's peak search does).

:func:`localisation_report` scores scenes with the metrics of
:mod:`rsvl.evaluate.localisation_metrics` (Rsu, Ras, Rda, Rmi) and draws each heat map over its scene.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402
from torch import nn  # noqa: E402

from rsvl.errors import DataError  # noqa: E402
from rsvl.evaluate.embedding import EMBED_BATCH, Preprocess, Tokenizer  # noqa: E402
from rsvl.evaluate.localisation_metrics import (  # noqa: E402
    METRIC_NAMES,
    REFERENCE_SIDE,
    SeLoConstants,
    attention_centres,
    check_heat_and_mask,
    localisation_metrics,
    to_pixels,
)
from rsvl.evaluate.report import DPI  # noqa: E402

PAPER_STEPS = (256, 512, 768)
"""Crop sides of the paper, in pixels of AIR-SLT images."""
PAPER_MEDIAN = 251
"""Median-filter kernel of the paper, in pixels."""
DEFAULT_STEPS: tuple[float, ...] = tuple(step / REFERENCE_SIDE for step in PAPER_STEPS)
"""The paper's steps as fractions of the image's shorter side."""
DEFAULT_MEDIAN: float = PAPER_MEDIAN / REFERENCE_SIDE
"""The paper's median kernel as a fraction of the image's shorter side."""

Window = tuple[int, int, int]
"""A square crop: ``(top, left, side)`` in pixels."""


class LocalisationCase(Protocol):
    """What :func:`localisation_report` reads from a scene (e.g. a ``LocalisationScene``).

    A case may also have a ``picture`` attribute, an (H, W, 3) array in [0, 1] (or uint8) to draw
    instead of ``image`` (an eval set's rows load as floats in the raster's units).
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    query: str


def window_starts(length: int, step: int) -> list[int]:
    """Start offsets of ``step``-px crops along one axis of ``length`` px.

    The union of a grid from 0 and a grid from ``step − step // 2``, both of stride ``step``; a start
    whose crop would end past ``length`` becomes ``length − step``; duplicates are dropped.

    Args:
        length: Image side.
        step: Crop side, at most ``length``.

    Returns:
        Sorted distinct starts.

    Raises:
        DataError: ``step`` is below 1 or above ``length``.
    """
    if not 1 <= step <= length:
        raise DataError(f"crop step {step} px must be between 1 and the image side {length} px")
    starts = {min(start, length - step)
              for offset in (0, step - step // 2) for start in range(offset, length, step)}
    return sorted(starts)


def crop_windows(height: int, width: int, steps: Sequence[int]) -> list[Window]:
    """Every crop of every step over an image, row-major within a step.

    Args:
        height: Image rows.
        width: Image columns.
        steps: Crop sides in pixels.

    Returns:
        ``(top, left, side)`` of each crop.

    Raises:
        DataError: A step is larger than the image's shorter side.
    """
    windows: list[Window] = []
    for step in steps:
        if step > min(height, width):
            raise DataError(f"crop step {step} px is larger than the {width}x{height} px image")
        windows += [(top, left, step) for top in window_starts(height, step) for left in window_starts(width, step)]
    return windows


def average_scores(shape: tuple[int, int], windows: Sequence[Window], scores: Sequence[float]) -> np.ndarray:
    """Give each pixel the mean score of the crops covering it.

    Args:
        shape: (H, W) of the image.
        windows: The crops.
        scores: One score per crop.

    Returns:
        float64 (H, W) map.

    Raises:
        DataError: ``windows`` and ``scores`` differ in length, or a pixel is in no crop.
    """
    if len(windows) != len(scores):
        raise DataError(f"{len(windows)} crops but {len(scores)} scores")
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int64)
    for (top, left, side), score in zip(windows, scores):
        total[top:top + side, left:left + side] += float(score)
        count[top:top + side, left:left + side] += 1
    if (count == 0).any():
        raise DataError(f"the crops leave {int((count == 0).sum())} pixels of the {shape} image uncovered")
    return total / count


def normalise_and_blur(raw: np.ndarray, median: int) -> np.ndarray:
    """Min–max normalise a map to [0, 1], then median-filter it.

    Args:
        raw: (H, W) map.
        median: Median kernel side in pixels (1: no filtering); borders repeat the edge pixels.

    Returns:
        float64 (H, W) map in [0, 1]; all zeros when ``raw`` is constant.
    """
    raw = np.asarray(raw, dtype=np.float64)
    low, high = float(raw.min()), float(raw.max())
    if high <= low:
        return np.zeros_like(raw)
    normalised = (raw - low) / (high - low)
    return ndimage.median_filter(normalised, size=median, mode="nearest") if median > 1 else normalised


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """An (H, W, bands) array as the float (bands, H, W) tensor the project's preprocessing takes."""
    array = np.asarray(image)
    if array.ndim != 3:
        raise DataError(f"a localisation image must be (H, W, bands), got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float()


@torch.no_grad()
def crop_scores(
    model: nn.Module,
    preprocess: Preprocess,
    tokenizer: Tokenizer,
    image: np.ndarray,
    text: str,
    windows: Sequence[Window],
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Cosine similarity of each crop's image embedding with the text embedding.

    Args:
        model: Any model with ``encode_image`` and ``encode_text``, in eval mode, on ``device``.
        preprocess: The model's validation preprocessing (takes a float (bands, h, w) tensor in the
            image's units, as :class:`rsvl.data.dataset.ManifestDataset` yields).
        tokenizer: The model's tokenizer.
        image: (H, W, bands) pixels.
        text: The query.
        windows: The crops to score.
        batch_size: Crops per forward pass.
        device: Where the model lives.

    Returns:
        float64 scores, one per window.
    """
    pixels = _image_tensor(image)
    # scores in float64: the averaging and min-max stretch of later stages keep their precision
    text_vector = nn.functional.normalize(model.encode_text(tokenizer([str(text)]).to(device)).double(), dim=-1)
    scores = []
    for batch_windows in _batches(windows, batch_size):
        batch = torch.stack([preprocess(pixels[:, top:top + side, left:left + side])
                             for top, left, side in batch_windows])
        crops = nn.functional.normalize(model.encode_image(batch.to(device)).double(), dim=-1)
        scores.append((crops @ text_vector[0]).cpu())
    return torch.cat(scores).numpy()


def _batches(windows: Sequence[Window], batch_size: int) -> list[list[Window]]:
    """Consecutive windows in batches of at most ``batch_size``, one crop side per batch.

    One side per batch lets a preprocessing that keeps the crop size (a test's identity) be stacked.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    batches: list[list[Window]] = []
    for window in windows:
        if not batches or len(batches[-1]) == batch_size or batches[-1][-1][2] != window[2]:
            batches.append([])
        batches[-1].append(window)
    return batches


def resolved_sizes(shape: tuple[int, ...], steps: Sequence[int | float] = DEFAULT_STEPS,
                   median: int | float = DEFAULT_MEDIAN) -> tuple[list[int], int]:
    """Crop steps and median kernel in pixels for an image of ``shape``.

    Args:
        shape: (H, W, ...) of the image.
        steps: Steps in pixels (``int``) or fractions of the shorter side (``float``).
        median: Median kernel likewise; rounded to an odd size.

    Returns:
        ``(steps in px, median kernel in px)``.

    Raises:
        DataError: No steps, or a size that is neither a positive int nor a fraction in (0, 1].
    """
    if not steps:
        raise DataError("semantic localisation needs at least one crop step")
    side = min(shape[:2])
    return ([to_pixels(step, side, what="crop step") for step in steps],
            to_pixels(median, side, odd=True, what="median kernel"))


def heat_map(
    model: nn.Module,
    preprocess: Preprocess,
    tokenizer: Tokenizer,
    image: np.ndarray,
    text: str,
    steps: Sequence[int | float] = DEFAULT_STEPS,
    median: int | float = DEFAULT_MEDIAN,
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """The SeLo heat map of ``text`` over ``image`` (the five stages of the module docstring).

    Args:
        model: Any model with ``encode_image`` and ``encode_text``, in eval mode, on ``device``.
        preprocess: The model's validation preprocessing.
        tokenizer: The model's tokenizer.
        image: (H, W, bands) pixels (uint8 RGB for the synthetic scenes).
        text: The query.
        steps: Crop sides, pixels (``int``) or fractions of the shorter side (``float``).
        median: Median kernel, pixels or a fraction of the shorter side (rounded to odd).
        batch_size: Crops per forward pass.
        device: Where the model lives.

    Returns:
        float64 (H, W) map in [0, 1].

    Raises:
        DataError: Bad image rank, or a step/kernel that is invalid or larger than the image.
    """
    pixel_steps, kernel = resolved_sizes(np.shape(image), steps, median)
    height, width = np.shape(image)[:2]
    windows = crop_windows(height, width, pixel_steps)
    scores = crop_scores(model, preprocess, tokenizer, image, text, windows, batch_size, device)
    return normalise_and_blur(average_scores((height, width), windows, scores), kernel)


def plot_heat_map(image: np.ndarray, heat: np.ndarray, mask: np.ndarray, title: str, path: str | Path,
                  centres: np.ndarray | None = None) -> Path:
    """Draw the scene with its ground truth, and the heat map over it with the attention centres.

    Args:
        image: (H, W, 3) uint8 RGB (or floats in [0, 1]).
        heat: (H, W) map in [0, 1].
        mask: (H, W) ground truth, outlined in white on both panels.
        title: Figure title (the query and the metrics).
        path: PNG to write.
        centres: (k, 2) ``(x, y)`` attention centres to mark, if any.

    Returns:
        ``path``.
    """
    picture = np.asarray(image)
    picture = picture / 255.0 if picture.dtype == np.uint8 else np.clip(picture, 0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, label in zip(axes, ("scene and ground truth", "heat map")):
        ax.imshow(picture)
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="white", linewidths=1.2)
        ax.set(xticks=[], yticks=[], xlabel=label)
    shown = axes[1].imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
    if centres is not None and len(centres):
        axes[1].scatter(centres[:, 0], centres[:, 1], marker="x", s=60, c="white", linewidths=2)
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "scene"


def localisation_report(
    model: nn.Module,
    preprocess: Preprocess,
    tokenizer: Tokenizer,
    scenes: Sequence[LocalisationCase],
    steps: Sequence[int | float] = DEFAULT_STEPS,
    median: int | float = DEFAULT_MEDIAN,
    constants: SeLoConstants = SeLoConstants(),
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Heat map and AIR-SLT metrics of every scene, their means, and (with ``out_dir``) a picture each.

    Args:
        model: Any model with ``encode_image`` and ``encode_text``, in eval mode, on ``device``.
        preprocess: The model's validation preprocessing.
        tokenizer: The model's tokenizer.
        scenes: Objects with ``name``, ``image`` (H, W, bands), ``mask`` (H, W) and ``query``
            (and optionally ``picture``, drawn instead of ``image``).
        steps: Crop sides, pixels or fractions of each scene's shorter side.
        median: Median kernel, pixels or a fraction.
        constants: Metric constants.
        batch_size: Crops per forward pass.
        device: Where the model lives.
        out_dir: Folder for ``localisation_<scene>.png`` overlays; none drawn when ``None``.

    Returns:
        JSON-ready ``{"metrics": {"Rsu", "Ras", "Rda", "Rmi"} (means over scenes), "scenes": [{"name",
        "query", "Rsu", "Ras", "Rda", "Rmi", "steps_px", "median_px", "figure"}]}``; ``figure`` is
        the PNG path or ``None``.

    Raises:
        DataError: No scenes, or a scene's image, mask or sizes break a rule (the scene is named).
    """
    if not scenes:
        raise DataError("semantic localisation needs at least one scene")
    rows = []
    for scene in scenes:
        name = str(scene.name)
        image = np.asarray(scene.image)
        if image.ndim != 3 or np.shape(scene.mask) != image.shape[:2]:
            raise DataError(f"scene {name!r}: image must be (H, W, bands) and mask (H, W) of the same size, "
                            f"got {image.shape} and {np.shape(scene.mask)}")
        # the mask is checked before the costly heat map
        check_heat_and_mask(np.zeros(image.shape[:2]), scene.mask, f"scene {name!r}")
        try:
            pixel_steps, kernel = resolved_sizes(image.shape, steps, median)
            heat = heat_map(model, preprocess, tokenizer, image, scene.query, pixel_steps, kernel, batch_size, device)
        except DataError as error:
            raise DataError(f"scene {name!r}: {error}") from error
        scores = localisation_metrics(heat, scene.mask, constants, name=f"scene {name!r}")
        figure = None
        if out_dir is not None:
            text = ", ".join(f"{key} {scores[key]:.3f}" for key in METRIC_NAMES)
            picture = getattr(scene, "picture", None)
            figure = str(plot_heat_map(image if picture is None else picture, heat, scene.mask,
                                       f"“{scene.query}”\n{text}",
                                       Path(out_dir) / f"localisation_{_slug(name)}.png",
                                       attention_centres(heat, constants)))
        rows.append({"name": name, "query": str(scene.query), **scores, "steps_px": pixel_steps,
                     "median_px": kernel, "figure": figure})
    means = {key: float(np.mean([row[key] for row in rows])) for key in METRIC_NAMES}
    return {"metrics": means, "scenes": rows}
