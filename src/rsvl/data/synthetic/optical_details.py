"""Detail sentences of the optical long captions: exact counts, positions and relations from the facts.

The short captions of :mod:`rsvl.data.synthetic.optical_captions` name the class and a few
objects; the details say what only a long text can: how many objects of each kind, in which third
of the image (a 3 × 3 grid, :func:`rsvl.data.synthetic.third_of`), how things lie relative to each
other (left/right of, above/below) and the secondary objects. Every sentence is computed from the
facts a drawer returned, so it is true of the image.

Relations compare extents, not centres: A is "to the left of" B only when A ends before B starts
along x (likewise "above" along y); where the extents overlap on both axes nothing is said. Of two
separations the larger gap decides.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from rsvl.data.synthetic import join_words, number_word, plural
from rsvl.data.synthetic import optical_scenes
from rsvl.data.synthetic.optical_scenes import Facts

Box = tuple[float, float, float, float]

THIRDS = ("upper left", "upper middle", "upper right", "middle left", "center", "middle right",
          "lower left", "lower middle", "lower right")
"""The nine image thirds in reading order (the names :func:`rsvl.data.synthetic.third_of` gives)."""
ORDINALS = ("first", "second", "third", "fourth", "fifth")
SIZE_WORDS = ("small", "medium", "large")
_EDGES = {"top": "upper", "bottom": "lower", "left": "left", "right": "right"}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _be(count: int) -> str:
    return "is" if count == 1 else "are"


def _all(count: int) -> str:
    """``"Both"`` for two, ``"All five"`` for more."""
    return "Both" if count == 2 else f"All {number_word(count)}"


def third_counts(thirds: list[str]) -> str:
    """Say how many objects lie in each third, in reading order.

    Args:
        thirds: The third of each object (names of :data:`THIRDS`).

    Returns:
        ``"in the upper left"`` for one object, ``"both in the center"`` / ``"all three in the
        center"`` when every object shares a third, otherwise ``"two in the upper left and one in the center"``.
    """
    found = Counter(thirds)
    if len(thirds) == 1:
        return f"in the {thirds[0]}"
    if len(found) == 1:
        return f"{_all(len(thirds)).lower()} in the {thirds[0]}"
    return join_words([f"{number_word(found[t])} in the {t}" for t in THIRDS if t in found])


def span_part(span: tuple[float, float], vertical: bool, size: int) -> str:
    """Where a line across the image lies: the third (or the border of two) holding its extent.

    Args:
        span: ``(low, high)`` pixels across the line: columns for a vertical line, rows otherwise.
        vertical: The line runs top to bottom.
        size: Image side in pixels.

    Returns:
        ``"through the left third"`` or ``"between the upper and middle thirds"``.
    """
    names = ("left", "middle", "right") if vertical else ("upper", "middle", "lower")
    low, high = (min(max(int(3 * value // size), 0), 2) for value in span)
    if low == high:
        return f"through the {names[low]} third"
    return f"between the {names[low]} and {names[high]} thirds"


def line_box(span: tuple[float, float], vertical: bool, size: int) -> Box:
    """The box ``(x0, y0, x1, y1)`` of a line across the whole image with extent ``span``."""
    return (span[0], 0.0, span[1], float(size)) if vertical else (0.0, span[0], float(size), span[1])


def side_of(a: Box, b: Box) -> str | None:
    """Where box ``a`` lies relative to box ``b``: ``"to the left of"``, ``"to the right of"``,
    ``"above"``, ``"below"``, or ``None`` when their extents overlap on both axes.

    Args:
        a: ``(x0, y0, x1, y1)``.
        b: ``(x0, y0, x1, y1)``.

    Returns:
        The relation along the axis with the larger gap, or ``None``.
    """
    gaps = {"to the left of": b[0] - a[2], "to the right of": a[0] - b[2],
            "above": b[1] - a[3], "below": a[1] - b[3]}
    word, gap = max(gaps.items(), key=lambda item: item[1])
    return word if gap >= 0 else None


def _relations(subject: tuple[str, str], boxes: list[Box], other: Box, other_name: str) -> str | None:
    """``"Of the three tanks, two are to the left of the largest building and one is below it."``

    ``subject`` is the noun in the singular and plural; boxes whose extents overlap ``other`` on
    both axes are counted as "close to it".
    """
    found = Counter(side_of(box, other) for box in boxes)
    close = found.pop(None, 0)
    if not found:
        return None
    parts = []
    for i, (word, count) in enumerate(sorted(found.items(), key=lambda item: (-item[1], item[0]))):
        parts.append(f"{number_word(count)} {_be(count)} {word} " + (other_name if i == 0 else "it"))
    if close:
        parts.append(f"{number_word(close)} {_be(close)} close to it")
    total = len(boxes)
    if total == 1:
        return f"The {subject[0]} is {next(iter(found))} {other_name}."
    if len(parts) == 1:
        return f"{_all(total)} {subject[1]} are {next(iter(found))} {other_name}."
    return f"Of the {number_word(total)} {subject[1]}, {join_words(parts)}."


def _forest(f: Facts) -> list[str]:
    size = optical_scenes.SIZE
    lines = [f"The canopy is made up of {number_word(f['trees'])} round tree crowns."]
    if f["clearing"]:
        lines.append(f"A clearing of light green open ground lies in the {f['clearing']} of the image.")
    else:
        lines.append("There is no clearing anywhere in the canopy.")
    if f["road"]:
        vertical = f["road"] == "top to bottom"
        lines.append(f"A dirt road runs from {f['road']} {span_part(f['road_span'], vertical, size)} of the image.")
        if f["clearing"]:
            where = side_of(f["clearing_box"], line_box(f["road_span"], vertical, size))
            if where:
                lines.append(f"The clearing lies {where} the road.")
    else:
        lines.append("No road or path crosses the forest.")
    return lines


def _water(f: Facts) -> list[str]:
    percent = round(f["water_share"] * 100)
    if f["kind"] == "river":
        banks = "on the left and on the right" if f["flow"] == "top to bottom" else "above and below it"
        lines = [f"The river covers about {percent}% of the image and green land lines both of its banks, {banks}."]
    else:
        lines = [f"The land on the {f['shore']} side covers about {100 - percent}% of the image "
                 "and the water covers the rest."]
    boats = f["boats"]
    if boats:
        lines.append(f"There {_be(len(boats))} {plural(len(boats), 'white boat')} on the water, {third_counts(boats)}.")
    else:
        lines.append("There are no boats on the water.")
    return lines


def _farmland(f: Facts) -> list[str]:
    fields = f["fields"]
    order = "from top to bottom" if f["layout"] == "stacked" else "from left to right"
    described = [f"the {ORDINALS[0]} field is {f['colours'][0]} with {f['orientations'][0]} stripes"]
    described += [f"the {ORDINALS[i]} is {colour} with {orientation} stripes"
                  for i, (colour, orientation) in enumerate(zip(f["colours"][1:], f["orientations"][1:]), start=1)]
    widths = [stop - start for start, stop in zip(f["edges"][:-1], f["edges"][1:])]
    widest = [i for i, width in enumerate(widths) if width == max(widths)]
    percent = round(max(widths) * 100 / optical_scenes.SIZE)
    if len(widest) == 1:
        largest = f"The {ORDINALS[widest[0]]} field is the largest and covers about {percent}% of the image."
    else:
        largest = (f"The {join_words([ORDINALS[i] for i in widest])} fields are the largest, "
                   f"each covering about {percent}% of the image.")
    tracks = fields - 1
    return [f"{_capital(order)}, {join_words(described)}.", largest,
            f"{_capital(plural(tracks, 'light brown track'))} {'separates' if tracks == 1 else 'separate'} the fields."]


def _roads(roads: list[tuple[int, int]], vertical: bool) -> str | None:
    """One sentence on the roads of one direction; ``roads`` holds each road's first and last pixel line."""
    if not roads:
        return None
    direction = "from top to bottom" if vertical else "from left to right"
    places = [span_part(road, vertical, optical_scenes.SIZE) for road in roads]
    if len(roads) == 1:
        return f"One road runs {direction} {places[0]} of the image."
    if len(set(places)) == 1:
        return (f"{_capital(plural(len(roads), 'road'))} run {direction}, "
                f"{_all(len(roads)).lower()} {places[0]} of the image.")
    return f"{_capital(plural(len(roads), 'road'))} run {direction}, " + join_words(
        [f"one {place}" for place in places]) + " of the image."


