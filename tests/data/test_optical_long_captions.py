"""The parts of the optical long captions on hand-made facts: positions, relations, token floor, draws."""

from __future__ import annotations

import numpy as np
import pytest

from rsvl.data.synthetic import optical_captions, optical_details
from rsvl.data.synthetic.optical_captions import DETAIL_START, describe, long_caption_parts, token_floor
from rsvl.data.synthetic.optical_details import side_of, span_part, third_counts


def test_third_counts_in_reading_order():
    assert third_counts(["center"]) == "in the center"
    assert third_counts(["center", "center"]) == "both in the center"
    assert third_counts(["lower right"] * 3) == "all three in the lower right"
    assert third_counts(["lower right", "upper left", "lower right", "center"]) == (
        "one in the upper left, one in the center and two in the lower right")


@pytest.mark.parametrize(("span", "vertical", "words"), [
    ((2.0, 20.0), True, "through the left third"),
    ((30.0, 40.0), True, "between the left and middle thirds"),  # 96 px: thirds end at 32 and 64
    ((32.0, 63.9), False, "through the middle third"),
    ((60.0, 70.0), False, "between the middle and lower thirds"),
    ((-3.0, 5.0), False, "through the upper third"),  # a wiggle past the edge stays in the edge's third
])
def test_span_part_names_the_thirds_a_line_crosses(span, vertical, words):
    assert span_part(span, vertical, 96) == words


def test_side_of_compares_extents_along_the_larger_gap():
    building = (40.0, 40.0, 60.0, 60.0)
    assert side_of((10, 45, 20, 55), building) == "to the left of"
    assert side_of((70, 45, 80, 55), building) == "to the right of"
    assert side_of((45, 10, 55, 20), building) == "above"
    assert side_of((45, 70, 55, 80), building) == "below"
    assert side_of((20, 0, 35, 30), building) == "above"  # 10 px above, 5 px to the left: the larger gap
    assert side_of((60, 45, 70, 55), building) == "to the right of"  # touching edges are still apart
    assert side_of((50, 50, 70, 70), building) is None  # overlapping on both axes: nothing is said


FACTS = {  # an industrial site drawn by hand: boxes (x0, y0, x1, y1), largest building first
    "buildings": 2, "roof": "white", "largest_at": "center", "tanks": 3,
    "building_list": [("white", "center", (35, 35, 70, 60)), ("blue", "upper left", (2, 2, 25, 20))],
    "tank_list": [("lower left", (5, 70, 15, 80)), ("lower middle", (40, 75, 50, 85)),
                  ("upper right", (80, 5, 90, 15))],
}


def test_industrial_details_from_hand_made_facts():
    assert optical_details.DETAILS["industrial"](FACTS) == [
        "From the largest to the smallest, the two buildings are one with a white roof in the center and one "
        "with a blue roof in the upper left.",
        "The second largest building is above the largest one.",  # 15 px above it, 10 px to its left
        "Three round white storage tanks stand on the site, one in the upper right, one in the lower left and "
        "one in the lower middle.",
        # left by 20 (below by 10), below by 15, above by 20 (right by 10); equal counts in word order
        "Of the three tanks, one is above the largest building, one is below it and one is to the left of it.",
    ]


def test_grassland_bushes_relative_to_a_path():
    facts = {"tone": "lush green", "bushes": ["upper left", "upper left", "lower right"], "path": "left to right",
             "bush_boxes": [(10, 5, 14, 9), (20, 10, 26, 16), (80, 48, 84, 52)], "path_span": (40.0, 50.0)}
    assert optical_details.DETAILS["grassland"](facts) == [
        "Three dark green bushes grow on the grass, two in the upper left and one in the lower right.",
        "A light dirt path runs from left to right through the middle third of the image.",
        "Of the three bushes, two are above the path and one is close to it.",
    ]


def test_token_floor_is_a_lower_bound_under_both_tokenizers():
    from rsvl.models.token_counts import token_lengths, tokenizer_by_name

    texts = ["There are 21 cars, 3.5 m apart: seven white!", "A dirt road -- runs (left to right).",
             *[s for pool in optical_captions.GENERAL.values() for s in pool],
             *optical_details.DETAILS["industrial"](FACTS)]
    floors = [token_floor(text) for text in texts]
    # there are 21 cars , 3 . 5 m apart : seven white ! (14); a dirt road -- runs ( left to right ). (10)
    assert floors[:2] == [14, 10]
    for name in ("ViT-B-32", "rsvl-effnetlite0-minilm"):
        lengths = token_lengths(tokenizer_by_name(name), texts)
        assert all(floor <= length - 2 for floor, length in zip(floors, lengths)), name


def test_general_part_reaches_the_detail_start_and_stops_there():
    rng = np.random.default_rng(0)
    first, general, details = long_caption_parts("industrial", FACTS, "An industrial area.", rng)
    assert general[0] == optical_captions.OVERVIEW["industrial"]
    assert 1 + token_floor(" ".join([first, *general])) >= DETAIL_START
    assert 1 + token_floor(" ".join([first, *general[:-1]])) < DETAIL_START  # one sentence fewer falls short
    assert details == optical_details.DETAILS["industrial"](FACTS)
    long_first = " ".join(["word"] * 80) + "."
    assert long_caption_parts("industrial", FACTS, long_first, rng)[1] == [optical_captions.OVERVIEW["industrial"]]


def test_describe_leaves_the_callers_stream_where_the_short_captions_left_it():
    """The RS5M pool draws on after ``describe``: the long caption must not move its numbers."""
    facts = {"tone": "dry yellowish", "bushes": ["center"], "path": None, "bush_boxes": [(40, 40, 44, 44)],
             "path_span": None}
    rng, reference = np.random.default_rng([0, 1, 2]), np.random.default_rng([0, 1, 2])
    captions, long_caption = describe("grassland", facts, rng)
    reference.permutation(len(optical_captions.SHORT_TEMPLATES["grassland"](facts)))
    assert rng.integers(1 << 62, size=4).tolist() == reference.integers(1 << 62, size=4).tolist()
    assert any(long_caption.startswith(caption + " ") for caption in captions)
