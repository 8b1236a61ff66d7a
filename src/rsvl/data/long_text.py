"""Long captions and their short texts: LRSCLIP's "first sentence" rule and long-text proxies of real captions."""

from __future__ import annotations

import re
from typing import Iterable

# a sentence ends at . ! or ? followed by white space and a capital letter or digit (not "e.g. the")
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Split a caption into sentences, each stripped; text without end marks is one sentence.

    Args:
        text: A caption.
    """
    return [part.strip() for part in _BOUNDARY.split(text.strip()) if part.strip()]


def first_sentence(text: str) -> str:
    """The short text of a long caption (LRSCLIP): its first sentence, end mark kept.

    Args:
        text: A long caption (``"A harbour with three ships. The ships are moored ..."``).

    Returns:
        The first sentence (``"A harbour with three ships."``); the whole stripped text when it has
        one sentence; ``""`` for blank text.
    """
    parts = sentences(text)
    return parts[0] if parts else ""


def long_text_proxy(captions: Iterable[str]) -> str:
    """One image's distinct human captions joined into one long text, a proxy for a long caption.

    Captions are compared case- and whitespace-insensitively and kept in first-seen order; each
    becomes a sentence (capitalised, ending with a period unless it ends with ``.``, ``!`` or ``?``).

    Args:
        captions: The image's captions (RSICD and RSITMD have five, often repeated).

    Returns:
        The joined text; ``""`` when every caption is blank.
    """
    seen: set[str] = set()
    parts: list[str] = []
    for caption in captions:
        text = " ".join(str(caption).split())
        key = text.lower().rstrip(".!? ")
        if not key or key in seen:
            continue
        seen.add(key)
        text = text[0].upper() + text[1:]
        parts.append(text if text[-1] in ".!?" else text + ".")
    return " ".join(parts)
