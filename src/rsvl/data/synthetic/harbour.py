"""Harbour and open-sea scene layouts shared by the SAR chips and their optical twins.

A :class:`Layout` is what is on the ground: the land (one side, a wavy coastline), bright built
structures on it, and ships moored along the quay or at sea. It holds no pixels; a sensor model
turns it into an image: :func:`rsvl.data.synthetic.sar_chips.render_sar` (backscatter and
speckle) or :func:`render_optical` (colours, a concrete quay, hulls and their shadows). Drawing
one layout with both gives a co-registered optical/SAR pair: same ships, same boxes, same coast.
The optical set's ``harbour`` and ``open sea`` classes are layouts of their own drawn optically,
so the optical stage of SAR-RS-CLIP sees the ships, quays and coasts the SAR stage is tested on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rsvl.data.synthetic import raster, smooth_field, third_of
from rsvl.data.synthetic.exact import choose, normal, uniform

SIZE = 128
"""Scene side in pixels, the size of a typical detection crop around a few ships."""

LAND_SIDES = ("top", "bottom", "left", "right")
OPEN_SEA_SHARE = 0.3
"""Share of SAR chips with no land at all."""

SEA_COLOURS = {"dark blue": (30, 52, 92), "blue green": (36, 78, 92)}
LAND_COVERS = {"built-up": (150, 146, 140), "green": (82, 116, 62), "sandy": (182, 160, 120)}
SHIP_COLOURS = {"white": (236, 236, 232), "light grey": (188, 190, 194), "orange": (214, 130, 60)}
_QUAY = (206, 204, 198)
_ROOFS = ((120, 118, 116), (196, 192, 186), (160, 72, 56))
_SHADOW = (14, 22, 34)


@dataclass
class Ship:
    """One ship on the ground: its pixel mask, box and where it sits."""

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


@dataclass
class Layout:
    """What a scene holds, independent of the sensor that images it.

    Attributes:
        land: (SIZE, SIZE) bool, True on land.
        side: The side the land is on, or ``None`` for open sea.
        blocks: Built structures on land as ``(row, col, height, width)``.
        ships: The ships, none touching land or each other.
    """

    land: np.ndarray
    side: str | None
    blocks: list[tuple[int, int, int, int]] = field(default_factory=list)
    ships: list[Ship] = field(default_factory=list)

    @property
    def land_share(self) -> float:
        """Fraction of land pixels."""
        return float(self.land.mean())


def land_mask(rng: np.random.Generator, coastal: bool | None = None) -> tuple[np.ndarray, str | None]:
    """Draw land on one side with a wavy coastline, or none (open sea).

    Args:
        rng: Generator.
        coastal: ``True`` for land, ``False`` for open sea, ``None`` to draw (open sea
            :data:`OPEN_SEA_SHARE` of the time).

    Returns:
        (SIZE, SIZE) bool mask (True = land) and the side the land is on, or ``None``.
    """
    open_sea = rng.random() < OPEN_SEA_SHARE if coastal is None else not coastal
    if open_sea:
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


def place_blocks(rng: np.random.Generator, land: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Place about one small built structure (building, crane, tank) per 250 land pixels."""
    ys, xs = np.nonzero(land)
    blocks = []
    for _ in range(int(len(xs) / 250)):
        pick = int(rng.integers(len(xs)))
        h, w = rng.integers(1, 4, size=2)
        blocks.append((int(ys[pick]), int(xs[pick]), int(h), int(w)))
    return blocks


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
    """Place 0-8 ships, moored along the quay (coastal scenes) or at sea, none touching land or another.

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
    open_water = ~dilate(land, 10)
    ships: list[Ship] = []
    # bounded attempts; a crowded scene ends with fewer ships than drawn
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
        # a ship at sea keeps its whole box off the coast, so box-based rules (the narrator's) agree it is at sea
        clear_of_land = (not (mask & land).any() if moored
                         else not (~open_water)[box[1]:box[3], box[0]:box[2]].any())
        if inside and clear_of_land and not (mask & occupied).any():
            ships.append(Ship(mask, box, moored, length))
            # a 2 px margin keeps every ship a separate blob its box describes
            occupied |= dilate(mask, 2)
    return ships


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a bool mask by ``radius`` pixels (4-neighbourhood steps)."""
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


