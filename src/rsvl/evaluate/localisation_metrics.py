"""AIR-SLT semantic-localisation metrics Rsu, Ras, Rda and Rmi of a heat map against a ground-truth mask.

Definitions follow Yuan et al. 2022, "Learning to Evaluate Performance of Multimodal Semantic
Localization" (IEEE TGRS, doi:10.1109/TGRS.2022.3207171), as their published evaluation code
(github.com/xiaoyuan1996/SemanticLocalizationMetrics, ``evaluations/SLM.py``) computes them; the
constants of :class:`SeLoConstants` are theirs. Notation: ``h`` the heat map in [0, 1] (H × W),
``M`` the ground-truth mask, ``R`` its regions (8-connected components), ``C`` the attention
centres of ``h`` (:func:`attention_centres`).

* **Rsu** (significant-area proportion, ↑, [0, 1])::

      Rsu = 1 − exp(−β_su · [Σ_{p∈M} h_p / (Σ_{p∉M} h_p + ε)] · [(H·W − |M|) / |M|])

  the bracket product is the mean attention inside the mask over the mean outside, so a uniform
  map gives ``1 − exp(−β_su)`` (0.507) and a map that is zero off the mask gives 1.
* **Ras** (attention shift distance, ↓, [0, 1]): each region ``r`` has a centre ``c_r`` and a
  radius ``ρ_r``; its offset ``o_r`` is the mean distance from ``c_r`` to the attention centres
  within ``ρ_r`` of it, or ``ρ_r`` when there is none; with ``g`` the mean of ``o_r / ρ_r`` over
  regions::

      Ras = (exp(β_as · g) − 1) / (exp(β_as) − 1)

* **Rda** (discrete attention distribution, ↑, [0, 1]): per region, with ``n_r`` attention
  centres within ``ρ_r``: ``n_r`` itself when ``n_r ≤ 1`` (0 or 1), else
  ``½ (1 − d̄_r / ρ_r) + exp(−η (n_r + 2))`` with ``d̄_r`` the mean distance of those centres to
  their own mean; Rda is the mean over regions.
* **Rmi** = 0.4 · Rsu + 0.35 · (1 − Ras) + 0.25 · Rda.

Where the paper's code works on annotation polygons and 8-bit JPEG maps, this module works on a
mask and a float map; the choices that fill the gaps (stated, and tested on hand-computed maps):

* a region's centre is the centroid of its pixels and its radius ``ρ`` is ``ras_expand`` (1.5) ×
  the mean distance from that centroid to the region's outline pixels (pixels of the region with a
  4-neighbour outside it), the mask analogue of the paper's mean distance to the polygon vertices;
  at least ``ras_expand`` × 0.5 px, so a one-pixel region has a radius;
* attention centres are found as the paper does: the map is quantised to 8 bits
  (``floor(255 · h)``), box-filtered ``smooth_passes`` (5) times with a ``smooth_size`` square,
  rounded to integers after each pass as an 8-bit filter does; pixels equal to the maximum of
  their ``peak_window`` square and above 0 are maxima; each 8-connected group of maxima gives one
  centre, its centroid, kept when ``h`` at the centroid's nearest pixel is at least ``peak_min``
  (0.5);
* the paper's kernel sizes (box 50 px, peak window 1000 px) are for AIR-SLT's large images, most
  about 3000 px across (:data:`REFERENCE_SIDE`); the defaults here are those sizes as fractions of
  3000 px, applied to the map's shorter side (box 7 px and window 129 px on a 384 px map), and
  kernels are rounded to odd sizes so they are centred. An ``int`` gives pixels.

Coordinates are ``(x, y)`` = (column, row) with pixel centres at integer positions.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rsvl.errors import DataError

REFERENCE_SIDE = 3000
"""Side in pixels of a typical AIR-SLT image, the scale the paper's pixel constants were set for."""

