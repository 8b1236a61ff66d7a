"""Untruncated token counts of texts under open_clip's tokenizers, and how many overflow a context.

open_clip's tokenizers return fixed-width id tensors, truncated to their ``context_length``: how
long a text really is cannot be read off them. :func:`token_lengths` counts the tokens a text
would take with no context limit, special tokens included, exactly as each tokenizer builds its
sequence (open_clip 3.3, ``open_clip/tokenizer.py``):

* :class:`open_clip.tokenizer.SimpleTokenizer` (CLIP BPE): start + ``encode(text)`` + end, where
  ``encode`` applies the tokenizer's own text cleaning;
* :class:`open_clip.tokenizer.HFTokenizer` (Hugging Face, e.g. MiniLM WordPiece) in its standard
  mode: the text cleaned with the wrapper's ``clean_fn``, then the Hugging Face tokenizer's ids with
  its special tokens (``[CLS] ... [SEP]`` for BERT-style models). Its ``clips`` mode, used by no
  rsvl architecture, is refused.

A text fits a context of ``n`` when its count is at most ``n``; a longer one is truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import open_clip
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

from rsvl.errors import ModelError


def token_lengths(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Count each text's tokens without truncation, start/end (and other special) tokens included.

    Args:
        tokenizer: An open_clip ``SimpleTokenizer`` or ``HFTokenizer``.
        texts: The texts.

    Returns:
        One count per text, in order.

    Raises:
        ModelError: The tokenizer is of another kind, or an ``HFTokenizer`` in ``clips`` mode.
    """
    texts = list(texts)
    if isinstance(tokenizer, SimpleTokenizer):
        return [len(tokenizer.encode(text)) + 2 for text in texts]
    if isinstance(tokenizer, HFTokenizer):
        if tokenizer.tokenizer_mode:
            raise ModelError(f"cannot count tokens of an HFTokenizer in {tokenizer.tokenizer_mode!r} mode")
        if not texts:
            return []
        cleaned = [tokenizer.clean_fn(text) for text in texts]
        encoded = tokenizer.tokenizer(cleaned, add_special_tokens=True, truncation=False, verbose=False)
        # verbose=False: no warning for texts longer than the model's maximum, which is what we measure
        return [len(ids) for ids in encoded["input_ids"]]
    raise ModelError(f"cannot count tokens of a {type(tokenizer).__name__}: "
                     "only open_clip's SimpleTokenizer and HFTokenizer are supported")


def context_length(tokenizer: Any) -> int:
    """The number of token positions the tokenizer fills (its output width).

    Args:
        tokenizer: An open_clip tokenizer.

    Returns:
        ``tokenizer.context_length``.

    Raises:
        ModelError: The tokenizer has no positive integer context length.
    """
    length = getattr(tokenizer, "context_length", None)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ModelError(f"{type(tokenizer).__name__} has no context length (got {length!r})")
    return length


def overlong(tokenizer: Any, texts: Sequence[str]) -> int:
    """Count the texts longer than the tokenizer's context (the ones it truncates).

    Args:
        tokenizer: An open_clip ``SimpleTokenizer`` or ``HFTokenizer``.
        texts: The texts.

    Returns:
        How many of ``texts`` have more than :func:`context_length` tokens (:func:`token_lengths`).
    """
    limit = context_length(tokenizer)
    return sum(length > limit for length in token_lengths(tokenizer, texts))


def tokenizer_by_name(name: str) -> Any:
    """The open_clip tokenizer of an architecture: an rsvl config or an open_clip built-in.

    ``open_clip.get_tokenizer`` falls back to CLIP's BPE for a name it does not know; this refuses
    such a name instead, so a typo cannot measure the wrong tokenizer.

    Args:
        name: ``ViT-B-32``, ``rsvl-effnetlite0-minilm`` or any registered architecture.

    Returns:
        The tokenizer.

    Raises:
        ModelError: No architecture of that name.
    """
    from rsvl.models.architectures import get_architecture

    get_architecture(name)  # raises for a name that is neither; registers the rsvl configs with open_clip
    return open_clip.get_tokenizer(name)
