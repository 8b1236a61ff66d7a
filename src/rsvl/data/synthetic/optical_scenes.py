"""Procedural optical RGB scenes of eight land-cover classes, and the facts of what was drawn.

Each ``draw_*`` function paints one class and returns the pixels with a dict of *facts* (object
counts, colours, positions) that :mod:`rsvl.data.synthetic.optical_captions` turns into text, so
captions never mention something that is not in the picture. Classes differ on purpose in the
three cues real scene classifiers rely on: colour (blue water, green vegetation, grey concrete),
texture (tree crowns, crop stripes, speckled soil) and geometry (roof grids, car rows, big blocks).
Colours, sizes, counts and layouts are jittered per image so a class is a distribution, not a
template.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import numpy as np

from rsvl.data.synthetic import raster, smooth_field, third_of
from rsvl.data.synthetic.exact import choose, normal, uniform

SIZE = 96
"""Scene side in pixels: big enough for countable roofs and cars, small enough to draw fast."""

Facts = dict
Scene = tuple[np.ndarray, Facts]

ROOF_COLOURS = {"red": (168, 64, 52), "orange": (196, 118, 62), "grey": (128, 128, 134),
                "white": (214, 212, 206), "blue": (72, 96, 150)}
CAR_COLOURS = {"white": (225, 225, 225), "black": (28, 28, 32), "red": (180, 40, 40),
               "blue": (50, 70, 170), "silver": (170, 172, 178)}
CROP_COLOURS = {"green": (78, 138, 58), "yellow": (198, 178, 92), "brown": (138, 100, 62),
                "light green": (138, 178, 92)}
INDUSTRIAL_ROOFS = {"white": (222, 222, 218), "light grey": (176, 178, 180),
                    "blue": (86, 116, 168), "dark grey": (92, 94, 98)}


def jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 14) -> tuple[int, int, int]:
    """Shift a colour by up to ``amount`` per channel so no two scenes share exact colours."""
    shifts = rng.integers(-amount, amount + 1, size=3).tolist()
    return tuple(min(max(c + d, 0), 255) for c, d in zip(rgb, shifts))


def textured_ground(rng: np.random.Generator, rgb: tuple[int, int, int], amplitude: float,
                    cells: int = 6) -> np.ndarray:
    """Fill the scene with a colour modulated by coarse and fine smooth noise.

    Args:
        rng: Generator.
        rgb: Base colour.
        amplitude: Relative brightness variation (0.1 = ±10%).
        cells: Coarse-noise grid size; the fine layer uses four times as many cells.

    Returns:
        Float array (SIZE, SIZE, 3) in 0..255.
    """
    coarse = smooth_field(rng, SIZE, SIZE, cells)
    fine = smooth_field(rng, SIZE, SIZE, cells * 4)
    shade = 1.0 + amplitude * (0.6 * (coarse - 0.5) + 0.4 * (fine - 0.5)) * 2
    return np.asarray(rgb, dtype=np.float32)[None, None, :] * shade[:, :, None]


class Canvas:
    """An 8-bit RGB scene to paint shapes on (the subset of ``PIL.ImageDraw`` the drawers use).

    Shapes are rasterised by :mod:`rsvl.data.synthetic.raster` with exact arithmetic, so a scene
    is the same on every CPU.

    Args:
        pixels: Float (SIZE, SIZE, 3) ground, clipped to 0..255 and truncated to uint8.
    """

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = np.clip(pixels, 0, 255).astype(np.uint8)

    def paint(self, mask: np.ndarray, fill: tuple[int, int, int]) -> None:
        """Set the pixels of ``mask`` to ``fill``."""
        self.pixels[mask] = fill

    def rectangle(self, xy: list[float], fill: tuple[int, int, int]) -> None:
        """Fill ``[x0, y0, x1, y1]``, both corners included."""
        self.paint(raster.rectangle(self.pixels.shape[:2], *xy), fill)

    def ellipse(self, xy: list[float], fill: tuple[int, int, int]) -> None:
        """Fill the ellipse inscribed in the box ``[x0, y0, x1, y1]``."""
        x0, y0, x1, y1 = xy
        self.paint(raster.ellipse(self.pixels.shape[:2], (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2,
                                  (y1 - y0) / 2), fill)

    def line(self, points: list[tuple[int, int]], fill: tuple[int, int, int], width: int = 1) -> None:
        """Draw an axis-aligned segment ``[(x0, y0), (x1, y1)]`` ``width`` pixels wide."""
        (x0, y0), (x1, y1) = points
        low = -(width // 2)  # a wide line straddles its coordinate: rows/columns low .. low + width - 1
        if x0 == x1:
            self.rectangle([x0 + low, min(y0, y1), x0 + low + width - 1, max(y0, y1)], fill)
        elif y0 == y1:
            self.rectangle([min(x0, x1), y0 + low, max(x0, x1), y0 + low + width - 1], fill)
        else:
            raise ValueError(f"only axis-aligned lines are drawn, got {points}")


def to_canvas(pixels: np.ndarray) -> tuple[Canvas, Canvas]:
    """Wrap float pixels in a :class:`Canvas`; returned twice to read like ``image, draw``."""
    canvas = Canvas(pixels)
    return canvas, canvas


def finish(image: Canvas | np.ndarray, rng: np.random.Generator, noise: float = 3.0) -> np.ndarray:
    """Add sensor-like pixel noise and return uint8 (SIZE, SIZE, 3)."""
    base = image.pixels if isinstance(image, Canvas) else image
    pixels = base.astype(np.float64) + normal(rng, 0.0, noise, (SIZE, SIZE, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def rotated_rect(draw: Canvas, cx: float, cy: float, length: float, width: float,
                 angle: float, fill: tuple[int, int, int]) -> None:
    """Draw a filled rectangle centred at (cx, cy), long side at ``angle`` radians."""
    draw.paint(raster.oriented_rectangle((SIZE, SIZE), cx, cy, length, width, angle), fill)


def disc(draw: Canvas, cx: float, cy: float, radius: float, fill: tuple[int, int, int]) -> None:
    """Draw a filled circle (tree crown, bush, storage tank, rock)."""
    draw.paint(raster.ellipse((SIZE, SIZE), cx, cy, radius, radius), fill)


def wavy_line(draw: Canvas, rng: np.random.Generator, vertical: bool, width: int,
              fill: tuple[int, int, int]) -> tuple[float, float]:
    """Draw a gently curving line across the scene (dirt road, path, track).

    Returns:
        The extent ``(low, high)`` in pixels across the line (columns for a vertical line, rows
        otherwise) that holds every pixel of it: mean position ± (wiggle + half the width).
    """
    offset = uniform(rng, 0.2, 0.8) * SIZE
    amp, phase = uniform(rng, 2, 8), uniform(rng, 0, 2 * math.pi)
    draw.paint(raster.wavy_band((SIZE, SIZE), offset, amp, phase, vertical, width), fill)
    return offset - amp - width / 2, offset + amp + width / 2


def band_mask(rng: np.random.Generator, depth: float, amp: float, vertical: bool) -> np.ndarray:
    """Boolean mask of the region before a wavy boundary (a shoreline or river bank).

    Args:
        rng: Generator.
        depth: Mean boundary position as a fraction of the side.
        amp: Boundary wiggle in pixels.
        vertical: Boundary runs top to bottom (the mask is then the left part).

    Returns:
        (SIZE, SIZE) bool, True before the boundary.
    """
    wiggle = (smooth_field(rng, 1, SIZE, 4)[0] - 0.5) * 2 * amp
    boundary = depth * SIZE + wiggle
    along = np.arange(SIZE)[None, :] if vertical else np.arange(SIZE)[:, None]
    edge = boundary[:, None] if vertical else boundary[None, :]
    return along < edge


def draw_forest(rng: np.random.Generator) -> Scene:
    """Dense green crowns (disc texture) on dark ground, maybe a clearing and a dirt road."""
    pixels = textured_ground(rng, jitter(rng, (36, 72, 34)), 0.25)
    image, draw = to_canvas(pixels)
    trees = int(rng.integers(45, 140))
    for _ in range(trees):
        green = jitter(rng, (46, 96, 40), 20)
        disc(draw, uniform(rng, 0, SIZE), uniform(rng, 0, SIZE), uniform(rng, 3, 6.5), green)
    facts: Facts = {"trees": trees, "density": "dense" if trees >= 90 else "fairly open",
                    "clearing": None, "road": None, "clearing_box": None, "road_span": None}
    if rng.random() < 0.45:
        cx, cy = uniform(rng, 18, SIZE - 18, size=2)
        radius = uniform(rng, 9, 16)
        box = [cx - radius, cy - radius * 0.8, cx + radius, cy + radius * 0.8]
        draw.ellipse(box, fill=jitter(rng, (128, 150, 82)))
        facts["clearing"] = third_of(cx, cy, SIZE, SIZE)
        facts["clearing_box"] = tuple(float(v) for v in box)
    if rng.random() < 0.35:
        vertical = bool(rng.random() < 0.5)
        facts["road_span"] = wavy_line(draw, rng, vertical, 3, jitter(rng, (150, 124, 88)))
        facts["road"] = "top to bottom" if vertical else "left to right"
    return finish(image, rng), facts


def _water_colour(rng: np.random.Generator, water: np.ndarray, pixels: np.ndarray) -> str:
    tone = "dark blue" if rng.random() < 0.5 else "blue green"
    base = (34, 64, 112) if tone == "dark blue" else (42, 92, 104)
    pixels[water] = textured_ground(rng, jitter(rng, base, 10), 0.08, cells=3)[water]
    return tone


def draw_water(rng: np.random.Generator) -> Scene:
    """Smooth blue water with a curved shoreline (a lake) or banks (a river), maybe boats."""
    land_colour = jitter(rng, (92, 128, 66))
    pixels = textured_ground(rng, land_colour, 0.2)
    vertical = bool(rng.random() < 0.5)
    if rng.random() < 0.5:
        centre, half = uniform(rng, 0.4, 0.6), uniform(rng, 0.12, 0.22)
        water = band_mask(rng, centre + half, 6, vertical) & ~band_mask(rng, centre - half, 6, vertical)
        facts: Facts = {"kind": "river", "flow": "top to bottom" if vertical else "left to right",
                        "width": "wide" if half > 0.17 else "narrow"}
    else:
        land_first = bool(rng.random() < 0.5)
        shore = band_mask(rng, uniform(rng, 0.2, 0.4) if land_first else uniform(rng, 0.6, 0.8), 10, vertical)
        water = ~shore if land_first else shore
        side = ("left" if land_first else "right") if vertical else ("top" if land_first else "bottom")
        facts = {"kind": "lake", "shore": side}
    facts["tone"] = _water_colour(rng, water, pixels)
    image, draw = to_canvas(pixels)
    ys, xs = np.nonzero(water)
    boats = []
    for _ in range(int(rng.integers(0, 4))):
        pick = int(rng.integers(len(xs)))
        cx, cy = float(xs[pick]), float(ys[pick])
        rotated_rect(draw, cx, cy, 6, 2.5, uniform(rng, 0, math.pi), jitter(rng, (232, 232, 228), 8))
        boats.append(third_of(cx, cy, SIZE, SIZE))
    facts["boats"] = boats
    facts["river_span"] = (centre - half, centre + half) if facts["kind"] == "river" else None
    facts["water_share"] = float(water.mean())
    return finish(image, rng, noise=2.0), facts


def _stripes(shape: tuple[int, int], orientation: str, period: int) -> np.ndarray:
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    across = {"horizontal": ys, "vertical": xs, "diagonal": (xs + ys) * 5 // 7}[orientation]
    return (across // max(period // 2, 1)) % 2 == 1


def draw_farmland(rng: np.random.Generator) -> Scene:
    """Two to four parcels side by side, each with crop stripes of its own colour and direction."""
    fields = int(rng.integers(2, 5))
    stacked = bool(rng.random() < 0.5)
    cuts = np.sort(rng.choice(np.arange(16, SIZE - 15), size=fields - 1, replace=False))
    edges = [0, *cuts.tolist(), SIZE]
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.float32)
    colours, orientations = [], []
    for start, stop in zip(edges[:-1], edges[1:]):
        name = str(rng.choice(list(CROP_COLOURS)))
        orientation = str(rng.choice(["horizontal", "vertical", "diagonal"]))
        colour = np.asarray(jitter(rng, CROP_COLOURS[name]), dtype=np.float32)
        region = (slice(start, stop), slice(0, SIZE)) if stacked else (slice(0, SIZE), slice(start, stop))
        shape = (stop - start, SIZE) if stacked else (SIZE, stop - start)
        stripe = _stripes(shape, orientation, int(rng.integers(3, 7)))
        texture = 1 + 0.08 * (smooth_field(rng, *shape, 8) - 0.5)
        pixels[region] = colour * np.where(stripe, 0.82, 1.0)[:, :, None] * texture[:, :, None]
        colours.append(name)
        orientations.append(orientation)
    image, draw = to_canvas(pixels)
    for cut in cuts:
        line = [(0, cut), (SIZE, cut)] if stacked else [(cut, 0), (cut, SIZE)]
        draw.line(line, fill=jitter(rng, (176, 160, 128)), width=2)
    facts: Facts = {"fields": fields, "colours": colours, "layout": "stacked" if stacked else "side by side",
                    "stripes": Counter(orientations).most_common(1)[0][0],
                    "orientations": orientations, "edges": edges}
    return finish(image, rng), facts


def _road_positions(rng: np.random.Generator, count: int) -> list[int]:
    return sorted(int(p) for p in rng.choice(np.arange(18, SIZE - 22, 4), size=count, replace=False))


def draw_residential(rng: np.random.Generator) -> Scene:
    """A road grid with rows of small houses (mostly one roof colour) and a few garden trees."""
    pixels = textured_ground(rng, jitter(rng, (118, 140, 96)), 0.15)
    image, draw = to_canvas(pixels)
    road_width = int(rng.integers(4, 7))
    road_colour = jitter(rng, (108, 108, 110), 8)
    across, down = _road_positions(rng, int(rng.integers(1, 3))), _road_positions(rng, int(rng.integers(1, 3)))
    for y in across:
        draw.rectangle([0, y, SIZE, y + road_width - 1], fill=road_colour)
    for x in down:
        draw.rectangle([x, 0, x + road_width - 1, SIZE], fill=road_colour)
    dominant = str(rng.choice(list(ROOF_COLOURS)))
    house, gap = int(rng.integers(6, 9)), int(rng.integers(3, 5))
    houses = 0
    roofs: Counter = Counter()
    for top in range(2, SIZE - house, house + gap):
        for left in range(2, SIZE - house, house + gap):
            on_road = any(top - 1 < y + road_width and y - 1 < top + house for y in across) or any(
                left - 1 < x + road_width and x - 1 < left + house for x in down)
            if on_road or rng.random() < 0.15:
                continue
            name = dominant if rng.random() < 0.75 else str(rng.choice(list(ROOF_COLOURS)))
            draw.rectangle([left, top, left + house - 1, top + house - 1], fill=jitter(rng, ROOF_COLOURS[name], 10))
            houses += 1
            roofs[name] += 1
    trees = int(rng.integers(0, 9))
    for _ in range(trees):
        disc(draw, uniform(rng, 0, SIZE), uniform(rng, 0, SIZE), uniform(rng, 1.5, 2.5), jitter(rng, (40, 84, 36)))
    facts: Facts = {"houses": houses, "roof": roofs.most_common(1)[0][0] if roofs else dominant,
                    "roads": len(across) + len(down), "trees": trees, "roofs": dict(roofs),
                    # each road's first and last pixel row (across) or column (down)
                    "roads_across": [(y, y + road_width - 1) for y in across],
                    "roads_down": [(x, x + road_width - 1) for x in down]}
    return finish(image, rng), facts


def _free_spot(rng: np.random.Generator, taken: list[tuple[int, int, int, int]], w: int, h: int):
    for _ in range(40):
        x, y = int(rng.integers(2, SIZE - w - 2)), int(rng.integers(2, SIZE - h - 2))
        if all(x + w + 3 <= a or a + c + 3 <= x or y + h + 3 <= b or b + d + 3 <= y for a, b, c, d in taken):
            return x, y
    return None


def draw_industrial(rng: np.random.Generator) -> Scene:
    """Two to five large flat-roofed blocks on grey concrete, maybe round storage tanks."""
    pixels = textured_ground(rng, jitter(rng, (152, 146, 134)), 0.12)
    image, draw = to_canvas(pixels)
    taken: list[tuple[int, int, int, int]] = []
    buildings = []
    for _ in range(int(rng.integers(2, 6))):
        w, h = int(rng.integers(18, 42)), int(rng.integers(16, 36))
        spot = _free_spot(rng, taken, w, h)
        if spot is None:
            continue
        name = str(rng.choice(list(INDUSTRIAL_ROOFS)))
        roof = jitter(rng, INDUSTRIAL_ROOFS[name], 8)
        draw.rectangle([spot[0], spot[1], spot[0] + w - 1, spot[1] + h - 1], fill=roof)
        ridge = tuple(max(c - 30, 0) for c in roof)
        draw.line([(spot[0], spot[1] + h // 2), (spot[0] + w - 1, spot[1] + h // 2)], fill=ridge, width=1)
        taken.append((*spot, w, h))
        buildings.append((w * h, name, third_of(spot[0] + w / 2, spot[1] + h / 2, SIZE, SIZE),
                          (spot[0], spot[1], spot[0] + w, spot[1] + h)))
    tanks = []
    for _ in range(int(rng.integers(0, 5))):
        radius = int(rng.integers(4, 7))
        spot = _free_spot(rng, taken, 2 * radius, 2 * radius)
        if spot is None:
            continue
        disc(draw, spot[0] + radius, spot[1] + radius, radius, jitter(rng, (236, 236, 232), 6))
        taken.append((*spot, 2 * radius, 2 * radius))
        tanks.append((third_of(spot[0] + radius, spot[1] + radius, SIZE, SIZE),
                      (spot[0], spot[1], spot[0] + 2 * radius, spot[1] + 2 * radius)))
    largest = max(buildings)
    facts: Facts = {"buildings": len(buildings), "roof": largest[1], "largest_at": largest[2],
                    "tanks": len(tanks),
                    # largest first; rectangles as (x0, y0, x1, y1) pixel edges, max exclusive
                    "building_list": [(name, third, box) for _, name, third, box in sorted(buildings, reverse=True)],
                    "tank_list": tanks}
    return finish(image, rng), facts


def draw_grassland(rng: np.random.Generator) -> Scene:
    """Even, finely textured grass (lush or dry) with scattered bushes and maybe a path."""
    lush = bool(rng.random() < 0.6)
    pixels = textured_ground(rng, jitter(rng, (108, 156, 72) if lush else (168, 162, 98)), 0.18, cells=4)
    image, draw = to_canvas(pixels)
    bushes, bush_boxes = [], []
    for _ in range(int(rng.integers(0, 9))):
        cx, cy = uniform(rng, 4, SIZE - 4, size=2)
        radius = uniform(rng, 2, 4)
        disc(draw, cx, cy, radius, jitter(rng, (52, 92, 44)))
        bushes.append(third_of(cx, cy, SIZE, SIZE))
        bush_boxes.append((float(cx - radius), float(cy - radius), float(cx + radius), float(cy + radius)))
    path, path_span = None, None
    if rng.random() < 0.4:
        vertical = bool(rng.random() < 0.5)
        path_span = wavy_line(draw, rng, vertical, 2, jitter(rng, (182, 160, 120)))
        path = "top to bottom" if vertical else "left to right"
    facts: Facts = {"tone": "lush green" if lush else "dry yellowish", "bushes": bushes, "path": path,
                    "bush_boxes": bush_boxes, "path_span": path_span}
    return finish(image, rng, noise=4.0), facts


def draw_parking(rng: np.random.Generator) -> Scene:
    """Dark asphalt with white stall lines and rows of small coloured cars."""
    pixels = textured_ground(rng, jitter(rng, (74, 74, 78), 8), 0.08)
    image, draw = to_canvas(pixels)
    rows = int(rng.integers(2, 5))
    pitch = SIZE // rows
    occupancy = uniform(rng, 0.3, 0.95)
    line_colour = jitter(rng, (222, 222, 214), 6)
    cars: Counter = Counter()
    per_row = []
    for row in range(rows):
        top = row * pitch + (pitch - 14) // 2
        per_row.append(0)
        for left in range(3, SIZE - 7, 7):
            draw.line([(left, top), (left, top + 13)], fill=line_colour, width=1)
            if rng.random() < occupancy:
                name = choose(rng, list(CAR_COLOURS), [0.3, 0.2, 0.15, 0.15, 0.2])
                draw.rectangle([left + 2, top + 2, left + 5, top + 11], fill=jitter(rng, CAR_COLOURS[name], 8))
                cars[name] += 1
                per_row[-1] += 1
    pixels = image.pixels
    transpose = bool(rng.random() < 0.5)
    if transpose:
        pixels = pixels.transpose(1, 0, 2)
    total = sum(cars.values())
    facts: Facts = {"cars": total, "rows": rows, "orientation": "vertical" if transpose else "horizontal",
                    "colours": [name for name, _ in cars.most_common(2)],
                    "fill": "almost full" if occupancy > 0.75 else "half empty" if occupancy > 0.45 else "mostly empty",
                    # rows in image order: top to bottom, or left to right once transposed
                    "colour_counts": dict(cars), "cars_per_row": per_row,
                    "stalls_per_row": len(range(3, SIZE - 7, 7))}
    return finish(np.ascontiguousarray(pixels), rng, noise=2.5), facts


def draw_bare_land(rng: np.random.Generator) -> Scene:
    """Rough sandy or brown soil with strong multi-scale texture, tyre tracks and rocks."""
    tone = str(rng.choice(["sandy", "brown", "reddish brown"]))
    base = {"sandy": (196, 172, 126), "brown": (142, 108, 78), "reddish brown": (160, 98, 70)}[tone]
    pixels = textured_ground(rng, jitter(rng, base, 8), 0.35, cells=5)
    image, draw = to_canvas(pixels)
    tracks = int(rng.integers(0, 4))
    directions = []
    for _ in range(tracks):
        vertical = bool(rng.random() < 0.5)
        wavy_line(draw, rng, vertical, 1, tuple(int(c * 0.7) for c in base))
        directions.append("top to bottom" if vertical else "left to right")
    rocks = int(rng.integers(0, 13))
    rock_thirds = []
    for _ in range(rocks):
        cx, cy = uniform(rng, 0, SIZE), uniform(rng, 0, SIZE)
        disc(draw, cx, cy, uniform(rng, 0.8, 1.8), jitter(rng, (70, 62, 56)))
        rock_thirds.append(third_of(cx, cy, SIZE, SIZE))
    facts: Facts = {"tone": tone, "tracks": tracks, "rocks": rocks, "track_directions": directions,
                    "rock_thirds": rock_thirds}
    return finish(image, rng, noise=5.0), facts


DRAWERS: dict[str, Callable[[np.random.Generator], Scene]] = {
    "forest": draw_forest,
    "water": draw_water,
    "farmland": draw_farmland,
    "residential": draw_residential,
    "industrial": draw_industrial,
    "grassland": draw_grassland,
    "parking lot": draw_parking,
    "bare land": draw_bare_land,
}
"""Class name (the ``label`` column, GeoRSCLIP-normalised) to its drawing function."""
