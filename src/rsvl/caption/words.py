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


_ARTICLE = re.compile(r"\b(an?)(\s+)(?=([^\W\d_]))", re.IGNORECASE)


def article(word: str) -> str:
    """Return the article of ``word``: ``"an"`` before a vowel letter (a, e, i, o, u), else ``"a"``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _sentence_start(text: str, index: int) -> bool:
    before = text[:index].rstrip()
    return not before or before[-1] in ".!?"


def fix_articles(text: str) -> str:
    """Make every "a"/"an" agree with the next word (:func:`article`), keeping its capital letter.

    A capital "A" counts as an article only at the start of a sentence ("Zone A is" keeps its "A").

    Args:
        text: One or more sentences.

    Returns:
        The text with "a" and "an" swapped where the next word needs the other.
    """
    def agree(match: re.Match) -> str:
        word, space, following = match.groups()
        if word[0].isupper() and not _sentence_start(text, match.start()):
            return match.group(0)
        wanted = article(following)
        return (wanted.capitalize() if word[0].isupper() else wanted) + space

    return _ARTICLE.sub(agree, text)


def normalise(caption: str) -> str:
    """Lower-case a caption and drop punctuation, the form in which duplicates are compared."""
    return " ".join(re.sub(r"[^\w%\s-]", " ", caption.lower()).split())


def noun_forms(label: str) -> set[str]:
    """Every singular and plural noun that names boxes of ``label`` in a caption."""
    nouns = {label.lower(), *SYNONYMS.get(label.lower(), ())}
    return nouns | {plural_noun(n) for n in nouns}
