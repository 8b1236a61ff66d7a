"""Mask the KER keywords of captions at every sub-word token they became, with their labels.

iEBAKER's Keyword Explicit Reasoning replaces the caption words that are in the keyword
vocabulary by a mask token and trains a head to predict them. The reference code took the
positions of words in the whitespace-split sentence as token positions, which is off by the
start token and by every word BPE splits; here every token is mapped back to the characters it
came from, and a token is masked when its characters overlap a keyword word (a run of ASCII
letters, lower-cased, in the vocabulary: :func:`rsvl.data.ker_vocabulary.caption_words`).

Two open_clip tokenizers are supported:

- :class:`open_clip.tokenizer.HFTokenizer` with a fast Hugging Face tokenizer (the packaged
  MiniLM): character offsets come from the tokenizer itself; the mask is its ``mask_token_id``.
- :class:`open_clip.tokenizer.SimpleTokenizer` (CLIP BPE): each piece of its pre-tokenising
  pattern is encoded on its own (BPE never crosses pieces), which gives the offsets. CLIP has
  no mask token, so the mask is the last ordinary BPE token, id 49405 (``jekyll</w>``), the
  id just below ``<start_of_text>``. Why: it is a row of the pretrained token embedding (no
  resize, so the pretrained weights load unchanged); it is the last merge learned, so the rarest
  and nearly unused in remote-sensing captions; it is not padding (id 0, also the token ``!``);
  and it stays below ``<end_of_text>`` (49407), whose position open_clip's text tower finds with
  ``argmax`` over the ids to pool the sentence, so masking never moves the pooled position.
  The iEBAKER reference code makes the same choice (it drops that merge and puts its
  ``<|mask|>`` at id 49405).

The token ids are those the tokenizer returns for the captions (checked: a tokenizer whose
output the offsets do not reproduce is refused), truncated as it truncates: a keyword cut off
by the context, or whose last token CLIP replaced by ``<end_of_text>``, gets no label there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

from rsvl.errors import DataError, ModelError

IGNORE_INDEX = -100
"""Label of a token that is not part of a masked keyword (``torch.nn.CrossEntropyLoss``'s default)."""

_LETTERS = re.compile(r"[A-Za-z]+")

Span = tuple[int, int] | None
"""A token's characters in the cleaned caption, ``None`` for special and padding tokens."""


def mask_token_id(tokenizer: HFTokenizer | SimpleTokenizer) -> int:
    """Return the id a masked keyword token takes (see the module docstring for CLIP's).

    Args:
        tokenizer: An open_clip ``HFTokenizer`` (fast) or ``SimpleTokenizer``.

    Returns:
        The mask id.

    Raises:
        ModelError: The tokenizer is of another kind, or its Hugging Face tokenizer has no mask token.
    """
    if isinstance(tokenizer, HFTokenizer):
        mask = tokenizer.tokenizer.mask_token_id
        if mask is None:
            raise ModelError(f"{type(tokenizer.tokenizer).__name__} has no mask token; KER masking needs one")
        return int(mask)
    if isinstance(tokenizer, SimpleTokenizer):
        # the last ordinary BPE token: every id from min(special ids) on is special
        return min(tokenizer.all_special_ids) - 1
    raise ModelError(f"KER masking supports open_clip HFTokenizer and SimpleTokenizer, not {type(tokenizer).__name__}")


def _hf_spans(tokenizer: HFTokenizer, captions: list[str]) -> tuple[list[str], torch.Tensor, list[list[Span]]]:
    if tokenizer.tokenizer_mode == "clips" or not tokenizer.tokenizer.is_fast:
        raise ModelError("KER masking needs a fast Hugging Face tokenizer in standard mode (character offsets)")
    texts = [tokenizer.clean_fn(caption) for caption in captions]
    encoded = tokenizer.tokenizer(texts, return_tensors="pt", max_length=tokenizer.context_length,
                                  padding="max_length", truncation=True, return_offsets_mapping=True,
                                  return_special_tokens_mask=True)
    ids = encoded.input_ids
    if tokenizer.strip_sep_token:
        ids = torch.where(ids == tokenizer.tokenizer.sep_token_id, torch.zeros_like(ids), ids)
    spans = [[None if special else (int(start), int(end)) for (start, end), special in zip(offsets, specials)]
             for offsets, specials in zip(encoded.offset_mapping, encoded.special_tokens_mask)]
    return texts, ids, spans


def _clip_spans(tokenizer: SimpleTokenizer, captions: list[str]) -> tuple[list[str], torch.Tensor, list[list[Span]]]:
    if tokenizer.reduction_fn is not None:
        raise ModelError("KER masking needs a SimpleTokenizer that truncates (no reduction_fn)")
    length = tokenizer.context_length
    texts = [tokenizer.clean_fn(caption) for caption in captions]
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    spans: list[list[Span]] = []
    for row, text in enumerate(texts):
        tokens: list[int] = [tokenizer.sot_token_id]
        where: list[Span] = [None]
        # BPE works inside one piece of the pattern, so piece by piece gives the same ids
        for piece in tokenizer.pat.finditer(text):
            piece_ids = tokenizer.encode(piece.group())
            tokens += piece_ids
            where += [(piece.start(), piece.end())] * len(piece_ids)
        tokens.append(tokenizer.eot_token_id)
        where.append(None)
        if len(tokens) > length:
            tokens, where = tokens[:length], where[:length]
            tokens[-1], where[-1] = tokenizer.eot_token_id, None
        ids[row, :len(tokens)] = torch.tensor(tokens)
        spans.append(where + [None] * (length - len(where)))
    return texts, ids, spans


def _keyword_spans(text: str, index: dict[str, int]) -> list[tuple[int, int, int]]:
    """The keyword words of a cleaned caption: ``(start, end, vocabulary index)`` in text order."""
    return [(match.start(), match.end(), index[match.group().lower()])
            for match in _LETTERS.finditer(text) if match.group().lower() in index]


def _vocabulary_index(vocabulary: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, word in enumerate(vocabulary):
        if not (word.isascii() and word.isalpha() and word.islower()):
            raise DataError(f"KER vocabulary word {word!r} at index {position} is not a lower-case ASCII word, "
                            f"so it could never match a caption word (rule: ker_word)")
        if word in index:
            raise DataError(f"KER vocabulary word {word!r} is at index {index[word]} and {position}; "
                            f"a label must name one word (rule: ker_unique)")
        index[word] = position
    return index


def mask_keywords(
    tokenizer: HFTokenizer | SimpleTokenizer, captions: list[str], vocabulary: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize captions with their KER keywords masked, and label every masked token.

    Args:
        tokenizer: The model's open_clip tokenizer (``HFTokenizer`` with a fast tokenizer, or
            ``SimpleTokenizer``); its ``context_length`` sets the width.
        captions: Caption texts.
        vocabulary: The keywords (lower-case ASCII words, unique); a label is a word's index here.

    Returns:
        ``(ids, labels)``, both ``(len(captions), context_length)`` long tensors: ``ids`` are
        ``tokenizer(captions)`` with every token of a keyword word replaced by
        :func:`mask_token_id`; ``labels`` hold that keyword's vocabulary index at those tokens and
        :data:`IGNORE_INDEX` everywhere else (all of a caption without keywords).

    Raises:
        ModelError: Unsupported tokenizer, or one whose output the offsets do not reproduce.
        DataError: A vocabulary word is repeated or is not a lower-case ASCII word.
    """
    index = _vocabulary_index(vocabulary)
    mask = mask_token_id(tokenizer)
    captions = list(captions)
    if not captions:
        empty = torch.zeros(0, tokenizer.context_length, dtype=torch.long)
        return empty, empty.clone()
    if isinstance(tokenizer, HFTokenizer):
        texts, ids, spans = _hf_spans(tokenizer, captions)
    else:
        texts, ids, spans = _clip_spans(tokenizer, captions)
    expected = tokenizer(captions)
    if not torch.equal(ids, expected):
        row = int((ids != expected).any(dim=1).nonzero()[0])
        raise ModelError(f"{type(tokenizer).__name__}: the offsets do not reproduce the tokenizer's ids for "
                         f"caption {row} {captions[row]!r}; KER masking cannot place its labels")
    labels = torch.full_like(ids, IGNORE_INDEX)
    for row, (text, token_spans) in enumerate(zip(texts, spans)):
        keywords = _keyword_spans(text, index)
        if not keywords:
            continue
        for position, span in enumerate(token_spans):
            if span is None or span[0] == span[1]:
                continue
            # a token belongs to the first keyword its characters overlap
            label = next((word for start, end, word in keywords if start < span[1] and span[0] < end), None)
            if label is not None:
                labels[row, position] = label
    masked = torch.where(labels != IGNORE_INDEX, torch.full_like(ids, mask), ids)
    return masked, labels
