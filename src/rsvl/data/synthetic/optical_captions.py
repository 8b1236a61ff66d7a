"""Captions of the procedural optical scenes, written from the facts each drawer returned.

Short captions imitate the human captions of UCM/RSICD (one sentence, class plus objects, colours
and layout), five per image from different templates so retrieval models see paraphrases. The long
caption joins several facts in three or more sentences, the input LRSCLIP-style long-text training
needs. Only facts that were drawn appear, so a caption is never wrong about its image.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rsvl.data.synthetic import join_words, number_word, plural, sentence
from rsvl.data.synthetic.optical_scenes import Facts

CAPTIONS_PER_IMAGE = 5


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _forest(f: Facts) -> list[str]:
    extra = []
    if f["clearing"]:
        extra.append(f"a small clearing in the {f['clearing']}")
    if f["road"]:
        extra.append(f"a dirt road running from {f['road']}")
    rest = f" with {join_words(extra)}" if extra else ""
    return [
        f"a {f['density']} forest{rest}",
        f"many green trees cover the whole image{rest}",
        f"dark green tree crowns packed closely together{rest}",
        f"an aerial view of a {f['density']} green woodland",
        f"the area is covered by trees" + (f" except for a clearing in the {f['clearing']}" if f["clearing"]
                                         else " with no open ground"),
        "a forest crossed by a dirt road" if f["road"] else "a forest without any roads or buildings",
    ]


def _water(f: Facts) -> list[str]:
    boats = f["boats"]
    boat_text = (f"with {plural(len(boats), 'boat')} on the water" if boats else "with no boats on it")
    if f["kind"] == "river":
        core = [
            f"a {f['width']} {f['tone']} river flows from {f['flow']}",
            f"a river runs from {f['flow']} between green banks",
            f"a {f['width']} river {boat_text}",
            f"{f['tone']} water of a river crosses the image from {f['flow']}",
        ]
    else:
        core = [
            f"a {f['tone']} lake with the shore on the {f['shore']}",
            f"green land on the {f['shore']} side borders a calm lake",
            f"a lake {boat_text}",
            f"most of the image is {f['tone']} water with a curved shoreline",
        ]
    if boats:
        core.append(f"{plural(len(boats), 'white boat')} on the water, in the {join_words(sorted(set(boats)))}")
    else:
        core.append(f"smooth {f['tone']} water and green land, no boats")
    return core


def _farmland(f: Facts) -> list[str]:
    colours = sorted(set(f["colours"]))
    return [
        f"{plural(f['fields'], 'farmland field')} lie "
        + ("one above another" if f["layout"] == "stacked" else "side by side"),
        f"farmland with {join_words(colours)} fields",
        f"{number_word(f['fields'])} parcels of cropland with {f['stripes']} stripes",
        f"several rectangular fields separated by narrow dirt tracks",
        f"striped crop fields in {join_words(colours)} colours",
        f"an agricultural area of {plural(f['fields'], 'field')} with plough lines",
    ]


def _residential(f: Facts) -> list[str]:
    return [
        f"a residential area with {plural(f['houses'], 'house')} with {f['roof']} roofs",
        f"many small houses are arranged in rows along {plural(f['roads'], 'road')}",
        f"{f['roof']} roofs of houses in a dense neighbourhood",
        f"a residential block crossed by {plural(f['roads'], 'grey road')}",
        f"houses with {f['roof']} roofs and {plural(f['trees'], 'tree')} in the gardens",
        f"a neighbourhood of {number_word(f['houses'])} houses in a regular grid",
    ]


def _industrial(f: Facts) -> list[str]:
    tanks = f"and {plural(f['tanks'], 'round storage tank')}" if f["tanks"] else "and no storage tanks"
    return [
        f"an industrial area with {plural(f['buildings'], 'large building')} {tanks}",
        f"big factory buildings with {f['roof']} roofs on grey concrete",
        f"the largest building, with a {f['roof']} roof, stands in the {f['largest_at']}",
        f"{plural(f['buildings'], 'warehouse')} on a paved industrial site",
        f"large rectangular roofs of an industrial zone {tanks}",
    ]


def _grassland(f: Facts) -> list[str]:
    bushes = f["bushes"]
    path = f" and a path running from {f['path']}" if f["path"] else ""
    return [
        f"a {f['tone']} grassland with {plural(len(bushes), 'bush', 'bushes')}{path}",
        f"an open meadow of {f['tone']} grass",
        f"a large area of {f['tone']} grass" + (f" with bushes in the {join_words(sorted(set(bushes)))}"
                                               if bushes else " without bushes"),
        f"grassland with no buildings{path}",
        f"even {f['tone']} grass covers the whole image",
    ]


def _parking(f: Facts) -> list[str]:
    colours = join_words(f["colours"])
    return [
        f"a parking lot with {plural(f['cars'], 'car')} parked in {plural(f['rows'], 'row')}",
        f"{f['orientation']} rows of parking spaces, {f['fill']}",
        f"many cars, mostly {colours}, parked on dark asphalt" if f["cars"] else "an empty parking lot",
        f"{_article(f['fill'])} {f['fill']} parking lot with white stall lines",
        f"{number_word(f['rows'])} {f['orientation']} rows of cars on a grey car park",
    ]


def _bare_land(f: Facts) -> list[str]:
    tracks = f"{plural(f['tracks'], 'tyre track')}" if f["tracks"] else "no tracks"
    return [
        f"a piece of {f['tone']} bare land with {tracks}",
        f"{f['tone']} bare soil without vegetation",
        f"rough {f['tone']} ground with {plural(f['rocks'], 'dark rock')}",
        f"an empty area of bare earth with {tracks}",
        f"bare {f['tone']} land and no buildings or plants",
    ]


_THIRDS = ("upper left", "upper middle", "upper right", "middle left", "center", "middle right",
           "lower left", "lower middle", "lower right")


def _ship_words(f: Facts) -> tuple[int, int, str, str]:
    """Ship count, moored count, their thirds (``"upper left and center"``) and the coloured noun."""
    ships = f["ships"]
    found = {third for third, _ in ships}
    return (len(ships), sum(moored for _, moored in ships), join_words([t for t in _THIRDS if t in found]),
            f"{f['ship_colour']} ship")


def _mooring(total: int, moored: int) -> str:
    """The arrangement words A2C uses, so the quality filter can hold an optical caption to the boxes."""
    if moored == total:
        return "moored along the quay"
    if moored == 0:
        return "at sea, away from the coast"
    return f", {number_word(moored)} of them moored along the quay and the rest at sea"


def _harbour(f: Facts) -> list[str]:
    total, moored, where, coloured = _ship_words(f)
    verb = "is" if total == 1 else "are"
    edge = {"top": "upper", "bottom": "lower", "left": "left", "right": "right"}[f["side"]]
    share = f"the {f['cover']} land covers about {round(f['land_share'] * 100)}% of the image"
    lines = [
        f"a harbour with {plural(total, 'ship')} and {f['cover']} land along the {edge} edge",
        f"there {verb} {plural(total, 'ship')} in this image",
        f"{share} and the rest is {f['sea']} sea",
        f"an aerial image of a coast with a concrete quay and {plural(total, 'ship')}",
    ]
    if total:
        lines += [f"{plural(total, coloured)} in the {where} of the image",
                  f"{plural(total, 'ship')} {_mooring(total, moored)}".replace(" ,", ","),
                  f"{f['sea']} water next to the quay with {plural(total, coloured)} in the {where}"]
    else:
        lines += [f"{f['sea']} sea along a concrete quay with no ships moored", "an empty harbour with no ships"]
    return lines


def _open_sea(f: Facts) -> list[str]:
    total, _, where, coloured = _ship_words(f)
    verb = "is" if total == 1 else "are"
    lines = [
        f"there {verb} {plural(total, 'ship')} in this image",
        f"{plural(total, coloured)} on the {f['sea']} open sea",
        f"open water with no land and {plural(total, 'ship')}",
        f"an aerial image of the {f['sea']} open sea",
    ]
    if total:
        lines += [f"{plural(total, 'ship')} in the {where} of the image",
                  f"{plural(total, coloured)} on calm water in the {where}"]
    else:
        lines += [f"calm {f['sea']} open sea with no ships", "an empty stretch of open water"]
    return lines


SHORT_TEMPLATES: dict[str, Callable[[Facts], list[str]]] = {
    "forest": _forest, "water": _water, "farmland": _farmland, "residential": _residential,
    "industrial": _industrial, "grassland": _grassland, "parking lot": _parking, "bare land": _bare_land,
    "harbour": _harbour, "open sea": _open_sea,
}

_OVERVIEW = {
    "forest": "This is an aerial image of a forest.",
    "water": "This aerial image shows a body of water.",
    "farmland": "This is an aerial image of farmland.",
    "residential": "This aerial image shows a residential area.",
    "industrial": "This is an aerial image of an industrial area.",
    "grassland": "This aerial image shows open grassland.",
    "parking lot": "This aerial image shows a parking lot.",
    "bare land": "This is an aerial image of bare land.",
    "harbour": "This aerial image shows a harbour on the coast.",
    "open sea": "This aerial image shows the open sea.",
}
_CONTEXT = {
    "forest": "There are no buildings in the scene.",
    "water": "The water surface is smooth and darker than the land.",
    "farmland": "The fields have straight edges and regular plough lines.",
    "residential": "The houses are small and evenly spaced.",
    "industrial": "The ground between the buildings is paved concrete.",
    "grassland": "No buildings or roads are visible.",
    "parking lot": "White lines mark the parking spaces on the asphalt.",
    "bare land": "There is no vegetation on the ground.",
    "harbour": "A light concrete quay separates the land from the water.",
    "open sea": "No land is visible anywhere in the scene.",
}


def describe(label: str, facts: Facts, rng: np.random.Generator) -> tuple[list[str], str]:
    """Write the short captions and the long caption of one scene.

    Args:
        label: The scene class (a key of :data:`SHORT_TEMPLATES`).
        facts: What the drawer put in the image.
        rng: Generator that picks and orders the templates.

    Returns:
        ``CAPTIONS_PER_IMAGE`` distinct one-sentence captions and a long caption of at least three
        sentences (overview, the objects in the two most specific templates, context).
    """
    candidates = list(dict.fromkeys(sentence(text) for text in SHORT_TEMPLATES[label](facts)))
    order = rng.permutation(len(candidates))[:CAPTIONS_PER_IMAGE]
    captions = [candidates[i] for i in order]
    long_caption = " ".join([_OVERVIEW[label], candidates[0], candidates[2], _CONTEXT[label]])
    return captions, long_caption
