"""First sentences of long captions, long-text proxies of human captions, and token counts."""

from __future__ import annotations

import open_clip
import pytest

import rsvl.models  # noqa: F401  (registers the packaged architectures with open_clip)
from rsvl.data.long_text import first_sentence, long_text_proxy, sentences
from rsvl.errors import ModelError
from rsvl.models.token_counts import context_length, overlong, token_lengths


@pytest.mark.parametrize(("text", "first"), [
    ("A harbour with 3 ships. The ships are moored along the quay.", "A harbour with 3 ships."),
    ("Is it a lake? Yes, a calm one.", "Is it a lake?"),
    ("many planes are parked next to a terminal", "many planes are parked next to a terminal"),
    ("  a road runs from 2.5 km away. 4 cars park.  ", "a road runs from 2.5 km away."),
    ("houses, e.g. small ones. Trees too.", "houses, e.g. small ones."),
    ("   ", ""),
])
def test_first_sentence_ends_at_an_end_mark_before_a_capital_or_digit(text, first):
    assert first_sentence(text) == first


def test_sentences_split_every_boundary():
    assert sentences("One. Two! Three? 4 more.") == ["One.", "Two!", "Three?", "4 more."]


def test_a_proxy_joins_the_distinct_captions_in_first_seen_order():
    captions = ["many planes are parked", "Many  planes are parked.", "a runway beside the terminal!", " ",
                "MANY PLANES ARE PARKED", "green trees"]
    assert long_text_proxy(captions) == "Many planes are parked. A runway beside the terminal! Green trees."
    assert long_text_proxy(["", "  "]) == ""


@pytest.mark.parametrize("name", ["ViT-B-32", "rsvl-effnetlite0-minilm-77", "rsvl-effnetlite0-minilm-kps248"])
def test_token_counts_are_what_the_tokenizer_writes_without_a_limit(name):
    tokenizer = open_clip.get_tokenizer(name)
    limit = context_length(tokenizer)
    texts = ["a red house near two grey roads.", "word " * (limit + 30), "word " * (limit - 10)]
    lengths = token_lengths(tokenizer, texts)
    written = [int((row != 0).sum()) for row in tokenizer(texts)]  # pad id 0 in both tokenizers
    # a text within the context is written whole; a longer one is cut to exactly the context
    assert lengths[0] == written[0] and lengths[2] == written[2] == limit - 8
    assert lengths[1] == limit + 32 and written[1] == limit
    assert overlong(tokenizer, texts) == 1


def test_an_unknown_tokenizer_is_refused():
    with pytest.raises(ModelError, match="cannot count tokens of a function"):
        token_lengths(lambda texts: texts, ["a"])
