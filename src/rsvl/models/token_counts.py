"""How many tokens a text takes in a model's tokenizer, before the tokenizer cuts it at its context.

open_clip's tokenizers pad or cut every text to ``context_length`` (77 for CLIP, 248 after
LRSCLIP's stretching). These functions count the tokens a text *would* take, with the start and end
tokens, so a fit can say how many of its captions are cut (:func:`overlong`) and caption
statistics can be read in tokens.
"""

from __future__ import annotations

from typing import Any, Sequence

from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

from rsvl.errors import ModelError


def token_lengths(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Untruncated token counts of ``texts``, start and end tokens included.

    Args:
        tokenizer: An open_clip ``SimpleTokenizer`` (CLIP's BPE) or ``HFTokenizer`` (a Hugging Face one).
        texts: The strings.

    Returns:
        One count per text, as the tokenizer would write it with no context limit.

    Raises:
        ModelError: Another kind of tokenizer.
    """
    if isinstance(tokenizer, SimpleTokenizer):
        return [len(tokenizer.encode(text)) + 2 for text in texts]  # + start-of-text and end-of-text
    if isinstance(tokenizer, HFTokenizer):
        cleaned = [tokenizer.clean_fn(text) for text in texts]
        return [len(ids) for ids in tokenizer.tokenizer(cleaned, truncation=False)["input_ids"]]
    raise ModelError(f"cannot count tokens of a {type(tokenizer).__name__}; expected open_clip's SimpleTokenizer "
                     "or HFTokenizer")


def context_length(tokenizer: Any) -> int:
    """The number of tokens the tokenizer keeps (and pads to).

    Raises:
        ModelError: The tokenizer has no context length.
    """
    length = getattr(tokenizer, "context_length", None)
    if not length:
        raise ModelError(f"{type(tokenizer).__name__} has no context_length")
    return int(length)


def overlong(tokenizer: Any, texts: Sequence[str]) -> int:
    """How many of ``texts`` are longer than the tokenizer's context (and so cut).

    Args:
        tokenizer: As for :func:`token_lengths`.
        texts: The strings.
    """
    limit = context_length(tokenizer)
    return sum(length > limit for length in token_lengths(tokenizer, texts))
