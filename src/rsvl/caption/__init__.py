"""SAR-Narrator: captions for SAR images from boxes (A2C), masks (SA2C) and optical captions.

Three stages per image (:func:`narrate`): draft, rewrite/diversify through a pluggable
:class:`Rewriter` (rule-based by default, or an OpenAI-compatible chat endpoint), and a quality
filter that rejects, with a reason, captions that are too short or long, repeated, use colour
words, or contradict the annotations. :func:`caption_dataset` applies it to a canonical dataset.
"""

from rsvl.config.caption import CaptionConfig, ChatEndpoint
from rsvl.caption.dataset import (
    optical_captions_path,
    PROVENANCE_FILE,
    REJECTED_FILE,
    CaptionReport,
    caption_dataset,
    read_provenance,
    read_rejected,
)
from rsvl.caption.narrate import ROUTES, Caption, Narration, Rejected, narrate
from rsvl.caption.rewrite import ChatRewriter, Rewriter, RewriterError, RuleRewriter, load_prompt
from rsvl.caption.scene import Scene

__all__ = [
    "optical_captions_path",
    "PROVENANCE_FILE", "REJECTED_FILE", "ROUTES", "Caption", "CaptionConfig", "CaptionReport", "ChatEndpoint",
    "ChatRewriter", "Narration", "Rejected", "Rewriter", "RewriterError", "RuleRewriter", "Scene",
    "caption_dataset", "load_prompt", "narrate", "read_provenance", "read_rejected",
]
