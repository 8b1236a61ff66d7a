"""Procedural SAR ship chips: sea/land reflectivity, ships with exact boxes, speckle, captions.

A chip is a reflectivity map (dark sea, textured land, very bright ships) with multiplicative
multi-look speckle, stored as 8-bit amplitude like HRSID's PNGs. Boxes are the pixel-edge extents
of each ship's mask (``x_max``/``y_max`` exclusive), so they are exact by construction; captions
follow SAR-Narrator's A2C and SA2C routes. The physics kept on purpose: ``docs/data.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rsvl.data.synthetic import join_words, number_word, plural, raster, sentence, smooth_field, third_of
from rsvl.data.synthetic.exact import choose, normal, uniform
from rsvl.data.synthetic.exact import speckle as speckle_draws

SIZE = 128
"""Chip side in pixels, the size of a typical detection crop around a few ships."""

AMPLITUDE_GAIN = 100.0
"""8-bit value per unit amplitude: sea (~0.17) maps near 17, ships saturate at 255."""

LAND_SIDES = ("top", "bottom", "left", "right")


@dataclass
class Ship:
    """One drawn ship: its pixel mask, box and where it sits."""

    mask: np.ndarray
    box: tuple[int, int, int, int]
    moored: bool
    length: float

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre (x, y) in pixels."""
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def size_word(self) -> str:
        """Small, medium or large by hull length in pixels."""
        return "small" if self.length < 11 else "medium" if self.length < 17 else "large"


def land_mask(rng: np.random.Generator) -> tuple[np.ndarray, str | None]:
    """Draw land on one side with a wavy coastline, or none (open sea) for 30% of chips.

    Returns:
        (SIZE, SIZE) bool mask (True = land) and the side the land is on, or ``None``.
    """
    if rng.random() < 0.3:
        return np.zeros((SIZE, SIZE), dtype=bool), None
    side = str(rng.choice(LAND_SIDES))
    depth = uniform(rng, 0.15, 0.45) * SIZE
    coast = depth + (smooth_field(rng, 1, SIZE, 5)[0] - 0.5) * uniform(rng, 6, 24)
    along = np.arange(SIZE)
    if side == "top":
        mask = along[:, None] < coast[None, :]
    elif side == "bottom":
        mask = along[:, None] >= SIZE - coast[None, :]
    elif side == "left":
        mask = along[None, :] < coast[:, None]
    else:
        mask = along[None, :] >= SIZE - coast[:, None]
    return mask, side


def reflectivity(rng: np.random.Generator, land: np.ndarray) -> np.ndarray:
    """Mean backscatter intensity before speckle: bright textured land with very bright blocks, dark sea.

    Args:
        rng: Generator.
        land: Land mask from :func:`land_mask`.

    Returns:
        float32 (SIZE, SIZE) mean intensity.
    """
    sea = uniform(rng, 0.02, 0.04) * (0.7 + 0.6 * smooth_field(rng, SIZE, SIZE, 3))
    ground = uniform(rng, 0.2, 0.45) * (0.4 + 1.2 * smooth_field(rng, SIZE, SIZE, 12))
    sigma = np.where(land, ground, sea).astype(np.float32)
    ys, xs = np.nonzero(land)
    # about one bright block (building, crane) per 250 land pixels
    for _ in range(int(len(xs) / 250)):
        pick = int(rng.integers(len(xs)))
        y, x = ys[pick], xs[pick]
        h, w = rng.integers(1, 4, size=2)
        block = sigma[y:y + h, x:x + w]
        block[land[y:y + h, x:x + w]] = uniform(rng, 1.5, 4.0)
    return sigma


