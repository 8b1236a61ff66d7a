"""Route SA2C (segmentation to caption): class proportions of a mask become sentences.

Sea/land masks get coastal wording (how much is water, and along which edge the land lies, with
north as the top row); other masks get their classes listed by share. Percentages are rounded to
whole numbers so the quality filter can hold them to the mask within a tolerance.
"""

from __future__ import annotations

import random

from rsvl.caption.geometry import land_sides
from rsvl.caption.scene import Scene
from rsvl.caption.words import join_words, sentence

_CORNERS = {frozenset({"north", "east"}): "north-east", frozenset({"north", "west"}): "north-west",
            frozenset({"south", "east"}): "south-east", frozenset({"south", "west"}): "south-west"}


def _amount(land_share: float) -> str:
    if land_share < 0.4:
        return "mostly water"
    if land_share <= 0.6:
        return "about half water and half land"
    return "mostly land"


def _where_land(sides: list[str]) -> str:
    if not sides:
        return "in scattered patches"
    if len(sides) >= 2 and frozenset(sides[:2]) in _CORNERS:
        return f"in the {_CORNERS[frozenset(sides[:2])]} corner"
    return f"along the {sides[0]} edge"


def _coastal(scene: Scene) -> list[str]:
    land = scene.land
    share = float(land.mean())
    percent = round(share * 100)
    if not land.any():
        return ["open sea with no land in view", "the whole scene is water, with no land",
                "a SAR scene of open water only"]
    if share >= 0.97:
        return ["almost entirely land, with hardly any water", f"land covers about {percent}% of the scene"]
    where = _where_land(land_sides(land))
    noun = "a strip of land" if share < 0.4 and where.startswith("along") else "land"
    amount = _amount(share)
    return [
        f"{amount} with {noun} {where}",
        f"land covers about {percent}% of the scene, {where}, and the rest is sea",
        f"a coastal SAR scene, {amount}, with {noun} {where}",
        f"about {100 - percent}% of the scene is sea and {percent}% is land",
    ]


def _generic(scene: Scene) -> list[str]:
    shares = sorted(scene.shares().items(), key=lambda item: (-item[1], item[0]))
    present = [(name, share) for name, share in shares if share > 0]
    if not present:
        return []
    listed = join_words([f"{name} ({round(share * 100)}%)" for name, share in present])
    top, top_share = present[0]
    return [f"the scene is mostly {top}" if top_share > 0.5 else f"the largest class in the scene is {top}",
            f"the scene holds {listed}"]


def draft_sa2c(scene: Scene, *, count: int, seed: int) -> list[str]:
    """Draft up to ``count`` different captions of a chip's mask.

    Args:
        scene: The chip's annotations; without a mask there is nothing to say.
        count: Captions wanted.
        seed: Run seed (with the sample id it picks which sentence shapes are used).

    Returns:
        Distinct sentences.
    """
    if scene.mask is None or count == 0:
        return []
    templates = _coastal(scene) if scene.land is not None else _generic(scene)
    rng = random.Random(f"{seed}:{scene.sample_id}:sa2c")
    rng.shuffle(templates)
    return [sentence(text) for text in templates[:count]]
