"""The rule rewriter on hand-picked captions and on every sentence the A2C route can draft."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from rsvl.caption import CaptionConfig, RuleRewriter, Scene, narrate
from rsvl.caption.a2c import class_templates, empty_templates, layout_phrase, region_phrase, size_phrase
from rsvl.caption.geometry import REGIONS, SIZES
from rsvl.caption.narrate import rewrite
from rsvl.caption.quality import Limits, check_caption, stated_counts
from rsvl.caption.words import fix_articles, sentence

SPREADS = ("in a line", "clustered", "scattered")
MAX_COUNT = 12
LARGE_COUNTS = (13, 20, 21, 99, 100, 101, 121, 999)


@pytest.mark.parametrize("caption,expected", [
    ("There are three ships in this SAR image.", "There are three ships in this SAR image."),
    ("A SAR satellite image of a port.", "A SAR image of a port."),
    ("An aerial image of two ships.", "A SAR image of two ships."),
    ("Navy ships in the Red Sea near the White House", "Ships in the Red Sea near the White House"),
    ("Red ships near Green Bay.", "Ships near Green Bay."),
    ("A grey frigate of the US Navy in the Yellow River.", "A frigate of the US Navy in the Yellow River."),
    ("An orange grove.", "A grove."),
    ("Two trucks beside an orange grove and a olive orchard.", "Two trucks beside a grove and an orchard."),
    ("An orange roof beside a yellow, orange and white hangar.", "A roof beside a hangar."),
    ("The pier is white and long; an empty berth.", "The pier is long; an empty berth."),
])
def test_rule_rewriter_output(caption, expected):
    assert RuleRewriter().rewrite(caption) == expected


@pytest.mark.parametrize("text,expected", [
    ("An grove", "A grove"), ("an grove", "a grove"), ("A apple", "An apple"), ("a apple", "an apple"),
    ("A ship. A island", "A ship. An island"), ("Zone A is here", "Zone A is here"),
    ("a 3-lane road", "a 3-lane road"),
])
def test_fix_articles_keeps_capitals(text, expected):
    assert fix_articles(text) == expected


def test_proper_names_pass_the_filter_and_colours_do_not():
    scene = Scene("s", 90, 90, [{"x_min": 1.0, "y_min": 1.0, "x_max": 9.0, "y_max": 5.0, "label": "ship"}] * 3)
    result = narrate(scene, CaptionConfig(a2c_captions=0, sa2c_captions=0),
                     optical_captions=["Three white ships in the Red Sea.", "Three Red ships at the pier."])
    assert result.texts == ["Three ships in the Red Sea.", "Three ships at the pier."]
    assert check_caption("Three red ships near the White House.", scene, set(), Limits()) == (
        "colour_word", "uses the colour word 'red', which a SAR image cannot show")


def _size_phrases(count: int) -> set[str]:
    subsets = [c for r in range(1, min(count, len(SIZES)) + 1) for c in itertools.combinations(SIZES, r)]
    return {size_phrase(Counter(subset), count) for subset in subsets}


def _layout_phrases(count: int) -> set[str]:
    spreads = SPREADS if count > 1 else (None,)
    moored = range(count + 1) if count <= MAX_COUNT else (0, 1, count - 1, count)
    phrases = {layout_phrase(count, land, 0, kind) for land in (None, "none") for kind in spreads}
    return phrases | {layout_phrase(count, "some", m, kind) for m in moored for kind in spreads}


def _region_phrases() -> set[str]:
    few = [c for r in range(1, 5) for c in itertools.combinations(REGIONS, r)]
    many = [Counter({**dict.fromkeys(REGIONS[:5], 1), busiest: 3}) for busiest in REGIONS]
    return {region_phrase(Counter(c)) for c in few} | {region_phrase(c) for c in many}


def _a2c_drafts() -> list[tuple[int, str]]:
    """Every (count, draft) of one ship class the A2C templates can produce, regions sampled per count."""
    drafts = {(0, sentence(t)) for land in (None, "none", "some") for t in empty_templates(["ship"], land)}
    regions = sorted(_region_phrases())
    for count in [*range(1, MAX_COUNT + 1), *LARGE_COUNTS]:
        for sizes, layout in itertools.product(sorted(_size_phrases(count)), sorted(_layout_phrases(count))):
            drafts |= {(count, sentence(t)) for t in class_templates("ship", count, regions[0], sizes, layout)}
        for where in regions:
            drafts |= {(count, sentence(t)) for t in class_templates("ship", count, where, "all small", "far apart")}
    return sorted(drafts)


def _problems(draft: str, count: int, out: str) -> list[str]:
    found = []
    if doubled := re.search(r"\b(\w+)\s+\1\b", out, re.IGNORECASE):
        found.append(f"doubled word {doubled.group(0)!r}")
    for match in re.finditer(r"\b(an?)\s+([^\W\d_])", out, re.IGNORECASE):
        wanted = "an" if match.group(2).lower() in "aeiou" else "a"
        if match.group(1).lower() != wanted:
            found.append(f"article {match.group(0)!r}")
    if not stated_counts(out, "ship") or set(stated_counts(out, "ship")) != {count}:
        found.append(f"counts {stated_counts(out, 'ship')}, want {count}")
    if re.findall(r"\bships?\b", out) != re.findall(r"\bships?\b", draft):
        found.append("ship nouns changed")
    if not out.endswith(".") or out.endswith(".."):
        found.append("does not end with one full stop")
    if out != draft.replace("of the image", "of the SAR image"):
        found.append("changed more than the picture noun")
    return found


def test_rule_rewriter_keeps_every_a2c_draft_well_formed():
    drafts = _a2c_drafts()
    assert len(drafts) > 5_000
    rewritten = rewrite([("a2c", text) for _, text in drafts], RuleRewriter(), rewrite_drafts=True)
    bad = {}
    for (count, draft), (_, out, wrote) in zip(drafts, rewritten):
        assert wrote == "rule"
        if problems := _problems(draft, count, out):
            bad[draft] = (out, problems)
    assert not bad, f"{len(bad)} bad rewrites, for example {next(iter(bad.items()))}"
