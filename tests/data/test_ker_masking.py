"""KER keyword masking with both open_clip tokenizers, against a word-by-word re-tokenisation.

The reference tokenizes every whitespace-separated word on its own (``SimpleTokenizer.encode``,
the Hugging Face ``tokenize``), labels all of a word's pieces with its vocabulary index when the
word is a keyword, adds the special tokens and truncates as each tokenizer does. It never looks
at character offsets, so it checks the offset mapping of :func:`mask_keywords` independently.
Captions here are words of letters and words without letters, as the reference needs.
"""

from __future__ import annotations

import csv

import open_clip
import pytest
import torch

from rsvl.data.ker_masking import IGNORE_INDEX, mask_keywords, mask_token_id
from rsvl.data.ker_vocabulary import default_vocabulary
from rsvl.errors import DataError, ModelError

VOCAB = ["baseballfield", "green", "many", "near", "storagetanks", "viaduct"]
CAPTIONS = [
    "Many storagetanks are near a baseballfield .",
    "a Viaduct crosses the GREEN river , 2 lanes",
    "nothing of the kind here",
    "",
]


@pytest.fixture(scope="module")
def clip():
    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def minilm():
    from rsvl.models import build_model

    return build_model("rsvl-effnetlite0-minilm", "packaged", 3, None, image_size=64)[3]


