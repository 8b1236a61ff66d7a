"""SAR-Narrator for one image: draft (A2C, SA2C, optical) -> rewrite/diversify -> quality filter.

Every caption that leaves this module says which route drafted it and which rewriter wrote its
final wording; rejected candidates come back with the rule they broke.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rsvl.caption.a2c import draft_a2c
from rsvl.config.caption import CaptionConfig
from rsvl.caption.quality import Limits, check_caption, normalise
from rsvl.caption.rewrite import Rewriter, RuleRewriter
from rsvl.caption.sa2c import draft_sa2c
from rsvl.caption.scene import Scene

ROUTES = ("a2c", "sa2c", "optical")
TEMPLATE = "rule"
"""Rewriter name of captions worded by the drafting templates themselves."""


@dataclass(frozen=True)
class Caption:
    """An accepted caption and its provenance."""

    text: str
    route: str
    rewriter: str


@dataclass(frozen=True)
class Rejected:
    """A candidate the quality filter refused, with the rule and a sentence saying why."""

    text: str
    route: str
    rewriter: str
    rule: str
    reason: str


@dataclass
class Narration:
    """What SAR-Narrator made of one image."""

    accepted: list[Caption] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """The accepted caption texts, in order."""
        return [caption.text for caption in self.accepted]


def draft(scene: Scene, config: CaptionConfig, optical_captions: list[str] = ()) -> list[tuple[str, str]]:
    """Stage 1: draft ``(route, text)`` candidates from boxes, mask and optical captions.

    Args:
        scene: The image's annotations.
        config: Counts per route, seed and size thresholds.
        optical_captions: Captions of a co-registered optical image, if any.
    """
    thresholds = (config.size_medium, config.size_large)
    drafts = [("a2c", text) for text in draft_a2c(scene, count=config.a2c_captions, seed=config.seed,
                                                  thresholds=thresholds, land_margin_px=config.land_margin_px)]
    drafts += [("sa2c", text) for text in draft_sa2c(scene, count=config.sa2c_captions, seed=config.seed)]
    drafts += [("optical", text) for text in optical_captions]
    return drafts


def _diversify(text: str, rewriter: Rewriter, taken: set[str], seed: int) -> tuple[str, str]:
    diversify = getattr(rewriter, "diversify", None)
    wordings = diversify(text, seed=seed) if diversify else [rewriter.rewrite(text)]
    for wording in wordings:
        if normalise(wording) not in taken:
            return wording, rewriter.name
    fallback = RuleRewriter()
    return fallback.rewrite(text), fallback.name


def rewrite(drafts: list[tuple[str, str]], rewriter: Rewriter, *, rewrite_drafts: bool, seed: int = 0,
            existing: list[str] = ()) -> list[tuple[str, str, str]]:
    """Stage 2: reword candidates for SAR; ``(route, text, rewriter name)``.

    Optical captions are always rewritten (they speak of colours a SAR image lacks); A2C/SA2C
    drafts are already SAR wording and are diversified only when ``rewrite_drafts`` asks for more
    varied language: the rewriter offers several wordings (a chat model samples them) and the first
    one not yet used for the image is kept; when every wording repeats an earlier caption, the
    rule rewriter's wording is used instead.

    Args:
        drafts: Stage-1 output.
        rewriter: The backend.
        rewrite_drafts: Also diversify A2C/SA2C drafts.
        seed: Sampling seed of the first diversified draft (the next ones count up from it).
        existing: Captions the image already has.
    """
    out = []
    taken = {normalise(text) for text in existing}
    for index, (route, text) in enumerate(drafts):
        if route == "optical":
            out.append((route, rewriter.rewrite(text), rewriter.name))
        elif rewrite_drafts:
            out.append((route, *_diversify(text, rewriter, taken, seed + index)))
        else:
            out.append((route, text, TEMPLATE))
        taken.add(normalise(out[-1][1]))
    return out


def narrate(scene: Scene, config: CaptionConfig, *, rewriter: Rewriter | None = None,
            optical_captions: list[str] = (), existing: list[str] = ()) -> Narration:
    """Caption one image through all three stages.

    Args:
        scene: The image's annotations.
        config: Caption settings.
        rewriter: Backend for stage 2 (default: :class:`~rsvl.caption.rewrite.RuleRewriter`).
        optical_captions: Captions of a co-registered optical image (optical route).
        existing: Captions the image already has; new ones repeating them are duplicates.

    Returns:
        Accepted captions with route and rewriter, and rejected ones with their reasons.
    """
    rewriter = rewriter or RuleRewriter()
    limits = Limits.of(config)
    seen = {normalise(text) for text in existing}
    result = Narration()
    candidates = rewrite(draft(scene, config, list(optical_captions)), rewriter,
                         rewrite_drafts=config.rewrite_drafts, seed=config.seed, existing=list(existing))
    for route, text, wrote in candidates:
        problem = check_caption(text, scene, seen, limits)
        if problem:
            result.rejected.append(Rejected(text, route, wrote, *problem))
            continue
        seen.add(normalise(text))
        result.accepted.append(Caption(text, route, wrote))
    return result
