"""Procedural everyday "photos": the non-remote-sensing pictures of the RS5M-style mixed pool.

Three ground-level subjects, none of them an overhead view: a head-and-shoulders portrait in
front of a wall, an object (ball, mug, gift box) on a wooden table, and a landscape with sky,
horizon and hills. They are drawn like clean studio or phone shots, smooth shading and flat
shapes without the sensor noise and ground texture of the overhead scenes
(:mod:`rsvl.data.synthetic.optical_scenes`), and each comes with captions naming what was
drawn, written two ways: plain (no remote-sensing keyword) and with a keyword the web attaches to
such photos ("a drone on a table", "a satellite engineer"), the photos a keyword filter lets through.

Everything is drawn with the exact arithmetic of :mod:`rsvl.data.synthetic.exact` and
:mod:`rsvl.data.synthetic.raster`, so a photo is the same bytes on every CPU.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rsvl.data.synthetic import raster

SIZE = 96
"""Photo side in pixels (the overhead scenes' size, so size says nothing about the kind)."""

Photo = tuple[np.ndarray, dict]

WALLS = {"white": (226, 224, 218), "beige": (214, 196, 160), "light blue": (170, 196, 220),
         "pale green": (184, 210, 176), "grey": (168, 168, 170)}
SKIN = ((232, 190, 160), (214, 160, 124), (170, 112, 80), (120, 80, 56))
HAIR = {"black": (30, 26, 24), "brown": (96, 62, 36), "blond": (214, 180, 110), "grey": (150, 148, 146)}
BRIGHT = {"red": (204, 40, 44), "yellow": (232, 200, 40), "blue": (40, 84, 204), "green": (40, 160, 70),
          "orange": (236, 132, 30), "purple": (132, 52, 164)}
WOOD = (150, 104, 62)
SKY_TOP, SKY_HORIZON = (58, 110, 196), (196, 220, 240)
HILLS = ((70, 120, 60), (96, 140, 70), (60, 104, 56))


def _pick(rng: np.random.Generator, names: dict | tuple):
    items = list(names)
    return items[int(rng.integers(len(items)))]


def _vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], rows: int) -> np.ndarray:
    """(rows, SIZE, 3) float colours blending linearly from ``top`` to ``bottom``."""
    t = (np.arange(rows, dtype=np.float64) / max(rows - 1, 1))[:, None, None]
    start, stop = np.asarray(top, dtype=np.float64), np.asarray(bottom, dtype=np.float64)
    return np.broadcast_to(start + (stop - start) * t, (rows, SIZE, 3)).copy()


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(max(round(c * factor), 0), 255)) for c in rgb)


def _paint(pixels: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int]) -> None:
    pixels[mask] = rgb


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _lit_wall(rng: np.random.Generator, rgb: tuple[int, int, int], rows: int) -> np.ndarray:
    """(rows, SIZE, 3) wall lit from a random side: brightness falls off linearly by up to 30%."""
    side = int(rng.integers(4))
    drop = float(rng.integers(15, 31)) / 100
    t = np.arange(SIZE, dtype=np.float64) / (SIZE - 1)
    ramp = {0: t[:rows, None], 1: 1.0 - t[:rows, None], 2: t[None, :], 3: 1.0 - t[None, :]}[side]
    light = np.broadcast_to(1.0 - drop * ramp, (rows, SIZE))
    return light[:, :, None] * np.asarray(rgb, dtype=np.float64)[None, None, :]