METRIC_NAMES = ("Rsu", "Ras", "Rda", "Rmi")
_EIGHT = np.ones((3, 3), dtype=bool)
_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class SeLoConstants:
    """The constants of the AIR-SLT metrics (defaults: the authors' published values).

    Sizes (``smooth_size``, ``peak_window``) are pixels when ``int`` and fractions of the map's
    shorter side when ``float`` (the defaults: the paper's 50 px and 1000 px over 3000 px).

    Attributes:
        rsu_beta: β_su of Rsu.
        rsu_eps: ε of Rsu (keeps a map with no attention off the mask finite).
        ras_expand: Region radius = this × mean centroid-to-outline distance.
        ras_beta: β_as of Ras.
        rda_eta: η of Rda.
        smooth_passes: Box-filter passes before finding attention centres.
        smooth_size: Box-filter side.
        peak_window: Side of the square a maximum must dominate.
        peak_min: Least heat at an attention centre.
        weights: Rmi weights of Rsu, 1 − Ras and Rda.
    """

    rsu_beta: float = 0.707
    rsu_eps: float = 1e-7
    ras_expand: float = 1.5
    ras_beta: float = 3.0
    rda_eta: float = 0.5
    smooth_passes: int = 5
    smooth_size: int | float = 50 / REFERENCE_SIDE
    peak_window: int | float = 1000 / REFERENCE_SIDE
    peak_min: float = 0.5
    weights: tuple[float, float, float] = (0.4, 0.35, 0.25)


@dataclass(frozen=True)
class Region:
    """One ground-truth region: centre ``(x, y)`` and radius in pixels."""

    x: float
    y: float
    radius: float


