"""Procedural paired Sentinel-1 / Sentinel-2 patches with multi-label land cover.

Each patch gets one to three land-cover classes (a subset of the Dynamic World classes CLOSP maps
its labels to) laid out as contiguous regions by thresholding a smooth field at the class
fractions. Both sensors render the *same* class map, so S1 and S2 are truly paired and share
their text, which is what CLOSP's text bridge needs.

* S2: 12 BigEarthNet bands (B10 dropped) as reflectance × 10000. The class signatures follow
  textbook spectra: water dark everywhere and darkest in NIR/SWIR; vegetation with a red dip and a
  strong red-edge/NIR plateau; built-up flat and high in SWIR; bare soil rising towards SWIR.
  The 20 m and 60 m bands are block-averaged (2× and 4×) to mimic their coarser resolution.
* S1: VV and VH backscatter in dB from per-class σ⁰ (calm water very low, built-up high through
  double bounce, vegetation higher in VH through volume scattering) with multi-look speckle
  (4 looks, about what GRD products have) applied in linear power: in dB the speckle adds
  ``10 log10(speckle)`` to the class's σ⁰.
* Location matters a little: the class prior depends on latitude (more trees and water in the
  north, more bare ground, shrub and crops in the south), so a location encoder (GeoCLOSP) has
  something real to learn. Latitude/longitude cover Europe.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping

import numpy as np

from rsvl.data.synthetic import join_words, sentence, smooth_field
from rsvl.data.synthetic.exact import choose, choose_distinct, log10, normal, speckle, uniform

SIZE = 32
"""Patch side in pixels (10 m pixels: a 320 m footprint)."""

S1_BANDS = ("VV", "VH")
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_BLOCK = (4, 1, 1, 1, 2, 2, 2, 1, 2, 4, 2, 2)
"""Block-average factor per S2 band: 1 for 10 m bands, 2 for 20 m, 4 for 60 m (B01, B09)."""

S2_SIGNATURES: dict[str, tuple[float, ...]] = {
    #                B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B11    B12
    "water":        (0.060, 0.055, 0.048, 0.032, 0.026, 0.020, 0.018, 0.015, 0.013, 0.010, 0.008, 0.006),
    "trees":        (0.030, 0.028, 0.050, 0.028, 0.085, 0.230, 0.285, 0.300, 0.315, 0.280, 0.150, 0.070),
    "grass":        (0.040, 0.045, 0.085, 0.060, 0.125, 0.250, 0.300, 0.320, 0.335, 0.300, 0.250, 0.140),
    "crops":        (0.045, 0.050, 0.095, 0.075, 0.140, 0.310, 0.380, 0.410, 0.420, 0.370, 0.230, 0.110),
    "shrub and scrub": (0.055, 0.062, 0.085, 0.095, 0.130, 0.185, 0.215, 0.235, 0.245, 0.220, 0.290, 0.200),
    "built":        (0.095, 0.100, 0.110, 0.120, 0.140, 0.160, 0.170, 0.180, 0.190, 0.170, 0.240, 0.210),
    "bare":         (0.120, 0.130, 0.170, 0.220, 0.250, 0.270, 0.280, 0.290, 0.300, 0.270, 0.380, 0.320),
}
"""Mean surface reflectance per class and S2 band."""

S1_SIGMA0_DB: dict[str, tuple[float, float]] = {
    "water": (-20.0, -27.0),
    "trees": (-7.5, -13.0),
    "grass": (-11.0, -18.5),
    "crops": (-9.5, -16.0),
    "shrub and scrub": (-9.0, -15.5),
    "built": (-3.0, -10.0),
    "bare": (-13.0, -21.5),
}
"""Mean backscatter (VV, VH) in dB per class."""

CLASSES: tuple[str, ...] = tuple(sorted(S2_SIGNATURES))
"""Seven of the nine Dynamic World classes, spelled as :data:`rsvl.data.labels.DYNAMIC_WORLD_CLASSES`."""

_READABLE = {"built": "built-up area", "bare": "bare ground"}

_NORTH_PRIOR = {"water": 2.0, "trees": 3.0, "grass": 1.5, "crops": 1.0, "shrub and scrub": 0.5,
                "built": 1.0, "bare": 0.3}
_SOUTH_PRIOR = {"water": 0.7, "trees": 0.8, "grass": 1.0, "crops": 2.0, "shrub and scrub": 2.0,
                "built": 1.2, "bare": 2.0}
LAT_RANGE = (36.0, 70.0)
LON_RANGE = (-10.0, 30.0)
_EPOCH = dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc)
_DAYS = 5 * 365
S1_LOOKS = 4


def class_prior(lat: float) -> np.ndarray:
    """Return the class probabilities at a latitude: a blend of a northern and a southern prior.

    Args:
        lat: Latitude in degrees within :data:`LAT_RANGE`.

    Returns:
        Probabilities aligned with :data:`CLASSES`, summing to one.
    """
    north = (lat - LAT_RANGE[0]) / (LAT_RANGE[1] - LAT_RANGE[0])
    weights = np.array([north * _NORTH_PRIOR[c] + (1 - north) * _SOUTH_PRIOR[c] for c in CLASSES])
    return weights / math.fsum(weights.tolist())


def class_map(rng: np.random.Generator, classes: list[str], fractions: np.ndarray) -> np.ndarray:
    """Assign every pixel a class index (into ``classes``) with exactly the given fractions.

    Pixels are ranked by a smooth random field and cut at the cumulative fractions, so each class
    forms contiguous regions (a lake, a wood) rather than salt-and-pepper noise.

    Args:
        rng: Generator.
        classes: The patch's classes.
        fractions: Share of each class, summing to one.

    Returns:
        (SIZE, SIZE) int array of indices into ``classes``.
    """
    field = smooth_field(rng, SIZE, SIZE, int(rng.integers(2, 5))).ravel()
    ranks = np.empty(field.size, dtype=np.int64)
    ranks[np.argsort(field, kind="stable")] = np.arange(field.size)
    cuts = np.rint(np.array(list(itertools.accumulate(fractions.tolist()))[:-1]) * field.size)
    return np.searchsorted(cuts, ranks, side="right").reshape(SIZE, SIZE)


def _block_average(band: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return band
    blocks = band.reshape(SIZE // factor, factor, SIZE // factor, factor)
    total = None
    for dy in range(factor):  # summed in a fixed order, not by a reduction kernel
        for dx in range(factor):
            total = blocks[:, dy, :, dx] if total is None else total + blocks[:, dy, :, dx]
    coarse = total / (factor * factor)
    return np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)


def render_s2(rng: np.random.Generator, classes: list[str], pixel_class: np.ndarray,
              signatures: Mapping[str, tuple[float, ...]] | None = None) -> np.ndarray:
    """Render 12-band reflectance × 10000 from the class map.

    Args:
        rng: Generator for texture, per-band brightness and noise.
        classes: The patch's classes.
        pixel_class: Class index per pixel (from :func:`class_map`).
        signatures: Reflectance per class and band (default :data:`S2_SIGNATURES`); other
            generators pass a table extended with their own classes.

    Returns:
        float32 array (12, SIZE, SIZE), non-negative.
    """
    table = S2_SIGNATURES if signatures is None else signatures
    signatures = np.array([table[c] for c in classes], dtype=np.float32)
    reflectance = signatures[pixel_class].transpose(2, 0, 1)
    texture = 1 + 0.10 * (smooth_field(rng, SIZE, SIZE, 8) - 0.5) * 2
    brightness = normal(rng, 1.0, 0.05, size=(len(S2_BANDS), 1, 1))
    reflectance = reflectance * texture[None] * brightness + normal(rng, 0.0, 0.004, reflectance.shape)
    bands = [_block_average(band, factor) for band, factor in zip(reflectance, S2_BLOCK)]
    return np.clip(np.stack(bands) * 10000.0, 0, None).astype(np.float32)


def render_s1(rng: np.random.Generator, classes: list[str], pixel_class: np.ndarray,
              sigma0_db: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Render VV/VH backscatter in dB with speckle from the class map.

    Args:
        rng: Generator for the per-patch calibration offset and the speckle.
        classes: The patch's classes.
        pixel_class: Class index per pixel (from :func:`class_map`).
        sigma0_db: Mean (VV, VH) dB per class (default :data:`S1_SIGMA0_DB`); other generators
            pass a table extended with their own classes.

    Returns:
        float32 array (2, SIZE, SIZE) in dB.
    """
    table = S1_SIGMA0_DB if sigma0_db is None else sigma0_db
    sigma_db = np.array([table[c] for c in classes], dtype=np.float32)[pixel_class].transpose(2, 0, 1)
    sigma_db = sigma_db + normal(rng, 0.0, 1.0)
    return (sigma_db + 10.0 * log10(speckle(rng, S1_LOOKS, sigma_db.shape))).astype(np.float32)