def ship_mask(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    """Return the pixel mask of an elongated ellipse (a hull).

    Args:
        cx: Centre column in pixels (pixel centres at .5).
        cy: Centre row in pixels.
        length: Hull length in pixels.
        width: Hull beam in pixels.
        angle: Direction of the long axis in radians (0 = along x).

    Returns:
        (SIZE, SIZE) bool.
    """
    return raster.oriented_ellipse((SIZE, SIZE), cx, cy, length, width, angle)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _coast_spot(rng: np.random.Generator, land: np.ndarray, side: str, half_width: float):
    """A point just off the coastline and the angle parallel to it."""
    # 12 px exceeds half the longest hull (22 px), so a ship parallel to the coast stays inside the chip
    t = int(rng.integers(12, SIZE - 12))
    line = land[:, t] if side in ("top", "bottom") else land[t, :]
    edge = int(line.sum())
    # the extra 1.5 px leaves a gap between hull and quay
    offset = edge + half_width + 1.5 if side in ("top", "left") else SIZE - edge - half_width - 1.5
    angle = normal(rng, 0, 0.12) + (0.0 if side in ("top", "bottom") else math.pi / 2)
    return ((t + 0.5, offset) if side in ("top", "bottom") else (offset, t + 0.5)), angle


def place_ships(rng: np.random.Generator, land: np.ndarray, side: str | None) -> list[Ship]:
    """Place 0-8 ships, moored along the quay (coastal chips) or at sea, none touching land or another.

    Args:
        rng: Generator.
        land: Land mask.
        side: Side the land is on, or ``None`` for open sea (then no ship is moored).

    Returns:
        The placed ships; fewer than drawn when the sea has no room left.
    """
    wanted = choose(rng, range(9), [0.08, 0.16, 0.16, 0.14, 0.12, 0.1, 0.09, 0.08, 0.07])
    moored_wanted = int(rng.integers(0, wanted + 1)) if side else 0
    occupied = np.zeros((SIZE, SIZE), dtype=bool)
    # ships at sea keep 10 px from the coast, so only moored ones lie along it
    open_water = ~_dilate(land, 10)
    ships: list[Ship] = []
    # bounded attempts; a crowded chip ends with fewer ships than drawn
    for _ in range(wanted * 30):
        if len(ships) == wanted:
            break
        moored = sum(s.moored for s in ships) < moored_wanted
        length, width = uniform(rng, 7, 22), uniform(rng, 2.5, 5.0)
        if moored:
            (cx, cy), angle = _coast_spot(rng, land, side, width / 2)
        else:
            cx, cy = uniform(rng, length / 2 + 2, SIZE - length / 2 - 2, size=2)
            angle = uniform(rng, 0, math.pi)
        mask = ship_mask(cx, cy, length, width, angle)
        if not mask.any():
            continue
        box = _box(mask)
        inside = box[0] >= 1 and box[1] >= 1 and box[2] <= SIZE - 1 and box[3] <= SIZE - 1
        clear_of_land = not (mask & land).any() if moored else not (mask & ~open_water).any()
        if inside and clear_of_land and not (mask & occupied).any():
            ships.append(Ship(mask, box, moored, length))
            # a 2 px margin keeps every ship a separate blob its box describes
            occupied |= _dilate(mask, 2)
    return ships


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(radius):
        # read from `grown`, write to a copy, so each pass grows by exactly one pixel
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def speckle(rng: np.random.Generator, sigma: np.ndarray, looks: int) -> np.ndarray:
    """Apply speckle and convert to 8-bit amplitude.

    Args:
        rng: Generator.
        sigma: Mean intensity per pixel.
        looks: Number of looks ``L``; speckle has mean 1 and variance 0.95/L.

    Returns:
        uint8 (SIZE, SIZE): ``sqrt(intensity) * AMPLITUDE_GAIN``, clipped to 255.
    """
    intensity = sigma * speckle_draws(rng, looks, sigma.shape)
    # rint before the cast, since astype alone truncates
    return np.clip(np.rint(np.sqrt(intensity) * AMPLITUDE_GAIN), 0, 255).astype(np.uint8)


def render_chip(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[Ship], str | None]:
    """Draw one chip.

    Returns:
        8-bit amplitude (SIZE, SIZE), land mask (uint8, 1 = land), the ships and the land side.
    """
    land, side = land_mask(rng)
    sigma = reflectivity(rng, land)
    ships = place_ships(rng, land, side)
    for ship in ships:
        # hulls (steel plus double bounce) outshine sea and land, as in real SAR
        sigma[ship.mask] = uniform(rng, 3.0, 10.0)
    pixels = speckle(rng, sigma, int(rng.choice([2, 3, 4])))
    return pixels, land.astype(np.uint8), ships, side


def _layout_sentence(side: str | None, land_share: float) -> str:
    if side is None:
        return "the whole scene is open sea with no land"
    percent = int(round(land_share * 100))
    edge = {"top": "upper", "bottom": "lower", "left": "left", "right": "right"}[side]
    return f"land covers the {edge} part of the scene, about {percent}%, and the sea covers the rest"


def _count_or_none(ships: list[Ship]) -> str:
    return number_word(len(ships)) if ships else "none"


def _where(ships: list[Ship]) -> str:
    places = sorted({third_of(*s.centre, SIZE, SIZE) for s in ships})
    return join_words(places)


def describe_chip(ships: list[Ship], side: str | None, land_share: float,
                  rng: np.random.Generator) -> tuple[list[str], str]:
    """Write A2C/SA2C captions; every caption's first count phrase is the total number of ships.

    Args:
        ships: The ships drawn in the chip.
        side: Side the land is on, or ``None`` for open sea.
        land_share: Fraction of land pixels.
        rng: Generator ordering the captions.

    Returns:
        Four short captions and a long caption of at least three sentences.
    """
    total = len(ships)
    moored = [s for s in ships if s.moored]
    at_sea = [s for s in ships if not s.moored]
    layout = _layout_sentence(side, land_share)
    if total == 0:
        short = [
            "there are no ships in this SAR image",
            f"no ships are visible; {layout}",
            "a SAR image with no ships, only " + ("open sea" if side is None else "sea and coastline"),
            "dark sea with no ships" + ("" if side is None else f" next to bright land on the {side}"),
        ]
        detail = "No bright ship targets appear on the water"
    else:
        ship_word = plural(total, "ship")
        sizes = [word for word in ("small", "medium", "large") if any(s.size_word == word for s in ships)]
        short = [
            f"there {'is' if total == 1 else 'are'} {ship_word} in this SAR image",
            f"{ship_word} in the {_where(ships)} of the image",
            f"a SAR image with {ship_word}, {join_words(sizes)} in size",
            f"{ship_word}: {_count_or_none(moored)} moored along the quay and "
            f"{_count_or_none(at_sea)} at sea",
        ]
        parts = []
        if moored:
            parts.append(f"{plural(len(moored), 'ship')} {'is' if len(moored) == 1 else 'are'} moored "
                         f"along the quay in the {_where(moored)}")
        if at_sea:
            parts.append(f"{plural(len(at_sea), 'ship')} " + ("is at sea" if len(at_sea) == 1 else "are scattered at sea")
                         + f" in the {_where(at_sea)}")
        detail = "; ".join(parts)
    order = rng.permutation(len(short))
    captions = [sentence(short[i]) for i in order]
    long_caption = " ".join(sentence(text) for text in [
        f"this SAR image contains {plural(total, 'ship')}", detail, layout,
        "the sea appears dark and grainy with speckle" + ("" if side is None else
                                                          ", while the land is bright and textured"),
    ])
    return captions, long_caption
