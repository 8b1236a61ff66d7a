"""Procedural SAR ship chips: sea/land reflectivity, ships with exact boxes, speckle, captions.

A chip is a :class:`~rsvl.data.synthetic.harbour.Layout` imaged as a reflectivity map (dark sea,
textured land, very bright ships) with multiplicative multi-look speckle, stored as 8-bit amplitude like HRSID's PNGs. Boxes are the pixel-edge extents
of each ship's mask (``x_max``/``y_max`` exclusive), so they are exact by construction; captions
follow SAR-Narrator's A2C and SA2C routes. The physics kept on purpose: ``docs/data.md``.
"""

from __future__ import annotations

import numpy as np

from rsvl.data.synthetic import join_words, number_word, plural, sentence, smooth_field, third_of
from rsvl.data.synthetic.exact import speckle as speckle_draws
from rsvl.data.synthetic.exact import uniform
from rsvl.data.synthetic.harbour import SIZE, Layout, Ship, draw_layout

AMPLITUDE_GAIN = 100.0
"""8-bit value per unit amplitude: sea (~0.17) maps near 17, ships saturate at 255."""


def reflectivity(rng: np.random.Generator, layout: Layout) -> np.ndarray:
    """Mean backscatter intensity before speckle: dark sea, bright textured land, very bright blocks and hulls.

    Args:
        rng: Generator.
        layout: The scene (land, built structures, ships).

    Returns:
        float32 (SIZE, SIZE) mean intensity.
    """
    land = layout.land
    sea = uniform(rng, 0.02, 0.04) * (0.7 + 0.6 * smooth_field(rng, SIZE, SIZE, 3))
    ground = uniform(rng, 0.2, 0.45) * (0.4 + 1.2 * smooth_field(rng, SIZE, SIZE, 12))
    sigma = np.where(land, ground, sea).astype(np.float32)
    for row, col, h, w in layout.blocks:
        block = sigma[row:row + h, col:col + w]
        block[land[row:row + h, col:col + w]] = uniform(rng, 1.5, 4.0)
    for ship in layout.ships:
        # hulls (steel plus double bounce) outshine sea and land, as in real SAR
        sigma[ship.mask] = uniform(rng, 3.0, 10.0)
    return sigma


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


def render_sar(rng: np.random.Generator, layout: Layout) -> np.ndarray:
    """Image a layout as an 8-bit SAR amplitude chip (backscatter, then 2-4 look speckle)."""
    sigma = reflectivity(rng, layout)
    return speckle(rng, sigma, int(rng.choice([2, 3, 4])))


def render_chip(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Layout]:
    """Draw one chip: a layout (open sea 30% of the time), imaged by SAR.

    Returns:
        8-bit amplitude (SIZE, SIZE), land mask (uint8, 1 = land) and the layout.
    """
    layout = draw_layout(rng)
    return render_sar(rng, layout), layout.land.astype(np.uint8), layout


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