def cover_fractions(rng: np.random.Generator, count: int, floor: float = 0.1) -> np.ndarray:
    """Draw random class shares that sum to one, each at least ``floor``.

    A flat Dirichlet from sorted uniform cuts, squeezed into ``[floor, 1]``.

    Args:
        rng: Generator.
        count: Number of classes.
        floor: Smallest share; ``floor * count`` must stay below one.

    Returns:
        float64 array of ``count`` shares.
    """
    cuts = np.sort(rng.random(count - 1))
    shares = np.diff(np.concatenate([[0.0], cuts, [1.0]]))
    return floor + (1 - floor * count) * shares


def acquisition_time(rng: np.random.Generator, start_hour: float = 9.5, end_hour: float = 11) -> str:
    """Draw an acquisition time: a day in 2017-2021 and a UTC time of day in ``[start_hour, end_hour)``.

    The default window is Sentinel-2's morning overpass over Europe.

    Args:
        rng: Generator (two integer draws: the day, then the second of the day).
        start_hour: Earliest UTC hour.
        end_hour: Latest UTC hour (exclusive).

    Returns:
        ISO 8601 text in UTC.
    """
    day = int(rng.integers(_DAYS))
    when = _EPOCH + dt.timedelta(days=day, seconds=int(rng.integers(start_hour * 3600, end_hour * 3600)))
    return when.isoformat()


