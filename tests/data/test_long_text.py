"""First sentences and long-text proxies on hand-written captions with known answers."""

from __future__ import annotations

import pytest

from rsvl.data.long_text import as_sentence, first_sentence, long_text_proxies


@pytest.mark.parametrize(("text", "first"), [
    ("A dense forest. This is an aerial image of a forest.", "A dense forest."),
    ("  Two ships in the harbour!  Both are white.", "Two ships in the harbour!"),
    ("Is this a port? Yes.", "Is this a port?"),
    ("A single sentence with its full stop.", "A single sentence with its full stop."),
    ("the airport is very large .", "the airport is very large ."),  # RSICD: a detached full stop, then the end
    ("green trees are around a playground", "green trees are around a playground"),  # no full stop at all
    ("many planes are parked . some are near the terminal .", "many planes are parked . some are near the terminal ."),
    ("Roads 3.5 m wide. Houses.", "Roads 3.5 m wide."),  # a decimal point is no boundary
    ("Trees, e.g. oaks. Grass.", "Trees, e.g. oaks."),  # nor a full stop before a lower-case word
    ("There are 21 cars. 21 cars are parked.", "There are 21 cars. 21 cars are parked."),  # nor before a digit
])
def test_first_sentence(text, first):
    assert first_sentence(text) == first


def test_first_sentence_refuses_blank_text():
    with pytest.raises(ValueError, match="blank"):
        first_sentence(" \n ")


@pytest.mark.parametrize(("caption", "written"), [
    ("the airport is very large .", "The airport is very large."),
    ("  many   green trees\taround a lake ", "Many green trees around a lake."),
    ("Is it a port ?", "Is it a port?"),
    ("Two ships.", "Two ships."),
])
def test_as_sentence(caption, written):
    assert as_sentence(caption) == written


def test_proxies_join_distinct_captions_in_first_seen_order():
    captions = {
        "a.jpg": ["the airport is very large .", "The  airport is VERY large .", "", "planes near a terminal",
                  "the airport is very large ."],
        "b.jpg": ["   ", ""],
        "c.jpg": ["A river.", "a river .", "a River"],  # one caption written as a sentence: the first spelling stays
        "d.jpg": ["two boats", "green trees . a road"],
    }
    assert long_text_proxies(captions) == {
        "a.jpg": "The airport is very large. Planes near a terminal.",
        "c.jpg": "A river.",
        "d.jpg": "Two boats. Green trees . a road.",
    }
    assert list(long_text_proxies({"z": ["b"], "y": ["a"]})) == ["z", "y"]  # the mapping's order
    # the short text of a proxy is its first caption, as LRSCLIP's dual loss reads it
    assert first_sentence(long_text_proxies(captions)["a.jpg"]) == "The airport is very large."