@pytest.fixture(scope="module", params=["clip", "minilm"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def reference(tokenizer, caption: str, vocabulary: list[str]) -> tuple[list[int], list[int]]:
    """Masked ids and labels of one caption, word by word (see the module docstring)."""
    index = {word: position for position, word in enumerate(vocabulary)}
    length = tokenizer.context_length
    ids: list[int] = []
    labels: list[int] = []
    for word in caption.split():
        if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
            pieces = tokenizer.encode(word)
        else:
            pieces = tokenizer.tokenizer.convert_tokens_to_ids(tokenizer.tokenizer.tokenize(word))
        ids += pieces
        labels += [index.get(word.lower(), IGNORE_INDEX)] * len(pieces)
    if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        ids, labels = [tokenizer.sot_token_id] + ids + [tokenizer.eot_token_id], [IGNORE_INDEX] + labels + [IGNORE_INDEX]
        if len(ids) > length:  # CLIP cuts and writes <end_of_text> over the last kept token
            ids, labels = ids[:length - 1] + [tokenizer.eot_token_id], labels[:length - 1] + [IGNORE_INDEX]
    else:  # BERT keeps room for [SEP]
        hf = tokenizer.tokenizer
        ids = [hf.cls_token_id] + ids[:length - 2] + [hf.sep_token_id]
        labels = [IGNORE_INDEX] + labels[:length - 2] + [IGNORE_INDEX]
    pad = length - len(ids)
    masked = [mask_token_id(tokenizer) if label != IGNORE_INDEX else token for token, label in zip(ids, labels)]
    return masked + [0] * pad, labels + [IGNORE_INDEX] * pad


def check_against_reference(tokenizer, captions: list[str], vocabulary: list[str]) -> torch.Tensor:
    ids, labels = mask_keywords(tokenizer, captions, vocabulary)
    assert ids.shape == labels.shape == (len(captions), tokenizer.context_length)
    assert ids.dtype == labels.dtype == torch.long
    plain = tokenizer(captions)
    for row, caption in enumerate(captions):
        want_ids, want_labels = reference(tokenizer, caption, vocabulary)
        assert labels[row].tolist() == want_labels, caption
        assert ids[row].tolist() == want_ids, caption
        # the reference itself reproduces the tokenizer where nothing is masked
        keep = labels[row] == IGNORE_INDEX
        assert torch.equal(ids[row][keep], plain[row][keep])
    return labels


def pieces(tokenizer, word: str) -> int:
    """How many tokens a word becomes on its own."""
    if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        return len(tokenizer.encode(word))
    return len(tokenizer.tokenizer.tokenize(word))


def test_exactly_the_keyword_sub_tokens_are_masked_and_labelled(tokenizer):
    labels = check_against_reference(tokenizer, CAPTIONS, VOCAB)
    # a keyword of several pieces carries its index at every piece
    assert pieces(tokenizer, "storagetanks") >= 3
    assert int((labels[0] == VOCAB.index("storagetanks")).sum()) == pieces(tokenizer, "storagetanks")
    assert (labels[2] == IGNORE_INDEX).all() and (labels[3] == IGNORE_INDEX).all()


def test_a_caption_without_keywords_is_the_plain_tokenization(tokenizer):
    ids, labels = mask_keywords(tokenizer, ["nothing of the kind here"], VOCAB)
    assert torch.equal(ids, tokenizer(["nothing of the kind here"])) and (labels == IGNORE_INDEX).all()


def test_truncation_drops_the_labels_past_the_context(tokenizer):
    length = tokenizer.context_length
    # [start] river x (length - 4) puts the 3+ pieces of storagetanks at length - 3 onwards: two of
    # them fit before the end slot ([SEP] or <end_of_text>), the rest and "near" are cut
    assert pieces(tokenizer, "river") == 1 and pieces(tokenizer, "storagetanks") >= 3
    caption = " ".join(["river"] * (length - 4)) + " storagetanks near"
    labels = check_against_reference(tokenizer, [caption], VOCAB)[0]
    keyword = VOCAB.index("storagetanks")
    assert labels[length - 3:].tolist() == [keyword, keyword, IGNORE_INDEX]
    assert VOCAB.index("near") not in labels.tolist()


def test_clip_masks_with_the_last_bpe_token_and_keeps_the_pooled_position(clip):
    mask = mask_token_id(clip)
    assert mask == 49405 and clip.decoder[mask] == "jekyll</w>"
    assert mask < min(clip.sot_token_id, clip.eot_token_id) and clip.encode("airport") != [mask]
    ids, _ = mask_keywords(clip, CAPTIONS, VOCAB)
    # open_clip pools the text at the argmax id, <end_of_text>: masking must not move it
    assert torch.equal(ids.argmax(dim=1), clip(CAPTIONS).argmax(dim=1))


def test_minilm_masks_with_its_mask_token(minilm):
    mask = mask_token_id(minilm)
    assert minilm.tokenizer.convert_ids_to_tokens(mask) == "[MASK]"
    ids, labels = mask_keywords(minilm, ["many viaducts"], VOCAB)
    assert ids[0, 1] == mask and labels[0, 1] == VOCAB.index("many")
    assert labels[0, 2:].eq(IGNORE_INDEX).all()  # "viaducts" is not the keyword "viaduct"


def test_no_caption_gives_empty_tensors(clip):
    ids, labels = mask_keywords(clip, [], VOCAB)
    assert ids.shape == labels.shape == (0, 77)


@pytest.mark.parametrize(("vocabulary", "message"), [
    (["green", "green"], r"'green' is at index 0 and 1.*ker_unique"),
    (["green", "Roof"], r"'Roof' at index 1 is not a lower-case ASCII word.*ker_word"),
    (["u-shaped"], r"'u-shaped' at index 0"),
])
def test_vocabulary_words_must_be_unique_lower_case_words(clip, vocabulary, message):
    with pytest.raises(DataError, match=message):
        mask_keywords(clip, CAPTIONS, vocabulary)


def test_other_tokenizers_are_refused():
    with pytest.raises(ModelError, match="HFTokenizer and SimpleTokenizer, not str"):
        mask_keywords("not a tokenizer", CAPTIONS, VOCAB)


@pytest.mark.real_data
def test_real_rsicd_test_captions_with_the_packaged_vocabulary(shared_data, tokenizer):
    path = shared_data / "captions_text" / "iEBAKER_test_csv" / "rsicd_test.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        titles = [row["title"] for row in csv.DictReader(handle)]
    # the reference needs words that are all letters or have none ("u-shaped" mixes them)
    simple = [t for t in titles if all(w.isalpha() or not any(c.isalpha() for c in w) for w in t.split())]
    assert len(simple) > len(titles) // 2
    vocabulary = default_vocabulary()
    labels = check_against_reference(tokenizer, simple[::5], vocabulary)
    assert (labels != IGNORE_INDEX).any(dim=1).all()  # every RSICD caption has a keyword