def _wall_feature(rng: np.random.Generator, pixels: np.ndarray, rows: int) -> str:
    """Hang a window (bright panes, dark bars) or a framed picture somewhere on the wall."""
    shape = (SIZE, SIZE)
    width, height = int(rng.integers(20, 44)), int(rng.integers(18, max(rows - 8, 19)))
    left, top = int(rng.integers(0, SIZE - width)), int(rng.integers(0, max(rows - height, 1)))
    outer = raster.rectangle(shape, left, top, left + width - 1, min(top + height, rows) - 1)
    inner = raster.rectangle(shape, left + 3, top + 3, left + width - 4, min(top + height, rows) - 4)
    if rng.random() < 0.5:
        _paint(pixels, outer, (92, 80, 70))
        _paint(pixels, inner, (236, 242, 248))
        bar = raster.rectangle(shape, left + width // 2 - 1, top, left + width // 2, min(top + height, rows) - 1)
        _paint(pixels, bar, (92, 80, 70))
        return "window"
    _paint(pixels, outer, (60, 44, 30))
    _paint(pixels, inner, BRIGHT[_pick(rng, BRIGHT)])
    return "picture"


def draw_portrait(rng: np.random.Generator) -> Photo:
    """A face with hair, eyes and mouth over shoulders, in front of a softly lit wall."""
    wall = _pick(rng, WALLS)
    pixels = _lit_wall(rng, WALLS[wall], SIZE)
    feature = _wall_feature(rng, pixels, SIZE)
    cx, cy = 48.0 + float(rng.integers(-20, 21)), 44.0 + float(rng.integers(-8, 9))
    rx, ry = float(rng.integers(11, 21)), float(rng.integers(16, 26))
    shirt, hair = _pick(rng, BRIGHT), _pick(rng, HAIR)
    skin = SKIN[int(rng.integers(len(SKIN)))]
    shape = (SIZE, SIZE)
    _paint(pixels, raster.ellipse(shape, cx, SIZE + 14.0, 44.0, 40.0), BRIGHT[shirt])
    _paint(pixels, raster.ellipse(shape, cx, cy - ry * 0.35, rx * 1.15, ry * 0.85), HAIR[hair])
    _paint(pixels, raster.ellipse(shape, cx, cy, rx, ry), skin)
    for side in (-1.0, 1.0):
        _paint(pixels, raster.ellipse(shape, cx + side * rx * 0.4, cy - ry * 0.12, 2.5, 2.0), (40, 32, 30))
    _paint(pixels, raster.ellipse(shape, cx, cy + ry * 0.5, rx * 0.35, 2.0), (150, 60, 60))
    return _to_uint8(pixels), {"subject": "portrait", "wall": wall, "shirt": shirt, "hair": hair, "behind": feature}


def draw_still_life(rng: np.random.Generator) -> Photo:
    """A ball, a mug or a gift box standing on a wooden table in front of a wall."""
    wall = _pick(rng, WALLS)
    horizon = int(rng.integers(50, 67))
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.float64)
    pixels[:horizon] = _lit_wall(rng, WALLS[wall], horizon)
    feature = _wall_feature(rng, pixels, horizon)
    table = _vertical_gradient(_shade(WOOD, 1.1), _shade(WOOD, 0.8), SIZE - horizon)
    table[(np.arange(SIZE - horizon) // 3) % 2 == 1] *= 0.93  # wood grain
    pixels[horizon:] = table
    thing, colour = _pick(rng, ("ball", "mug", "gift box")), _pick(rng, BRIGHT)
    shape, cx = (SIZE, SIZE), 48.0 + float(rng.integers(-14, 15))
    base = float(horizon + int(rng.integers(6, 14)))
    if thing == "ball":
        radius = float(rng.integers(12, 20))
        _paint(pixels, raster.ellipse(shape, cx, base - radius, radius, radius), BRIGHT[colour])
        _paint(pixels, raster.ellipse(shape, cx - radius * 0.35, base - radius * 1.4, radius * 0.25, radius * 0.2),
               _shade(BRIGHT[colour], 1.6))
    elif thing == "mug":
        width, height = int(rng.integers(18, 26)), int(rng.integers(22, 30))
        left, top = int(cx) - width // 2, int(base) - height
        handle = raster.ellipse(shape, left + width, top + height / 2, 8.0, 8.0)
        hole = raster.ellipse(shape, left + width, top + height / 2, 4.5, 4.5)
        _paint(pixels, handle & ~hole, BRIGHT[colour])
        _paint(pixels, raster.rectangle(shape, left, top, left + width - 1, int(base) - 1), BRIGHT[colour])
    else:
        side = int(rng.integers(22, 32))
        left, top = int(cx) - side // 2, int(base) - side
        _paint(pixels, raster.rectangle(shape, left, top, left + side - 1, int(base) - 1), BRIGHT[colour])
        ribbon = (250, 240, 230)
        _paint(pixels, raster.rectangle(shape, left + side // 2 - 1, top, left + side // 2 + 1, int(base) - 1), ribbon)
        _paint(pixels, raster.rectangle(shape, left, top + side // 2 - 1, left + side - 1, top + side // 2 + 1), ribbon)
    return _to_uint8(pixels), {"subject": "still life", "thing": thing, "colour": colour, "wall": wall,
                               "behind": feature}


def draw_landscape(rng: np.random.Generator) -> Photo:
    """Sky fading to the horizon, rounded hills, a meadow darkening towards the viewer, a tree, maybe sun and clouds."""
    horizon = int(rng.integers(30, 63))
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.float64)
    pixels[:horizon] = _vertical_gradient(SKY_TOP, SKY_HORIZON, horizon)
    ground = HILLS[int(rng.integers(len(HILLS)))]
    pixels[horizon:] = _vertical_gradient(_shade(ground, 1.15), _shade(ground, 0.7), SIZE - horizon)
    shape = (SIZE, SIZE)
    sun = bool(rng.random() < 0.5)
    if sun:
        _paint(pixels, raster.ellipse(shape, float(rng.integers(12, 84)), float(rng.integers(8, max(horizon - 12, 9))),
                                      7.0, 7.0), (250, 236, 170))
    for _ in range(int(rng.integers(2, 4))):
        hill = HILLS[int(rng.integers(len(HILLS)))]
        cx, rx = float(rng.integers(0, SIZE)), float(rng.integers(24, 48))
        mask = raster.ellipse(shape, cx, float(horizon + 6), rx, float(rng.integers(10, 20)))
        mask[horizon + 6:] = False  # only the hill tops rise above the meadow line
        _paint(pixels, mask, _shade(hill, 0.9))
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = float(rng.integers(0, SIZE)), float(rng.integers(4, max(horizon - 10, 5)))
        _paint(pixels, raster.ellipse(shape, cx, cy, float(rng.integers(8, 16)), float(rng.integers(3, 6))),
               (244, 246, 250))
    # a tree in the foreground: its size and place change the picture's coarse layout
    trunk_x, height = int(rng.integers(8, SIZE - 8)), int(rng.integers(24, 56))
    foot = int(rng.integers(max(horizon + 10, SIZE - 30), SIZE))
    _paint(pixels, raster.rectangle(shape, trunk_x - 2, foot - height, trunk_x + 2, foot), (88, 60, 36))
    crown = float(height) * 0.45
    _paint(pixels, raster.ellipse(shape, float(trunk_x), float(foot - height), crown, crown * 0.9),
           _shade(HILLS[int(rng.integers(len(HILLS)))], 0.75))
    return _to_uint8(pixels), {"subject": "landscape", "sun": sun}


DRAWERS: dict[str, Callable[[np.random.Generator], Photo]] = {
    "portrait": draw_portrait,
    "still life": draw_still_life,
    "landscape": draw_landscape,
}
"""Photo subject to its drawing function."""


def plain_captions(facts: dict) -> list[str]:
    """Captions of a photo without any remote-sensing keyword.

    Args:
        facts: What the drawer returned.

    Returns:
        Two or three one-line captions.
    """
    if facts["subject"] == "portrait":
        return [f"portrait of a smiling person in front of a {facts['wall']} wall",
                f"a young person with {facts['hair']} hair in a {facts['shirt']} shirt",
                "headshot for my new profile picture"]
    if facts["subject"] == "still life":
        return [f"a {facts['colour']} {facts['thing']} on a wooden table",
                f"{facts['colour']} {facts['thing']} in front of a {facts['wall']} wall",
                f"product photo of a {facts['colour']} {facts['thing']}"]
    return ["a lone tree and rolling green hills under a blue sky", "a quiet day in the countryside"
            + (" with the sun out" if facts["sun"] else ""), "view of the hills from the hiking trail"]


def keyword_captions(facts: dict) -> list[str]:
    """Captions of a photo that hold a remote-sensing keyword although the photo is no overhead view.

    Args:
        facts: What the drawer returned.

    Returns:
        Two or three one-line captions.
    """
    if facts["subject"] == "portrait":
        return [f"portrait of a drone pilot in a {facts['shirt']} shirt",
                "our satellite engineer smiling at the camera",
                f"headshot of the new remote sensing analyst, {facts['hair']} hair"]
    if facts["subject"] == "still life":
        return [f"a {facts['colour']} {facts['thing']} with a satellite print on a wooden table",
                f"{facts['colour']} {facts['thing']} next to my drone on the table",
                f"aerial yoga studio gift: a {facts['colour']} {facts['thing']}"]
    return ["a satellite passing over the hills at dusk", "drone racing meetup in the countryside",
            "aerial show above the hills on a sunny day"]