def draw_layout(rng: np.random.Generator, coastal: bool | None = None) -> Layout:
    """Draw a scene: land (or none), built structures on it, then the ships.

    Args:
        rng: Generator.
        coastal: Force land (``True``) or open sea (``False``); ``None`` draws it.

    Returns:
        The layout.
    """
    land, side = land_mask(rng, coastal)
    blocks = place_blocks(rng, land)
    return Layout(land, side, blocks, place_ships(rng, land, side))


def _shaded(rng: np.random.Generator, rgb: tuple[int, int, int], coarse: float, fine: float,
            cells: int) -> np.ndarray:
    """A colour modulated by coarse and fine smooth noise, float (SIZE, SIZE, 3)."""
    shade = (1.0 + coarse * (smooth_field(rng, SIZE, SIZE, cells) - 0.5) * 2
             + fine * (smooth_field(rng, SIZE, SIZE, cells * 6) - 0.5) * 2)
    return np.asarray(rgb, dtype=np.float64)[None, None, :] * shade[:, :, None]


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    shifts = rng.integers(-amount, amount + 1, size=3).tolist()
    return tuple(min(max(c + d, 0), 255) for c, d in zip(rgb, shifts))


def render_optical(rng: np.random.Generator, layout: Layout) -> tuple[np.ndarray, dict]:
    """Image a layout as an optical RGB scene and say what it shows.

    Sea is dark blue or blue green with gentle waves, land one cover colour with roofs where the
    layout has built structures, the coastline a light concrete quay, and each ship a light hull
    with a dark shadow to its lower right, so ships are bright on dark water as in SAR.

    Args:
        rng: Generator (drawn only for colours and noise; the layout fixes every shape).
        layout: The scene.

    Returns:
        uint8 (SIZE, SIZE, 3) pixels and the facts optical captions are written from:
        ``sea``, ``cover``, ``ship_colour``, ``side``, ``land_share``, per ship its third and mooring
        (``ships``), size word, hull length and box (``ship_sizes``, ``ship_lengths``, ``ship_boxes``),
        and ``built``: whether any built structure shows on the land (the quay covers some).
    """
    sea_name = str(rng.choice(list(SEA_COLOURS)))
    cover = str(rng.choice(list(LAND_COVERS)))
    ship_colour = str(rng.choice(list(SHIP_COLOURS)))
    pixels = _shaded(rng, _jitter(rng, SEA_COLOURS[sea_name], 8), 0.10, 0.05, 3)
    land = layout.land
    if land.any():
        ground = _shaded(rng, _jitter(rng, LAND_COVERS[cover], 12), 0.15, 0.10, 6)
        pixels[land] = ground[land]
        for row, col, h, w in layout.blocks:
            block = np.zeros_like(land)
            block[row:row + h, col:col + w] = True
            pixels[block & land] = _ROOFS[int(rng.integers(len(_ROOFS)))]
        # the quay: land within 2 px of the water
        quay = land & dilate(~land, 2)
        pixels[quay] = _QUAY
        built = any((land & ~quay)[row:row + h, col:col + w].any() for row, col, h, w in layout.blocks)
    else:
        built = False
    hull = SHIP_COLOURS[ship_colour]
    for ship in layout.ships:
        shadow = np.zeros_like(ship.mask)
        shadow[1:, 1:] = ship.mask[:-1, :-1]
        pixels[shadow & ~land] = _SHADOW
    for ship in layout.ships:
        pixels[ship.mask] = _jitter(rng, hull, 6)
    noisy = pixels + normal(rng, 0.0, 2.5, (SIZE, SIZE, 3))
    facts = {"sea": sea_name, "cover": cover if land.any() else None, "ship_colour": ship_colour,
             "side": layout.side, "land_share": layout.land_share,
             "ships": [(third_of(*s.centre, SIZE, SIZE), s.moored) for s in layout.ships],
             "ship_sizes": [s.size_word for s in layout.ships], "ship_lengths": [s.length for s in layout.ships],
             "ship_boxes": [s.box for s in layout.ships], "built": built}
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), facts