def dominant_class(shares: Mapping[str, float]) -> str:
    """The class with the largest share (ties: the alphabetically last, so the choice is stable).

    Args:
        shares: Class name to pixel fraction.

    Returns:
        The class name.
    """
    return max(shares.items(), key=lambda item: (item[1], item[0]))[0]


def draw_patch(rng: np.random.Generator) -> dict:
    """Draw one paired patch with its labels, location and acquisition time.

    Returns:
        A dict with ``s1`` (2, SIZE, SIZE), ``s2`` (12, SIZE, SIZE), ``labels`` (sorted), ``shares``
        (class to pixel fraction), ``lat``, ``lon`` and ``timestamp`` (ISO 8601, UTC).
    """
    lat, lon = uniform(rng, *LAT_RANGE), uniform(rng, *LON_RANGE)
    count = choose(rng, [1, 2, 3], [0.3, 0.45, 0.25])
    picked = choose_distinct(rng, count, class_prior(lat).tolist())
    classes = [CLASSES[i] for i in picked]
    pixel_class = class_map(rng, classes, cover_fractions(rng, count))
    shares = {c: float((pixel_class == i).mean()) for i, c in enumerate(classes)}
    when = acquisition_time(rng)
    return {
        "s1": render_s1(rng, classes, pixel_class),
        "s2": render_s2(rng, classes, pixel_class),
        "labels": sorted(classes),
        "shares": shares,
        "lat": round(float(lat), 5),
        "lon": round(float(lon), 5),
        "timestamp": when,
    }


def describe_patch(shares: Mapping[str, float], subject: str = "a paired Sentinel-1 and Sentinel-2 patch") -> str:
    """Describe the cover shares in three sentences (for long-text models and reports).

    Args:
        shares: Class name to pixel fraction.
        subject: What the patch is, opening the first sentence.

    Returns:
        Sentences naming the footprint, every class with its percentage, and the largest class.
    """
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    ranked = [(_READABLE.get(name, name), share) for name, share in ranked]
    parts = [f"{name} ({round(share * 100)}%)" for name, share in ranked]
    return " ".join(sentence(text) for text in [
        f"{subject} of 320 by 320 metres",
        f"the land cover is {join_words(parts)}",
        f"the largest share is {ranked[0][0]}" if len(ranked) > 1 else f"the patch is entirely {ranked[0][0]}",
    ])