def _residential(f: Facts) -> list[str]:
    roofs = sorted(f["roofs"].items(), key=lambda item: (-item[1], item[0]))
    houses = f["houses"]
    if houses == 0:
        lines = ["There are no houses in the grid."]
    elif len(roofs) == 1:
        lines = [f"All {number_word(houses)} houses have {roofs[0][0]} roofs." if houses > 1
                 else f"The only house has {_article_for(roofs[0][0])} {roofs[0][0]} roof."]
    else:
        lines = [f"The {number_word(houses)} houses have "
                 + join_words([plural(count, f"{colour} roof") for colour, count in roofs]) + "."]
    lines += [text for text in (_roads(f["roads_across"], False), _roads(f["roads_down"], True)) if text]
    trees = f["trees"]
    if trees == 1:
        lines.append("One small tree stands among the houses and roads.")
    elif trees:
        lines.append(f"{_capital(plural(trees, 'small tree'))} are scattered among the houses and roads.")
    else:
        lines.append("There are no trees between the houses.")
    return lines


def _article_for(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _industrial(f: Facts) -> list[str]:
    buildings = f["building_list"]
    if len(buildings) == 1:
        name, third, _ = buildings[0]
        lines = [f"The only building has {_article_for(name)} {name} roof and stands in the {third}."]
    else:
        parts = [f"one with {_article_for(name)} {name} roof in the {third}" for name, third, _ in buildings]
        lines = [f"From the largest to the smallest, the {number_word(len(buildings))} buildings are "
                 + join_words(parts) + "."]
        where = side_of(buildings[1][2], buildings[0][2])
        if where:
            lines.append(f"The second largest building is {where} the largest one.")
    tanks = f["tank_list"]
    if tanks:
        thirds = [third for third, _ in tanks]
        lines.append(f"{_capital(plural(len(tanks), 'round white storage tank'))} "
                     f"{'stands' if len(tanks) == 1 else 'stand'} on the site, {third_counts(thirds)}.")
        relation = _relations(("tank", "tanks"), [box for _, box in tanks], buildings[0][2], "the largest building")
        if relation:
            lines.append(relation)
    else:
        lines.append("There are no storage tanks on the site.")
    return lines


def _grassland(f: Facts) -> list[str]:
    bushes = f["bushes"]
    lines = []
    if bushes:
        lines.append(f"{_capital(plural(len(bushes), 'dark green bush', 'dark green bushes'))} "
                     f"{'grows' if len(bushes) == 1 else 'grow'} on the grass, {third_counts(bushes)}.")
    else:
        lines.append("There are no bushes on the grass.")
    if f["path"]:
        vertical = f["path"] == "top to bottom"
        size = optical_scenes.SIZE
        lines.append(f"A light dirt path runs from {f['path']} "
                     f"{span_part(f['path_span'], vertical, size)} of the image.")
        if bushes:
            relation = _relations(("bush", "bushes"), f["bush_boxes"], line_box(f["path_span"], vertical, size),
                                  "the path")
            if relation:
                lines.append(relation)
    else:
        lines.append("No path crosses the grass.")
    return lines


def _parking(f: Facts) -> list[str]:
    cars, rows = f["cars"], f["rows"]
    colours = sorted(f["colour_counts"].items(), key=lambda item: (-item[1], item[0]))
    if cars == 0:
        lines = ["No cars are parked in the stalls."]
    elif cars == 1:
        lines = [f"One car is parked, {_article_for(colours[0][0])} {colours[0][0]} one."]
    else:
        lines = [f"{_capital(number_word(cars))} cars are parked: "
                 + join_words([f"{number_word(count)} {colour}" for colour, count in colours]) + "."]
    order = "from top to bottom" if f["orientation"] == "horizontal" else "from left to right"
    if cars:  # digits: a row may hold none, and "no, nine and no cars" reads badly
        counts = join_words([str(count) for count in f["cars_per_row"]])
        lines.append(f"{_capital(order)}, the {number_word(rows)} rows hold {counts} cars.")
    stalls = f["stalls_per_row"]
    empty = stalls * rows - cars
    lines.append(f"Each row has {number_word(stalls)} marked stalls, so {number_word(empty)} of the "
                 f"{number_word(stalls * rows)} stalls are empty.")
    return lines


def _bare_land(f: Facts) -> list[str]:
    rocks = f["rock_thirds"]
    if rocks:
        lines = [f"{_capital(plural(len(rocks), 'small dark rock'))} {'lies' if len(rocks) == 1 else 'lie'} "
                 f"on the ground, {third_counts(rocks)}."]
    else:
        lines = ["There are no rocks on the ground."]
    directions = Counter(f["track_directions"])
    tracks = f["tracks"]
    if tracks == 0:
        lines.append("No tyre tracks mark the ground.")
    elif tracks == 1:
        lines.append(f"One tyre track crosses the ground from {f['track_directions'][0]}.")
    elif len(directions) == 1:
        lines.append(f"{_capital(plural(tracks, 'tyre track'))} cross the ground, "
                     f"{_all(tracks).lower()} from {f['track_directions'][0]}.")
    else:
        parts = [f"{number_word(directions[d])} {'runs' if directions[d] == 1 else 'run'} from {d}"
                 for d in ("top to bottom", "left to right")]
        lines.append(f"{_capital(plural(tracks, 'tyre track'))} cross the ground: {join_words(parts)}.")
    return lines


def _ship_sizes(sizes: list[str]) -> str:
    found = Counter(sizes)
    if len(sizes) == 1:
        return f"The ship is {sizes[0]} in size."
    if len(found) == 1:
        return f"{_all(len(sizes))} ships are {sizes[0]} in size."
    parts = [f"{number_word(found[w])} {_be(found[w])} {w}" for w in SIZE_WORDS if w in found]
    return f"Of the {number_word(len(sizes))} ships, {join_words(parts)} in size."


def _largest_ship(f: Facts) -> list[str]:
    lengths = f["ship_lengths"]
    if len(lengths) < 2:
        return []
    largest = max(range(len(lengths)), key=lambda i: lengths[i])
    smallest = min(range(len(lengths)), key=lambda i: lengths[i])
    lines = [f"The largest ship is in the {f['ships'][largest][0]} of the image."]
    where = side_of(f["ship_boxes"][largest], f["ship_boxes"][smallest])
    if where:
        lines.append(f"It lies {where} the smallest ship.")
    return lines


def _harbour(f: Facts) -> list[str]:
    ships = f["ships"]
    built = "has small roofs and other built structures on it" if f["built"] else "has no buildings on it"
    lines = [f"The {f['cover']} land along the {_EDGES[f['side']]} edge {built}."]
    moored = [third for third, at_quay in ships if at_quay]
    at_sea = [third for third, at_quay in ships if not at_quay]
    if not ships:
        return lines + ["There are no ships along the quay or at sea."]
    lines.append(f"{_capital(plural(len(moored), 'ship'))} {_be(len(moored))} moored along the quay"
                 + (f", {third_counts(moored)}." if moored else "."))
    lines.append(f"{_capital(plural(len(at_sea), 'ship'))} {_be(len(at_sea))} at sea away from the quay"
                 + (f", {third_counts(at_sea)}." if at_sea else "."))
    return lines + [_ship_sizes(f["ship_sizes"]), *_largest_ship(f)]


def _open_sea(f: Facts) -> list[str]:
    ships = f["ships"]
    if not ships:
        return ["There are no ships anywhere on the water.", "Nothing floats on the surface of the sea."]
    thirds = [third for third, _ in ships]
    lines = [f"{_capital(plural(len(ships), f['ship_colour'] + ' ship'))} {_be(len(ships))} on the water, "
             f"{third_counts(thirds)}."]
    return lines + [_ship_sizes(f["ship_sizes"]), *_largest_ship(f)]


DETAILS: dict[str, Callable[[Facts], list[str]]] = {
    "forest": _forest, "water": _water, "farmland": _farmland, "residential": _residential,
    "industrial": _industrial, "grassland": _grassland, "parking lot": _parking, "bare land": _bare_land,
    "harbour": _harbour, "open sea": _open_sea,
}
"""Class name to the function writing its detail sentences (each a full sentence with its full stop)."""
