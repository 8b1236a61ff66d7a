"""SAR-Narrator stages on hand-built scenes: drafting, rule rewriting and the quality filter."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rsvl.caption import CaptionConfig, RuleRewriter, Scene, load_prompt, narrate
from rsvl.caption.numbers import number_to_words, words_to_number
from rsvl.caption.quality import Limits, check_caption
from rsvl.caption.rewrite import COLOUR_WORDS


def ship(x0, y0, x1, y1):
    return {"x_min": float(x0), "y_min": float(y0), "x_max": float(x1), "y_max": float(y1), "label": "ship"}


def coastal_scene(sample_id="c1") -> Scene:
    mask = np.zeros((120, 120), dtype=np.int64)
    mask[:30] = 1  # land strip along the top edge
    boxes = [ship(10, 31, 25, 36), ship(60, 32, 75, 37), ship(100, 100, 110, 104)]
    return Scene(sample_id, 120, 120, boxes, True, mask, {0: "sea", 1: "land"})


@pytest.mark.parametrize("text,value", [
    ("three", 3), ("no", 0), ("twenty-two", 22), ("one hundred twenty-two", 122),
    ("one hundred and five", 105), ("seventeen", 17), ("40", 40), ("a", 1), ("many", None),
])
def test_words_to_number_reads_hand_written_counts(text, value):
    assert words_to_number(text) == value


def test_number_words_round_trip():
    for count in range(0, 1000):
        assert words_to_number(number_to_words(count)) == count


def test_a2c_and_sa2c_drafts_are_true_to_the_scene():
    scene = coastal_scene()
    result = narrate(scene, CaptionConfig())
    routes = {c.route for c in result.accepted}
    assert routes == {"a2c", "sa2c"}
    assert not result.rejected
    a2c = [c.text for c in result.accepted if c.route == "a2c"]
    assert len(a2c) == 4 and len(set(a2c)) == 4
    for text in a2c:
        assert re.search(r"\bthree ships\b", text, re.IGNORECASE), text
    land_share = scene.mask.mean()
    for text in (c.text for c in result.accepted if c.route == "sa2c"):
        for number in re.findall(r"(\d+)% is land|land covers about (\d+)%", text):
            stated = int(next(n for n in number if n))
            assert abs(stated / 100 - land_share) <= 0.01
        if "edge" in text:
            assert "north edge" in text
        if "mostly" in text:
            assert "mostly water" in text  # a quarter of the mask is land


def test_moored_ships_are_said_to_be_along_the_quay():
    scene = coastal_scene()
    scene.boxes = scene.boxes[:2]  # both touch the land strip's edge (row 30)
    texts = [c.text for c in narrate(scene, CaptionConfig(a2c_captions=6)).accepted if c.route == "a2c"]
    assert any("moored along the quay" in t for t in texts)
    assert not any("at sea" in t for t in texts)


def test_drafts_are_deterministic_given_the_seed():
    first = narrate(coastal_scene(), CaptionConfig(seed=3)).texts
    assert narrate(coastal_scene(), CaptionConfig(seed=3)).texts == first
    others = {tuple(narrate(coastal_scene(), CaptionConfig(seed=s)).texts) for s in range(6)}
    assert len(others) > 1


def test_empty_detection_chip_says_no_ships():
    scene = Scene("e", 64, 64, [], True)
    texts = narrate(scene, CaptionConfig()).texts
    assert texts and all(re.search(r"\bno ships\b", t, re.IGNORECASE) for t in texts)


def test_rule_rewriter_drops_colours_and_keeps_objects():
    rewriter = RuleRewriter()
    out = rewriter.rewrite("Three white ships are docked at the grey pier next to the blue sea.")
    assert out == "Three ships are docked at the pier next to the sea."
    out = rewriter.rewrite("An aerial image of red-roofed houses and a green park; the water is blue and calm.")
    assert not any(re.search(rf"\b{w}\b", out, re.IGNORECASE) for w in COLOUR_WORDS)
    for kept in ("houses", "park", "water", "calm", "SAR image"):
        assert kept in out


def test_optical_route_is_rewritten_filtered_and_labelled():
    scene = coastal_scene()
    optical = ["Three white ships are docked at the grey pier.", "Five red boats near a blue lake.", "A green field."]
    result = narrate(scene, CaptionConfig(a2c_captions=0, sa2c_captions=0), optical_captions=optical)
    assert [(c.text, c.route, c.rewriter) for c in result.accepted] == [
        ("Three ships are docked at the pier.", "optical", "rule")]
    assert sorted(r.rule for r in result.rejected) == ["count_mismatch", "too_short"]


@pytest.mark.parametrize("caption,rule", [
    ("There are no ships in this SAR image.", "count_mismatch"),
    ("Two vessels moored along the quay.", "count_mismatch"),
    ("Three ships in the lower left of the image.", "region_without_box"),
    ("Three grey ships next to the land.", "colour_word"),
    ("Ships.", "too_short"),
    ("Mostly land with some sea.", "share_mismatch"),
    ("Land covers about 60% of the scene.", "share_mismatch"),
    ("Three ships on open sea with no land.", "land_contradiction"),
    ("three ships near the coast", "duplicate"),
])
def test_quality_filter_names_the_broken_rule(caption, rule):
    seen = {"three ships near the coast"}
    problem = check_caption(caption, coastal_scene(), seen, Limits())
    assert problem is not None and problem[0] == rule, problem


def test_quality_filter_accepts_true_captions():
    scene = coastal_scene()  # boxes: medium, medium, small; two touch the land; scattered
    for caption in ("Three ships in the upper left and lower right of the image.",
                    "Land covers about 25% of the scene along the north edge.",
                    "Three ships of small and medium size, two of them moored along the quay.",
                    "The radar scene shows three ships scattered across the scene, in the upper left.",
                    "A SAR image with three medium and small vessels; land along the north edge."):
        assert check_caption(caption, scene, set(), Limits()) is None, caption


_SIZES = "(medium from 0.30% of the chip, large from 1.50%)"


@pytest.mark.parametrize("caption,problem", [
    ("Three small ships, two of them moored along the quay.",
     ("size_mismatch", f"states small ship(s), the boxes hold 1 small and 2 medium {_SIZES}")),
    ("Three ships, all medium, two of them moored along the quay.",
     ("size_mismatch", f"states medium ship(s), the boxes hold 1 small and 2 medium {_SIZES}")),
    ("A SAR image with three ships, of small, medium and large size.",
     ("size_mismatch", f"states small, medium and large ship(s), the boxes hold 1 small and 2 medium {_SIZES}")),
    ("Three big vessels near the coast.",
     ("size_mismatch", f"states large ship(s), the boxes hold 1 small and 2 medium {_SIZES}")),
    ("Three ships clustered together.",
     ("arrangement_mismatch", "states 'clustered together', the boxes are scattered")),
    ("Three ships lined up in a row.", ("arrangement_mismatch", "states 'lined up in a row', the boxes are scattered")),
    ("Three ships moored along the quay.",
     ("arrangement_mismatch",
      "states 'moored along the quay' (3 of 3 ship(s) moored), the boxes put 2 within 3 px of land")),
    ("Three ships, one of them moored along the quay and the rest at sea.",
     ("arrangement_mismatch",
      "states 'one of them moored' (1 of 3 ship(s) moored), the boxes put 2 within 3 px of land")),
    ("Three ships scattered at sea.",
     ("arrangement_mismatch", "states 'at sea' (0 of 3 ship(s) moored), the boxes put 2 within 3 px of land")),
])
def test_size_and_arrangement_claims_are_held_to_the_boxes(caption, problem):
    assert check_caption(caption, coastal_scene(), set(), Limits()) == problem


def test_arrangement_without_a_mask_comes_from_box_spacing():
    apart = Scene("p", 100, 100, [ship(5, 5, 10, 8), ship(80, 80, 85, 83)], True)
    assert check_caption("Two ships far apart.", apart, set(), Limits()) is None
    assert check_caption("Two ships close together.", apart, set(), Limits()) == (
        "arrangement_mismatch", "states 'close together', the boxes are scattered")
    alone = Scene("a", 100, 100, [ship(5, 5, 10, 8)], True)
    assert check_caption("One ship, small in size, alone in the scene.", alone, set(), Limits()) is None
    assert check_caption("One ship scattered across the scene.", alone, set(), Limits()) == (
        "arrangement_mismatch", "states 'scattered', the boxes are a single box")


def test_size_thresholds_come_from_the_config():
    scene = Scene("t", 100, 100, [ship(0, 0, 10, 10)], True)  # 1% of the chip: medium by default
    assert check_caption("One medium ship.", scene, set(), Limits()) is None
    limits = Limits.of(CaptionConfig(size_medium=0.02, size_large=0.05))
    assert check_caption("One medium ship.", scene, set(), limits) == (
        "size_mismatch",
        "states medium ship(s), the boxes hold 1 small (medium from 2.00% of the chip, large from 5.00%)")


def test_a2c_drafts_never_break_the_size_and_arrangement_checks():
    rng = np.random.default_rng(11)
    rules = []
    for i in range(150):
        size = int(rng.choice([64, 120, 256]))
        boxes = []
        for _ in range(int(rng.choice([1, 2, 3, 4, 6, 9]))):
            w, h = (int(v) for v in rng.integers(2, size // 4, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            boxes.append(ship(x, y, x + w, y + h))
        mask = None if i % 3 == 0 else np.zeros((size, size), dtype=np.int64)
        if i % 3 == 2:
            mask[:int(rng.integers(1, size // 2))] = 1
        scene = Scene(f"r{i}", size, size, boxes, True, mask, {0: "sea", 1: "land"} if mask is not None else {})
        result = narrate(scene, CaptionConfig(a2c_captions=6, sa2c_captions=0))
        assert len(result.accepted) == 6
        rules += [r.rule for r in result.rejected]
    assert rules == []


def test_land_words_contradict_a_mask_without_land():
    scene = Scene("s", 64, 64, [ship(10, 10, 20, 14)], True, np.zeros((64, 64), dtype=np.int64), {0: "sea", 1: "land"})
    assert check_caption("One ship moored along the quay.", scene, set(), Limits())[0] == "land_contradiction"
    assert check_caption("One ship on open sea.", scene, set(), Limits()) is None


def test_packaged_prompt_has_system_text_and_examples():
    prompt = load_prompt()
    assert "colour" in prompt.system and len(prompt.examples) >= 3
    messages = prompt.messages("Two red cars.")
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": "Two red cars."}
    assert len(messages) == 2 + 2 * len(prompt.examples)