def to_pixels(value: int | float, side: int, odd: bool = False, what: str = "size") -> int:
    """Resolve a size given in pixels (``int``) or as a fraction of ``side`` (``float`` in (0, 1]).

    Args:
        value: Pixels, or a fraction of ``side``.
        side: The length a fraction refers to (an image's shorter side).
        odd: Round to the nearest odd number (a centred kernel) instead of the nearest integer.
        what: Name of the setting, for the error message.

    Returns:
        The size in pixels, at least 1.

    Raises:
        DataError: ``value`` is not a positive int or a float in (0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DataError(f"{what} must be pixels (int) or a fraction of the image side (float), got {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise DataError(f"{what} must be at least 1 pixel, got {value}")
        pixels = float(value)
    elif not 0 < value <= 1:
        raise DataError(f"{what} as a fraction of the image side must be in (0, 1], got {value}")
    else:
        pixels = float(value) * side
    if odd:
        return max(1, 2 * math.floor((pixels - 1) / 2 + 0.5) + 1)
    return max(1, math.floor(pixels + 0.5))


def check_heat_and_mask(heat: np.ndarray, mask: np.ndarray, name: str = "scene") -> tuple[np.ndarray, np.ndarray]:
    """Validate a heat map and its ground-truth mask.

    Args:
        heat: (H, W) map with values in [0, 1].
        mask: (H, W) bool (or 0/1) mask.
        name: What they belong to, for error messages.

    Returns:
        ``heat`` as float64 and ``mask`` as bool.

    Raises:
        DataError: Wrong rank or shape, values outside [0, 1] or not finite, mask not 0/1,
            mask empty or covering the whole map.
    """
    heat = np.asarray(heat, dtype=np.float64)
    mask_array = np.asarray(mask)
    if heat.ndim != 2:
        raise DataError(f"{name}: the heat map must be (H, W), got shape {heat.shape}")
    if mask_array.shape != heat.shape:
        raise DataError(f"{name}: mask shape {mask_array.shape} differs from heat map shape {heat.shape}")
    if not np.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise DataError(f"{name}: heat map values must be finite and in [0, 1]")
    if not np.isin(mask_array, (0, 1)).all():
        raise DataError(f"{name}: mask must be boolean (0/1)")
    mask_array = mask_array.astype(bool)
    if not mask_array.any():
        raise DataError(f"{name}: the mask is empty; a localisation target needs at least one pixel")
    if mask_array.all():
        raise DataError(f"{name}: the mask covers the whole image; Rsu needs pixels off the target")
    return heat, mask_array


def mask_regions(mask: np.ndarray, expand: float = SeLoConstants.ras_expand) -> list[Region]:
    """The regions of a mask: each 8-connected component's centroid and radius.

    Args:
        mask: (H, W) bool.
        expand: Radius = ``expand`` × mean distance from the centroid to the outline pixels
            (at least ``expand`` × 0.5 px).

    Returns:
        One :class:`Region` per component, in label order (row-major first pixel).
    """
    labels, count = ndimage.label(mask, structure=_EIGHT)
    regions = []
    for label in range(1, count + 1):
        component = labels == label
        rows, cols = np.nonzero(component)
        cx, cy = float(cols.mean()), float(rows.mean())
        # outline: component pixels with a 4-neighbour outside it (the image border counts as outside)
        outline = component & ~ndimage.binary_erosion(component, structure=_FOUR, border_value=0)
        out_rows, out_cols = np.nonzero(outline)
        mean_distance = float(np.hypot(out_cols - cx, out_rows - cy).mean())
        regions.append(Region(cx, cy, expand * max(mean_distance, 0.5)))
    return regions


def _box_smooth(gray: np.ndarray, size: int, passes: int) -> np.ndarray:
    """Box-filter an 8-bit map ``passes`` times, rounding to integers after each pass (as uint8 filters do)."""
    smoothed = gray.astype(np.float64)
    for _ in range(passes if size > 1 else 0):
        # an odd size makes every box mean k/size² with size² odd, never an exact .5, so rint is unambiguous
        smoothed = np.rint(ndimage.uniform_filter(smoothed, size=size, mode="mirror"))
    return smoothed


def attention_centres(heat: np.ndarray, constants: SeLoConstants = SeLoConstants()) -> np.ndarray:
    """Find the attention centres of a heat map (the paper's peak search, see the module docstring).

    Args:
        heat: (H, W) map in [0, 1].
        constants: Smoothing, peak window and least heat.

    Returns:
        (k, 2) float64 ``(x, y)`` centres, highest heat first (ties by row, then column).
    """
    heat = np.asarray(heat, dtype=np.float64)
    side = min(heat.shape)
    box = to_pixels(constants.smooth_size, side, odd=True, what="smooth_size")
    window = to_pixels(constants.peak_window, side, odd=True, what="peak_window")
    # the paper reads maps as 8-bit images; truncation, as a float-to-uint8 cast does
    gray = np.floor(np.clip(heat, 0, 1) * 255.0)
    smoothed = _box_smooth(gray, box, constants.smooth_passes)
    peaks = (smoothed == ndimage.maximum_filter(smoothed, size=window, mode="nearest")) & (smoothed > 0)
    labels, count = ndimage.label(peaks, structure=_EIGHT)
    found = []
    for label in range(1, count + 1):
        rows, cols = np.nonzero(labels == label)
        x, y = float(cols.mean()), float(rows.mean())
        value = heat[math.floor(y + 0.5), math.floor(x + 0.5)]
        if value >= constants.peak_min:
            found.append((-value, y, x))
    found.sort()
    return np.array([[x, y] for _, y, x in found], dtype=np.float64).reshape(-1, 2)


def significant_area(heat: np.ndarray, mask: np.ndarray, constants: SeLoConstants = SeLoConstants()) -> float:
    """Rsu, the significant-area proportion (↑): how much more attention the mask gets than the rest.

    ``Rsu = 1 − exp(−β · [Σ_M h / (Σ_{¬M} h + ε)] · [(H·W − |M|) / |M|])``.

    Args:
        heat: (H, W) map in [0, 1].
        mask: (H, W) bool, neither empty nor full.
        constants: β and ε.

    Returns:
        Rsu in [0, 1].
    """
    heat, mask = check_heat_and_mask(heat, mask)
    inside = float(heat[mask].sum())
    outside = float(heat.sum()) - inside
    area = float(mask.sum())
    ratio = inside / (outside + constants.rsu_eps) * ((mask.size - area) / area)
    return 1.0 - math.exp(-constants.rsu_beta * ratio)


def _near(region: Region, centres: np.ndarray) -> np.ndarray:
    """The centres within the region's radius of its centre."""
    if len(centres) == 0:
        return centres
    distances = np.hypot(centres[:, 0] - region.x, centres[:, 1] - region.y)
    return centres[distances <= region.radius]


def shift_from_centres(regions: list[Region], centres: np.ndarray, beta: float = SeLoConstants.ras_beta) -> float:
    """Ras from regions and attention centres: ``(exp(β·g) − 1) / (exp(β) − 1)``, g the mean offset / radius.

    Args:
        regions: Ground-truth regions.
        centres: (k, 2) attention centres.
        beta: β_as.

    Returns:
        Ras in [0, 1] (0: a centre on every region's centre; 1: no centre near any region).
    """
    ratios = []
    for region in regions:
        near = _near(region, centres)
        offset = (float(np.hypot(near[:, 0] - region.x, near[:, 1] - region.y).mean()) if len(near)
                  else region.radius)
        ratios.append(offset / region.radius)
    g = float(np.mean(ratios))
    return (math.exp(beta * g) - 1.0) / (math.exp(beta) - 1.0)


def discreteness_from_centres(regions: list[Region], centres: np.ndarray, eta: float = SeLoConstants.rda_eta) -> float:
    """Rda from regions and attention centres (the per-region rule of the module docstring, averaged).

    Args:
        regions: Ground-truth regions.
        centres: (k, 2) attention centres.
        eta: η.

    Returns:
        Rda in [0, 1] (1: exactly one centre near every region).
    """
    scores = []
    for region in regions:
        near = _near(region, centres)
        if len(near) <= 1:
            scores.append(float(len(near)))
            continue
        middle = near.mean(axis=0)
        spread = float(np.hypot(near[:, 0] - middle[0], near[:, 1] - middle[1]).mean()) / region.radius
        scores.append(0.5 * (1.0 - spread) + math.exp(-eta * (len(near) + 2)))
    return float(np.mean(scores))


def attention_shift(heat: np.ndarray, mask: np.ndarray, constants: SeLoConstants = SeLoConstants()) -> float:
    """Ras, the attention shift distance (↓), of a heat map against a mask.

    Args:
        heat: (H, W) map in [0, 1].
        mask: (H, W) bool.
        constants: Region radius, peak search and β_as.

    Returns:
        Ras in [0, 1].
    """
    heat, mask = check_heat_and_mask(heat, mask)
    return shift_from_centres(mask_regions(mask, constants.ras_expand), attention_centres(heat, constants),
                              constants.ras_beta)


def discrete_attention(heat: np.ndarray, mask: np.ndarray, constants: SeLoConstants = SeLoConstants()) -> float:
    """Rda, the discrete attention distribution (↑), of a heat map against a mask.

    Args:
        heat: (H, W) map in [0, 1].
        mask: (H, W) bool.
        constants: Region radius, peak search and η.

    Returns:
        Rda in [0, 1].
    """
    heat, mask = check_heat_and_mask(heat, mask)
    return discreteness_from_centres(mask_regions(mask, constants.ras_expand), attention_centres(heat, constants),
                                     constants.rda_eta)


def mean_indicator(rsu: float, ras: float, rda: float,
                   weights: tuple[float, float, float] = SeLoConstants.weights) -> float:
    """Rmi = w_su · Rsu + w_as · (1 − Ras) + w_da · Rda (weights 0.4, 0.35, 0.25).

    Args:
        rsu: Rsu.
        ras: Ras.
        rda: Rda.
        weights: ``(w_su, w_as, w_da)``.

    Returns:
        Rmi.
    """
    return weights[0] * rsu + weights[1] * (1.0 - ras) + weights[2] * rda


def localisation_metrics(heat: np.ndarray, mask: np.ndarray, constants: SeLoConstants = SeLoConstants(),
                         name: str = "scene") -> dict[str, float]:
    """All four AIR-SLT metrics of a heat map against a ground-truth mask.

    Args:
        heat: (H, W) map in [0, 1].
        mask: (H, W) bool, neither empty nor full.
        constants: The metric constants.
        name: Scene name for error messages.

    Returns:
        ``{"Rsu", "Ras", "Rda", "Rmi"}``.

    Raises:
        DataError: Bad map or mask (see :func:`check_heat_and_mask`).
    """
    heat, mask = check_heat_and_mask(heat, mask, name)
    regions = mask_regions(mask, constants.ras_expand)
    centres = attention_centres(heat, constants)
    rsu = significant_area(heat, mask, constants)
    ras = shift_from_centres(regions, centres, constants.ras_beta)
    rda = discreteness_from_centres(regions, centres, constants.rda_eta)
    return {"Rsu": rsu, "Ras": ras, "Rda": rda, "Rmi": mean_indicator(rsu, ras, rda, constants.weights)}
