"""The quality filter: length, duplicates, colour words and contradictions with the annotations.

Each check returns a rule name and a sentence, so a rejected caption is kept with the reason it
failed instead of disappearing. Contradictions are checked only against what is annotated: counts
when boxes are known, regions against box centres, land words and shares against a sea/land mask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rsvl.caption.geometry import REGIONS, box_centre
from rsvl.data.synthetic import third_of
from rsvl.caption.numbers import NUMBER_PATTERN, words_to_number
from rsvl.caption.rewrite import colour_words
from rsvl.caption.scene import Scene
from rsvl.caption.words import noun_forms, normalise

_ADJECTIVES = r"(?:(?:small|medium|medium-sized|large|big|tiny|bright|moored|cargo|fishing|more|other)\s+){0,2}"
_REGION = re.compile(r"\b(" + "|".join(REGIONS) + r")\b", re.IGNORECASE)
_SHARE_PATTERNS = (
    re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*%\s+(?:of the (?:scene|image)\s+)?is\s+(?P<what>land|sea|water)\b", re.I),
    re.compile(r"\b(?P<what>land|sea|water)\s+(?:covers?|makes? up|occupies)\s+(?:about\s+)?(?P<number>\d+(?:\.\d+)?)\s*%", re.I),
)
_LAND_WORDS = re.compile(r"\b(?:moored|quay|coast|coastal|coastline|harbou?r|pier|land)\b", re.IGNORECASE)
_NO_LAND = re.compile(r"\b(?:no land|open sea|open water)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """Length limits and the tolerance on stated shares."""

    min_words: int = 3
    max_words: int = 60
    max_chars: int = 400
    share_tolerance: float = 0.05


def stated_counts(caption: str, label: str) -> list[int]:
    """Every count the caption attaches to a noun naming ``label`` ("three large ships" -> 3).

    Args:
        caption: The caption.
        label: A box class (its synonyms and plurals count too).

    Returns:
        The counts in order of appearance.
    """
    nouns = "|".join(sorted(noun_forms(label), key=len, reverse=True))
    pattern = re.compile(rf"\b({NUMBER_PATTERN})\s*{_ADJECTIVES}(?:{nouns})\b", re.IGNORECASE)
    counts = []
    for match in pattern.finditer(caption):
        value = words_to_number(match.group(1))
        if value is not None:
            counts.append(value)
    return counts


def _contradiction(caption: str, scene: Scene, limits: Limits) -> tuple[str, str] | None:
    if scene.boxes_known:
        counts = scene.counts()
        for label in set(counts) | {"ship"}:
            for stated in stated_counts(caption, label):
                if stated != counts.get(label, 0):
                    return "count_mismatch", f"states {stated} {label}(s), the boxes hold {counts.get(label, 0)}"
        centres = {third_of(*box_centre(b), scene.width, scene.height) for b in scene.boxes}
        for region in _REGION.findall(caption):
            if region.lower() not in centres:
                return "region_without_box", f"mentions the {region.lower()} but no box centre lies there"
    land = scene.land
    if land is not None:
        share = float(land.mean())
        if share == 0 and _LAND_WORDS.search(caption) and not _NO_LAND.search(caption):
            return "land_contradiction", "speaks of land or mooring but the mask has no land"
        if share > 0 and _NO_LAND.search(caption):
            return "land_contradiction", f"says there is no land but {share:.0%} of the mask is land"
        text = caption.lower()
        if ("mostly water" in text and share >= 0.5) or ("mostly land" in text and share <= 0.5):
            return "share_mismatch", f"the mask is {share:.0%} land"
        for pattern in _SHARE_PATTERNS:
            for match in pattern.finditer(caption):
                what, stated = match.group("what").lower(), float(match.group("number")) / 100
                truth = share if what == "land" else 1 - share
                if abs(stated - truth) > limits.share_tolerance:
                    return "share_mismatch", f"states {stated:.0%} {what}, the mask has {truth:.0%}"
    return None


def check_caption(caption: str, scene: Scene, seen: set[str], limits: Limits,
                  *, sar: bool = True) -> tuple[str, str] | None:
    """Say why a caption must be rejected, or return ``None`` when it passes.

    Args:
        caption: The candidate.
        scene: The image's annotations.
        seen: Normalised captions already accepted for this image (duplicates are rejected).
        limits: Length limits and share tolerance.
        sar: Whether the image is SAR (then colour words are banned).

    Returns:
        ``(rule, reason)`` with rule one of ``empty``, ``too_short``, ``too_long``, ``duplicate``,
        ``colour_word``, ``count_mismatch``, ``region_without_box``, ``land_contradiction``,
        ``share_mismatch``; or ``None``.
    """
    words = caption.split()
    if not words:
        return "empty", "the caption is blank"
    if len(words) < limits.min_words:
        return "too_short", f"{len(words)} words, the minimum is {limits.min_words}"
    if len(words) > limits.max_words or len(caption) > limits.max_chars:
        return "too_long", f"{len(words)} words / {len(caption)} characters, limits {limits.max_words} / {limits.max_chars}"
    if normalise(caption) in seen:
        return "duplicate", "the same caption was already accepted for this image"
    if sar and (colours := colour_words(caption)):
        return "colour_word", f"uses the colour word {colours[0]!r}, which a SAR image cannot show"
    return _contradiction(caption, scene, limits)
