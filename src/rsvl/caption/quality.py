"""The quality filter: length, duplicates, colour words and contradictions with the annotations.

Each check returns a rule name and a sentence, so a rejected caption is kept with the reason it
failed instead of disappearing. Contradictions are checked only against what is annotated: counts
when boxes are known, regions against box centres, land words and shares against a sea/land mask,
and the size and arrangement words of the A2C route against the boxes, measured by the same
functions that drafted them (:func:`~rsvl.caption.geometry.box_sizes`,
:func:`~rsvl.caption.geometry.spread`, :func:`~rsvl.caption.geometry.near_land`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rsvl.caption.geometry import REGIONS, SIZES, box_centre, box_sizes, near_land, spread
from rsvl.data.synthetic import third_of
from rsvl.caption.numbers import NUMBER_PATTERN, words_to_number
from rsvl.caption.rewrite import colour_words
from rsvl.caption.scene import Scene
from rsvl.caption.words import join_words, normalise, noun_forms, plural_noun
from rsvl.config.caption import CaptionConfig

_ADJECTIVES = r"(?:(?:small|medium|medium-sized|large|big|tiny|bright|moored|cargo|fishing|more|other)\s+){0,2}"
_REGION = re.compile(r"\b(" + "|".join(REGIONS) + r")\b", re.IGNORECASE)
_SHARE_PATTERNS = (
    re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*%\s+(?:of the (?:scene|image)\s+)?is\s+(?P<what>land|sea|water)\b", re.I),
    re.compile(r"\b(?P<what>land|sea|water)\s+(?:covers?|makes? up|occupies)\s+(?:about\s+)?(?P<number>\d+(?:\.\d+)?)\s*%", re.I),
)
_LAND_WORDS = re.compile(r"\b(?:moored|quay|coast|coastal|coastline|harbou?r|pier|land)\b", re.IGNORECASE)
_NO_LAND = re.compile(r"\b(?:no land|open sea|open water)\b", re.IGNORECASE)
_SIZE_OF = {"small": "small", "tiny": "small", "medium": "medium", "medium-sized": "medium", "large": "large",
            "big": "large"}
_SIZE = r"(?:medium-sized|small|tiny|medium|large|big)"
_SIZE_RUN = rf"{_SIZE}(?:(?:\s*,\s*|\s+and\s+|\s+or\s+){_SIZE})*"
_SIZE_AFTER = re.compile(rf"\ball\s+({_SIZE})\b|\b({_SIZE})\s+in\s+size\b|\bof\s+({_SIZE_RUN})\s+sizes?\b",
                         re.IGNORECASE)
_SPREAD_CLAIMS = (
    ("in a line", re.compile(r"\b(?:lined up in a row|in a line|in a row)\b", re.IGNORECASE)),
    ("clustered", re.compile(r"\b(?:clustered(?: together)?|close together)\b", re.IGNORECASE)),
    ("scattered", re.compile(r"\b(?:scattered|far apart)\b", re.IGNORECASE)),
)
_SOME_MOORED = re.compile(rf"\b({NUMBER_PATTERN})\s*of them moored\b", re.IGNORECASE)
_ALL_MOORED = re.compile(r"\b(?:moored along the quay|moored|along the quay)\b", re.IGNORECASE)
_NONE_MOORED = re.compile(r"\b(?:away from the coast|at sea)\b", re.IGNORECASE)
_DEFAULTS = CaptionConfig.model_fields


@dataclass(frozen=True)
class Limits:
    """Length limits, the tolerance on stated shares, and the box size and mooring rules of A2C."""

    min_words: int = 3
    max_words: int = 60
    max_chars: int = 400
    share_tolerance: float = 0.05
    size_thresholds: tuple[float, float] = (_DEFAULTS["size_medium"].default, _DEFAULTS["size_large"].default)
    land_margin_px: int = _DEFAULTS["land_margin_px"].default

    @classmethod
    def of(cls, config: CaptionConfig) -> "Limits":
        """Return the limits, size thresholds and mooring margin a caption config sets."""
        return cls(config.min_words, config.max_words, config.max_chars, config.share_tolerance,
                   (config.size_medium, config.size_large), config.land_margin_px)


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


def _sizes_in(words: str) -> set[str]:
    return {_SIZE_OF[w.lower()] for w in re.findall(_SIZE, words, re.IGNORECASE)}


def stated_sizes(caption: str, label: str) -> list[set[str]]:
    """Every set of sizes the caption gives boxes of ``label`` ("small and medium ships", "all large").

    Args:
        caption: One clause about ``label`` (a size word after the noun is read as its size).
        label: A box class (its synonyms and plurals count too).

    Returns:
        One set of size words (``small``, ``medium``, ``large``) per claim, in order of appearance.
    """
    nouns = "|".join(sorted(noun_forms(label), key=len, reverse=True))
    before = re.compile(rf"\b({_SIZE_RUN})\s+(?:(?:bright|moored|cargo|fishing|other)\s+)?(?:{nouns})\b",
                        re.IGNORECASE)
    claims = [(m.start(), _sizes_in(m.group(1))) for m in before.finditer(caption)]
    claims += [(m.start(), _sizes_in(m.group(0))) for m in _SIZE_AFTER.finditer(caption)]
    return [sizes for _, sizes in sorted(claims, key=lambda claim: claim[0])]


def _size_mismatch(clause: str, label: str, boxes: list[dict], scene: Scene, limits: Limits) -> tuple[str, str] | None:
    truth = box_sizes(boxes, scene.width, scene.height, limits.size_thresholds)
    for claim in stated_sizes(clause, label):
        if claim != set(truth):
            medium, large = limits.size_thresholds
            return "size_mismatch", (
                f"states {join_words([w for w in SIZES if w in claim])} {label}(s), the boxes hold "
                f"{join_words([f'{truth[w]} {w}' for w in SIZES if w in truth])} "
                f"(medium from {medium:.2%} of the chip, large from {large:.2%})")
    return None


def _spread_mismatch(clause: str, boxes: list[dict], scene: Scene) -> tuple[str, str] | None:
    truth = spread(boxes, scene.width, scene.height) if len(boxes) > 1 else "a single box"
    for kind, pattern in _SPREAD_CLAIMS:
        if (claim := pattern.search(clause)) and kind != truth:
            return "arrangement_mismatch", f"states {claim.group(0)!r}, the boxes are {truth}"
    return None


def _mooring_mismatch(clause: str, label: str, boxes: list[dict], scene: Scene,
                      limits: Limits) -> tuple[str, str] | None:
    land = scene.land
    if land is None or not land.any():
        return None
    if some := _SOME_MOORED.search(clause):
        claim, stated = some, words_to_number(some.group(1))
    elif claim := _ALL_MOORED.search(clause):
        stated = len(boxes)
    elif claim := _NONE_MOORED.search(clause):
        stated = 0
    else:
        return None
    truth = sum(near_land(box, land, limits.land_margin_px) for box in boxes)
    if stated == truth:
        return None
    return "arrangement_mismatch", (
        f"states {claim.group(0).strip()!r} ({stated} of {len(boxes)} {label}(s) moored), the boxes put "
        f"{truth} within {limits.land_margin_px} px of land")


def _mentions(clause: str, nouns: set[str]) -> bool:
    return bool(re.search(rf"\b(?:{'|'.join(map(re.escape, sorted(nouns)))})\b", clause, re.IGNORECASE))


def _labels_in(clause: str, labels: list[str]) -> list[str]:
    named = [label for label in labels if _mentions(clause, {label.lower(), plural_noun(label.lower())})]
    return named or [label for label in labels if _mentions(clause, noun_forms(label))]


def _claim_mismatch(caption: str, scene: Scene, limits: Limits) -> tuple[str, str] | None:
    by_label: dict[str, list[dict]] = {}
    for box in scene.boxes:
        by_label.setdefault(box["label"], []).append(box)
    for clause in re.split(r";|\.(?!\d)", caption):
        for label in _labels_in(clause, sorted(by_label)):
            boxes = by_label[label]
            problem = (_size_mismatch(clause, label, boxes, scene, limits) or _spread_mismatch(clause, boxes, scene)
                       or _mooring_mismatch(clause, label, boxes, scene, limits))
            if problem:
                return problem
    return None


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
    return _claim_mismatch(caption, scene, limits) if scene.boxes_known else None


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
        ``share_mismatch``, ``size_mismatch``, ``arrangement_mismatch``; or ``None``.
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
