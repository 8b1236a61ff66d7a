"""The frozen-text cache: switched on only for a text path with nothing to train, and the features it serves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsvl.config.train import TrainableConfig
from rsvl.models import build_model
from rsvl.train.text_cache import (
    SHARED_PATHS,
    FrozenTextCache,
    clear_shared_rows,
    frozen_path_digest,
    install_text_cache,
    remove_text_cache,
)
from rsvl.train.trainable import apply_trainable, set_train_mode

CAPTIONS = ["a ship at sea", "two boats moored at a quay", "a harbour with cranes", "open water",
            "a ship near the coast", "a bridge over a river"]


@pytest.fixture(autouse=True)
def fresh_store():
    clear_shared_rows()
    yield
    clear_shared_rows()


def tiny(text_tower: str) -> tuple[nn.Module, object, TrainableConfig]:
    torch.manual_seed(0)
    model, _, _, tokenizer = build_model("rsvl-tiny", None, 3, None)
    trainable = TrainableConfig(image_tower="train", text_tower=text_tower)
    apply_trainable(model, trainable)
    set_train_mode(model, trainable)
    return model, tokenizer, trainable


def test_frozen_text_is_encoded_once_per_caption_and_served_as_the_model_gives_it():
    model, tokenizer, _ = tiny("freeze")
    cache = install_text_cache(model)
    first = tokenizer(CAPTIONS[:4])
    served = model.encode_text(first, normalize=True)  # decides: frozen and deterministic
    assert cache.active is True and len(cache.rows) == 4
    again = tokenizer([CAPTIONS[2], CAPTIONS[4], CAPTIONS[0], CAPTIONS[4]])
    mixed = model.encode_text(again, normalize=True)
    assert (cache.hits, cache.misses) == (3, 1) and len(cache.rows) == 5  # the repeated new caption: encoded once
    remove_text_cache(model)
    assert not isinstance(model.__dict__.get("encode_text"), FrozenTextCache)
    with torch.no_grad():
        assert torch.equal(served, model.encode_text(first, normalize=True))
        direct = model.encode_text(again, normalize=True)
    torch.testing.assert_close(mixed, direct, rtol=0, atol=1e-6)  # the new row came from a 1-row batch
    assert torch.equal(mixed[0], served[2]) and torch.equal(mixed[2], served[0]) and torch.equal(mixed[1], mixed[3])
    # normalize is part of the key: the unnormalised features are another entry
    cache = install_text_cache(model)
    model.encode_text(first, normalize=True)
    raw = model.encode_text(first)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(4)) and len(cache.rows) == 9  # 5 kept from before


def test_the_next_fit_on_the_same_frozen_weights_encodes_only_captions_it_has_not_seen():
    """A progression's later stages and ablations read the captions the earlier fits encoded."""
    model, tokenizer, _ = tiny("freeze")
    install_text_cache(model)
    seen = model.encode_text(tokenizer(CAPTIONS[:4]), normalize=True)
    remove_text_cache(model)
    other, _, _ = tiny("freeze")  # another fit: a new model, the same frozen text weights
    with torch.no_grad():
        next(other.visual.parameters()).add_(1.0)
    assert frozen_path_digest(other) == frozen_path_digest(model)  # the image tower is not part of it
    cache = install_text_cache(other)
    batch = tokenizer([CAPTIONS[1], CAPTIONS[5], CAPTIONS[3]])
    served = other.encode_text(batch, normalize=True)  # the deciding call encodes the batch itself
    again = other.encode_text(tokenizer([CAPTIONS[0], CAPTIONS[2]]), normalize=True)
    assert (cache.hits, cache.misses) == (2, 0)  # encoded by the first fit
    assert torch.equal(again, seen[[0, 2]])  # the first fit's rows, as it encoded them
    torch.testing.assert_close(served[0], seen[1], rtol=0, atol=1e-6)  # the model's own, in another batch


def test_other_text_weights_get_their_own_rows():
    model, tokenizer, _ = tiny("freeze")
    install_text_cache(model)
    model.encode_text(tokenizer(CAPTIONS[:2]))
    remove_text_cache(model)
    changed, _, _ = tiny("freeze")
    with torch.no_grad():
        changed.token_embedding.weight.mul_(2.0)
    assert frozen_path_digest(changed) != frozen_path_digest(model)
    cache = install_text_cache(changed)
    changed.encode_text(tokenizer(CAPTIONS[:2]))
    doubled = changed.encode_text(tokenizer(CAPTIONS[:2]))
    assert len(cache.rows) == 2 and cache.hits == 2
    with torch.no_grad():
        remove_text_cache(changed)
        assert torch.equal(doubled, changed.encode_text(tokenizer(CAPTIONS[:2])))
        assert not torch.equal(doubled, model.encode_text(tokenizer(CAPTIONS[:2])))


def test_the_process_keeps_the_rows_of_a_few_text_paths_only():
    def frozen(scale: int) -> nn.Module:
        model, _, _ = tiny("freeze")
        with torch.no_grad():
            model.token_embedding.weight.add_(float(scale))
        return model

    _, tokenizer, _ = tiny("freeze")
    for scale in range(SHARED_PATHS + 1):
        model = frozen(scale)
        install_text_cache(model)
        model.encode_text(tokenizer(CAPTIONS[:4]))
    newest, oldest = frozen(SHARED_PATHS), frozen(0)
    kept, dropped = install_text_cache(newest), install_text_cache(oldest)
    newest.encode_text(tokenizer(CAPTIONS[:2]))
    oldest.encode_text(tokenizer(CAPTIONS[:2]))
    assert len(kept.rows) == 4 and len(dropped.rows) == 2  # the first store was dropped for the third


def test_a_trainable_text_tower_is_never_cached_and_keeps_its_gradients():
    model, tokenizer, _ = tiny("train")
    cache = install_text_cache(model)
    features = model.encode_text(tokenizer(CAPTIONS[:3]))
    assert cache.active is False and not cache.rows
    features.sum().backward()
    assert model.token_embedding.weight.grad is not None
    assert model.encode_text(tokenizer(CAPTIONS[:3])).requires_grad


def test_dropout_on_a_frozen_path_is_found_and_nothing_is_cached():
    model, tokenizer, _ = tiny("freeze")
    model.ln_final = nn.Sequential(model.ln_final, nn.Dropout(0.5).train())  # frozen, yet random
    cache = install_text_cache(model)
    model.encode_text(tokenizer(CAPTIONS[:3]))
    assert cache.active is False and not cache.rows


def test_nothing_is_decided_under_no_grad():
    model, tokenizer, _ = tiny("train")
    cache = install_text_cache(model)
    with torch.no_grad():
        model.encode_text(tokenizer(CAPTIONS[:2]))
    assert cache.active is None  # without gradients a trainable path looks frozen: wait for a training call
    model.encode_text(tokenizer(CAPTIONS[:2]))
    assert cache.active is False


def test_a_hook_on_the_text_path_sees_every_call():
    """iEBAKER reads token states through a forward hook: while one is set, the tower always runs."""
    model, tokenizer, _ = tiny("freeze")
    cache = install_text_cache(model)
    tokens = tokenizer(CAPTIONS[:3])
    cached = model.encode_text(tokens)
    assert cache.active is True
    seen = []
    handle = model.ln_final.register_forward_hook(lambda module, args, out: seen.append(out.shape[0]))
    hooked = model.encode_text(tokens)
    handle.remove()
    again = model.encode_text(tokens)
    assert seen == [3] and cache.hits == 3  # the hooked call ran the tower; the one after it was served
    assert torch.equal(hooked, cached) and torch.equal(again, cached)
