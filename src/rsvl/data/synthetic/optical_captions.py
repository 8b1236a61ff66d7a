"""Captions of the procedural optical scenes, written from the facts each drawer returned.

Short captions imitate the human captions of UCM/RSICD (one sentence, class plus objects, colours
and layout), five per image from different templates so retrieval models see paraphrases.

The long caption is what LRSCLIP-style long-text training needs (short text = its first sentence),
in three parts:

1. one of the row's short captions, the one from the earliest template (templates are listed most
   specific first);
2. a general, class-level description: the class overview, then sentences true of every scene of
   the class (:data:`CONTEXT` and :data:`GENERAL`) in an order the sample's generator draws, until
   the detail part would start at token :data:`DETAIL_START` or later;
3. the details (:mod:`rsvl.data.synthetic.optical_details`): exact counts, thirds of the image,
   left/right/above/below relations and secondary objects, which no short caption carries.

So a 77-token text encoder (CLIP's) sees the short caption and general text only, and a 248-token
one (LRSCLIP's stretched context) sees the details too (the default data's longest long caption
has 207 tokens under CLIP's BPE and MiniLM's WordPiece; ``tests/data/test_generate.py`` holds
every row to 248). Where part 2 stops is decided by
:func:`token_floor`, a lower bound on the token count that holds for CLIP's BPE and BERT-style
WordPiece tokenizers alike, so the generator needs no tokenizer. Only facts that were drawn appear,
so a caption is never wrong about its image.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from rsvl.data.synthetic import join_words, number_word, plural, sentence
from rsvl.data.synthetic.optical_details import DETAILS
from rsvl.data.synthetic.optical_scenes import Facts

CAPTIONS_PER_IMAGE = 5
DETAIL_START = 77
"""Token index (0-based, the start token is index 0) at or after which a long caption's details
begin: the first 77 tokens, a whole CLIP context, hold the short caption and general text only."""

_PRE_TOKENS = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]+")


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

OVERVIEW = {
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
"""The class overview, the second sentence of every long caption."""
CONTEXT = {
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
"""One more class-level sentence, drawn with :data:`GENERAL`'s."""


GENERAL: dict[str, tuple[str, ...]] = {
    "forest": (
        "The picture is taken from straight above, so only the tops of the trees can be seen.",
        "The tree crowns are round and differ slightly in size and in their shade of green.",
        "The ground between the crowns is a darker green than the crowns themselves.",
        "Green is the dominant colour of the whole scene.",
        "No water, fields, parked cars or fences can be seen anywhere.",
        "The texture of the canopy is rough and irregular, as woodland looks from the air.",
        "The crowns are spread unevenly, closer together in some places than in others.",
        "Such a wooded area would be labelled as forest in a scene classification dataset.",
    ),
    "water": (
        "The picture is taken from straight above, looking down on the water and the land around it.",
        "The water has an almost uniform colour with only faint ripples on its surface.",
        "The land next to the water is green and slightly textured, like grass or fields.",
        "The edge between the water and the land is curved and irregular rather than straight.",
        "No buildings, roads or bridges are visible anywhere in the scene.",
        "Dark water and green land make up almost the entire image.",
        "Such a scene would be labelled as water in a scene classification dataset.",
    ),
    "farmland": (
        "The picture is taken from straight above, looking down on the cultivated land.",
        "Each field is a long rectangle that stretches across the whole image.",
        "Inside each field the crops form parallel stripes of lighter and darker shades.",
        "Narrow light brown tracks mark the boundaries between neighbouring fields.",
        "There are no buildings, trees, roads or water in the scene.",
        "Cultivated land covers the whole image from edge to edge.",
        "Such a scene would be labelled as farmland in a scene classification dataset.",
    ),
    "residential": (
        "The picture is taken from straight above, so only the roofs of the houses are visible.",
        "The houses are square and laid out on a regular grid.",
        "Grey paved roads divide the neighbourhood into blocks of houses.",
        "The ground between the houses is green, like lawns and gardens.",
        "No large buildings, fields or water can be seen in the scene.",
        "Such a scene would be labelled as a residential area in a scene classification dataset.",
    ),
    "industrial": (
        "The picture is taken from straight above, looking down on the roofs.",
        "The buildings are large blocks with flat rectangular roofs.",
        "A thin darker ridge line runs along the middle of each roof.",
        "There is no vegetation anywhere on the site.",
        "The buildings stand apart from one another, with paved space in between.",
        "No houses, fields or water are visible in the scene.",
        "Such a scene would be labelled as an industrial area in a scene classification dataset.",
    ),
    "grassland": (
        "The picture is taken from straight above, looking down on the open land.",
        "The grass has a fine, even texture with gentle changes in shade.",
        "There are no trees, water or fields anywhere in the scene.",
        "The colour of the grass is nearly the same across the whole image.",
        "The land is flat and open, without fences or walls.",
        "Such a scene would be labelled as grassland or meadow in a scene classification dataset.",
    ),
    "parking lot": (
        "The picture is taken from straight above, so the cars appear as small rectangles.",
        "The asphalt is dark grey and nearly uniform in colour.",
        "All parking stalls are narrow and have the same size.",
        "The rows of stalls are evenly spaced across the lot.",
        "There are no buildings, trees or grass in the scene.",
        "Such a scene would be labelled as a parking lot in a scene classification dataset.",
    ),
    "bare land": (
        "The picture is taken from straight above, looking down on the open ground.",
        "The soil has a rough texture with lighter and darker patches.",
        "There are no buildings, roads or water anywhere in the scene.",
        "The ground looks dry, uneven and unused.",
        "The colour of the soil changes gradually from place to place.",
        "Such a scene would be labelled as bare land in a scene classification dataset.",
    ),
    "harbour": (
        "The picture is taken from straight above, looking down on the coast.",
        "The sea is calm, with only faint waves on its surface.",
        "The coastline is irregular rather than perfectly straight.",
        "The water is darker than the land next to it.",
        "Land and sea meet along a single coastline that crosses the image.",
        "No bridges, beaches or rivers are visible in the scene.",
        "Such a scene would be labelled as a harbour in a scene classification dataset.",
    ),
    "open sea": (
        "The picture is taken from straight above, looking down on the water.",
        "The sea surface is calm, with only faint waves.",
        "The water has nearly the same colour across the whole image.",
        "There is no coastline, quay, beach or harbour in the view.",
        "Water fills the image from edge to edge.",
        "Such a scene would be labelled as open sea in a scene classification dataset.",
    ),
}
"""Class-level sentences, true of every scene of the class, that the general part is drawn from."""


