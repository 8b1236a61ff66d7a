"""Long texts and their short form, as LRSCLIP's dual-text loss uses them.

LRSCLIP pairs every image with a long caption and a short one, the long caption's first sentence
(:func:`first_sentence`). Real benchmarks (RSICD, RSITMD, NWPU-Captions...) have five short human
captions per image and no long one; LRSCLIP's long-text proxy is their distinct captions joined
into one text (:func:`long_text_proxies`).

Sentence boundary: a ``.``, ``!`` or ``?`` followed by whitespace and then an upper-case letter,
or by the end of the text. A full stop inside a number (``3.5``) or followed by a lower-case word
(``e.g. the``) is no boundary, and a text with no boundary at all (most RSICD captions have no
final full stop, or a detached `` .``) is one sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_BOUNDARY = re.compile(r"[.!?](?=\s+[A-Z]|\s*$)")
_SPACE_BEFORE_END = re.compile(r"\s+([.!?])$")


def first_sentence(text: str) -> str:
    """The first sentence of a text, its final punctuation kept (the short text of a long caption).

    Args:
        text: A caption; surrounding whitespace is ignored.

    Returns:
        The text up to and including the first sentence boundary (see the module docstring), or
        the whole stripped text when it has none.

    Raises:
        ValueError: The text is empty or whitespace.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"no sentence in a blank text {text!r}")
    match = _BOUNDARY.search(stripped)
    return stripped if match is None else stripped[:match.end()]


def as_sentence(caption: str) -> str:
    """A caption written as a sentence: whitespace collapsed, first letter upper case, final punctuation.

    A space before the final mark (RSICD's ``"... trees ."``) is removed and a caption without one
    gets a full stop; neither changes the tokens of CLIP's BPE or WordPiece, which split punctuation
    off words anyway.

    Args:
        caption: A caption (not blank).

    Returns:
        The caption as a sentence.

    Raises:
        ValueError: The caption is blank.
    """
    text = " ".join(caption.split())
    if not text:
        raise ValueError(f"blank caption {caption!r}")
    text = _SPACE_BEFORE_END.sub(r"\1", text)
    if text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def long_text_proxies(captions_by_image: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Join each image's distinct human captions into one long text (LRSCLIP's long-text proxy).

    Each caption is written as a sentence (:func:`as_sentence`: whitespace collapsed, a final
    punctuation mark attached or added) and compared case-insensitively, so ``"A  Road ."``,
    ``"a road."`` and ``"a road"`` are one caption; the first-seen spelling of each is kept, in
    first-seen order, joined by single spaces. Blank captions are skipped.

    Args:
        captions_by_image: Image name to its captions, in their order.

    Returns:
        Image name to its long text, in the mapping's order; an image whose captions are all blank
        is left out.
    """
    proxies: dict[str, str] = {}
    for image, captions in captions_by_image.items():
        seen: dict[str, str] = {}
        for caption in captions:
            if not caption.strip():
                continue
            written = as_sentence(caption)
            seen.setdefault(written.lower(), written)
        if seen:
            proxies[image] = " ".join(seen.values())
    return proxies
