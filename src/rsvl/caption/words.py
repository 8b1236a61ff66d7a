"""Small English helpers shared by the drafting routes and the quality filter."""

from __future__ import annotations

import re

from rsvl.caption.numbers import number_to_words

SYNONYMS: dict[str, tuple[str, ...]] = {"ship": ("vessel", "boat"), "vessel": ("ship", "boat")}
"""Nouns a caption may use for a box label; the count check reads all of them."""


def plural_noun(noun: str) -> str:
    """Return the plural of a class noun (``ship`` -> ``ships``, ``bus`` -> ``buses``)."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def count_phrase(count: int, noun: str) -> str:
    """Return ``"three ships"``, ``"one ship"`` or ``"no ships"``."""
    if count == 0:
        return f"no {plural_noun(noun)}"
    return f"{number_to_words(count)} {noun if count == 1 else plural_noun(noun)}"


def join_words(items: list[str]) -> str:
    """Join ``["a", "b", "c"]`` as ``"a, b and c"``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def sentence(text: str) -> str:
    """Capitalise the first letter and end with one full stop."""
    text = re.sub(r"\s+([,;:])", r"\1", " ".join(text.split()))
    text = re.sub(r",(?:\s*,)+", ",", text).rstrip(" .")
    return text[:1].upper() + text[1:] + "."


def noun_forms(label: str) -> set[str]:
    """Every singular and plural noun that names boxes of ``label`` in a caption."""
    nouns = {label.lower(), *SYNONYMS.get(label.lower(), ())}
    return nouns | {plural_noun(n) for n in nouns}
