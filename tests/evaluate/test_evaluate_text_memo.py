"""Text embeddings shared by models with the same text weights: encoded once, identical to encoding again."""

from __future__ import annotations

import torch

from rsvl.evaluate import embedding
from rsvl.evaluate.embedding import embed_texts, text_weights_digest
from rsvl.models import build_model

TEXTS = ["a ship at sea", "two boats moored at a quay", "a harbour with cranes", "open water", "a bridge"]


def tiny(seed: int):
    torch.manual_seed(seed)
    model, _, _, tokenizer = build_model("rsvl-tiny", None, 3, None)
    return model.eval(), tokenizer


class Counted:
    """Counts the texts a model's own ``encode_text`` is asked to encode."""

    def __init__(self, model) -> None:
        self.encode, self.rows = model.encode_text, 0
        model.encode_text = self

    def __call__(self, tokens, normalize: bool = False):
        self.rows += tokens.shape[0]
        return self.encode(tokens, normalize=normalize)


def test_a_second_model_with_the_same_text_weights_reuses_the_embeddings_exactly():
    embedding._TEXT_MEMO.clear()
    first, tokenizer = tiny(0)
    second, _ = tiny(1)
    second.load_state_dict({k: v for k, v in first.state_dict().items() if not k.startswith("visual.")},
                           strict=False)  # same text tower, another image tower
    assert text_weights_digest(first) == text_weights_digest(second)
    assert not torch.equal(first.visual.conv1.weight, second.visual.conv1.weight)
    counted_first, counted_second = Counted(first), Counted(second)
    with torch.no_grad():
        once = embed_texts(first, tokenizer, TEXTS, batch_size=2)
        reused = embed_texts(second, tokenizer, TEXTS, batch_size=2)
        embedding._TEXT_MEMO.clear()
        fresh = embed_texts(second, tokenizer, TEXTS, batch_size=2)
    assert counted_first.rows == 5 and counted_second.rows == 5  # the second model encoded only after the clear
    assert torch.equal(once, reused) and torch.equal(reused, fresh)


def test_other_text_weights_other_tokens_or_training_mode_are_encoded_again():
    embedding._TEXT_MEMO.clear()
    model, tokenizer = tiny(0)
    other, _ = tiny(1)  # another text tower
    before = text_weights_digest(model)
    assert before != text_weights_digest(other)
    counted, counted_other = Counted(model), Counted(other)
    with torch.no_grad():
        mine = embed_texts(model, tokenizer, TEXTS)
        theirs = embed_texts(other, tokenizer, TEXTS)
        embed_texts(model, tokenizer, TEXTS[:4])  # another batch of tokens: not in memory
    assert counted.rows == 5 + 4 and counted_other.rows == 5 and not torch.equal(mine, theirs)
    model.train()
    assert text_weights_digest(model) is None
    with torch.no_grad():
        embed_texts(model, tokenizer, TEXTS)
    assert counted.rows == 5 + 4 + 5
    kept = model.token_embedding.weight[0, 0].item()
    with torch.no_grad():
        model.token_embedding.weight[0, 0] += 1.0  # an edited weight is another digest
    model.eval()
    assert text_weights_digest(model) != before
    model.visual.conv1.weight.data += 1.0  # the image tower is not part of it
    with torch.no_grad():
        model.token_embedding.weight[0, 0] = kept
    assert text_weights_digest(model) == before


def test_reuse_holds_when_the_caller_has_gradients_on():
    # evaluate_model calls embed_texts without a no_grad block of its own: the memo must still hit
    embedding._TEXT_MEMO.clear()
    first, tokenizer = tiny(0)
    second, _ = tiny(1)
    second.load_state_dict({k: v for k, v in first.state_dict().items() if not k.startswith("visual.")},
                           strict=False)
    counted_first, counted_second = Counted(first), Counted(second)
    assert torch.is_grad_enabled()
    once = embed_texts(first, tokenizer, TEXTS, batch_size=2)
    reused = embed_texts(second, tokenizer, TEXTS, batch_size=2)
    assert counted_first.rows == 5 and counted_second.rows == 0
    assert not once.requires_grad and torch.equal(once, reused)