def token_floor(text: str) -> int:
    """A lower bound on the tokens of ``text`` (start/end tokens excluded) under CLIP BPE and WordPiece.

    Both tokenizers split ASCII text at whitespace and between letters/digits and punctuation, and
    give every piece at least one token, so the count of maximal alphanumeric runs plus punctuation
    runs never exceeds either tokenizer's count.

    Args:
        text: ASCII text.

    Returns:
        The number of such runs.
    """
    return len(_PRE_TOKENS.findall(text))


def long_caption_parts(label: str, facts: Facts, first: str,
                       rng: np.random.Generator) -> tuple[str, list[str], list[str]]:
    """The three parts of a long caption: first sentence, general sentences, detail sentences.

    Args:
        label: The scene class.
        facts: What the drawer put in the image.
        first: The scene-specific first sentence (a short caption of the row).
        rng: Generator that orders the class-level sentences.

    Returns:
        ``(first, general, details)``; ``" ".join([first, *general, *details])`` is the long caption
        and its details start at token :data:`DETAIL_START` or later (start token counted).

    Raises:
        ValueError: The class's sentences cannot push the details to :data:`DETAIL_START`.
    """
    general = [OVERVIEW[label]]
    pool = [CONTEXT[label], *GENERAL[label]]
    for index in rng.permutation(len(pool)):
        # one start token before the text: the details' first index is 1 + the tokens before them
        if 1 + token_floor(" ".join([first, *general])) >= DETAIL_START:
            break
        general.append(pool[int(index)])
    if 1 + token_floor(" ".join([first, *general])) < DETAIL_START:
        raise ValueError(f"{label}: the general sentences end before token {DETAIL_START} after {first!r}")
    return first, general, DETAILS[label](facts)


def describe(label: str, facts: Facts, rng: np.random.Generator) -> tuple[list[str], str]:
    """Write the short captions and the long caption of one scene.

    Args:
        label: The scene class (a key of :data:`SHORT_TEMPLATES`).
        facts: What the drawer put in the image.
        rng: Generator that picks and orders the templates. The long caption draws from a child
            generator spawned from it, so ``rng``'s own stream advances exactly as by the short
            captions alone (callers that draw on after ``describe`` see the same numbers).

    Returns:
        ``CAPTIONS_PER_IMAGE`` distinct one-sentence captions and the long caption
        (:func:`long_caption_parts`), whose first sentence is one of those captions.
    """
    candidates = list(dict.fromkeys(sentence(text) for text in SHORT_TEMPLATES[label](facts)))
    order = rng.permutation(len(candidates))[:CAPTIONS_PER_IMAGE]
    captions = [candidates[i] for i in order]
    # the row's caption from the earliest (most specific) template opens the long caption
    first = candidates[int(min(order))]
    first, general, details = long_caption_parts(label, facts, first, rng.spawn(1)[0])
    return captions, " ".join([first, *general, *details])
