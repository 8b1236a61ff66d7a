"""The lrsclip objective (dual long/short InfoNCE, Long-CLIP's PCA option), padding trimming and truncation counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rsvl.config import ObjectiveConfig
from rsvl.models import build_model
from rsvl.models.text_batch import trim_padding
from rsvl.train.lrsclip_objective import pca_reconstruct, principal_axes
from rsvl.train.objectives import ObjectiveContext, build_objective

LONG = ["A red roof near a road. The house has a garden with two trees on the left.",
        "Two planes beside the terminal. A third plane is parked in the lower right.",
        "Green trees around a pond. The pond is in the center and a path runs to the top.",
        "A river under a bridge. Three boats are moored on the right bank.",
        "Many cars in a parking lot. The lot is almost full and has four rows.",
        "A baseball field. Bleachers stand behind the diamond in the upper left."]
SHORT = [text.split(". ")[0] + "." for text in LONG]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, _, _, tokenizer = build_model("rsvl-tiny", None, 3, None)
    model.eval()  # no dropout in the tiny model: the objective's pass and the reference agree
    return model, tokenizer


def _batch(tokenizer, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return {"image": torch.randn(len(LONG), 3, 64, 64), "long_text": tokenizer(LONG), "short_text": tokenizer(SHORT),
            "sample_id": [f"s{i}" for i in range(len(LONG))]}


def _objective(model, **settings):
    objective = build_objective(ObjectiveConfig(name="lrsclip", learn_logit_scale=False, logit_scale=10.0, **settings),
                                ObjectiveContext())
    objective.prepare(model)
    return objective


def _infonce(images: torch.Tensor, texts: torch.Tensor, scale: float) -> float:
    """open_clip's ClipLoss by hand: the mean of the image→text and text→image cross-entropies."""
    logits = scale * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T
    labels = torch.arange(len(logits))
    return float((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2)


@pytest.mark.parametrize("long_weight,short_weight", [(1.0, 1.0), (0.7, 0.3), (1.0, 0.0)])
def test_the_loss_is_the_weighted_sum_of_the_long_and_short_infonce(tiny, long_weight, short_weight):
    model, tokenizer = tiny
    batch = _batch(tokenizer)
    with torch.no_grad():
        out = _objective(model, long_weight=long_weight, short_weight=short_weight)(model, batch)
        images = model.encode_image(batch["image"])
        long_ref = _infonce(images, model.encode_text(batch["long_text"]), 10.0)
        short_ref = _infonce(images, model.encode_text(batch["short_text"]), 10.0)
    assert float(out["long_loss"]) == pytest.approx(long_ref, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(long_weight * long_ref + short_weight * short_ref, rel=1e-5)
    if short_weight:
        assert float(out["short_loss"]) == pytest.approx(short_ref, rel=1e-5)
        assert short_ref != pytest.approx(long_ref, rel=1e-3)  # the short texts really are other texts
    else:
        assert "short_loss" not in out


def test_longclip_pca_aligns_short_texts_with_the_reduced_image_features(tiny):
    model, tokenizer = tiny
    batch = _batch(tokenizer)
    with torch.no_grad():
        out = _objective(model, short_pca_dims=3)(model, batch)
        images = F.normalize(model.encode_image(batch["image"]), dim=-1).double().numpy()
        short = model.encode_text(batch["short_text"])
    centred = images - images.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # the principal axes, independently of eigh
    reduced = images.mean(axis=0) + centred @ vt[:3].T @ vt[:3]
    expected = _infonce(torch.from_numpy(reduced).float(), short, 10.0)
    assert float(out["short_loss"]) == pytest.approx(expected, rel=1e-4)


def test_principal_axes_match_the_svd_and_have_a_fixed_sign():
    features = torch.from_numpy(np.random.default_rng(3).normal(size=(12, 6)) * [5, 4, 3, 2, 1, 0.5])
    axes = principal_axes(features, 4).numpy()
    _, _, vt = np.linalg.svd(features.numpy() - features.numpy().mean(axis=0), full_matrices=False)
    for column, reference in zip(axes.T, vt[:4]):
        assert abs(np.dot(column, reference)) == pytest.approx(1.0, abs=1e-9)
        assert column[np.abs(column).argmax()] > 0
    full = pca_reconstruct(features, 6)  # every axis kept: the features come back
    assert torch.allclose(full, features, atol=1e-9)
    with pytest.raises(ValueError, match="between 1 and the feature width 6"):
        principal_axes(features, 7)


def test_pca_reconstruction_passes_gradients_to_the_features_only():
    features = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    pca_reconstruct(features, 2).sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_trim_padding_cuts_a_hugging_face_batch_after_its_longest_text_and_changes_no_embedding():
    model, _, _, tokenizer = build_model("rsvl-effnetlite0-minilm", "packaged", 3, None, image_size=64)
    model.eval()
    tokens = tokenizer(["a short one", "a somewhat longer caption with more words in it"])
    trimmed = trim_padding(model, tokens)
    longest = int((tokens != 0).sum(dim=1).max())
    assert trimmed.shape == (2, longest) and tokens.shape[1] > longest
    assert torch.equal(trimmed, tokens[:, :longest]) and (tokens[:, longest:] == 0).all()
    with torch.no_grad():
        assert torch.allclose(model.encode_text(trimmed), model.encode_text(tokens), atol=1e-5)


def test_trim_padding_keeps_a_native_towers_batch_whole(tiny):
    model, tokenizer = tiny
    tokens = tokenizer(["a", "b c"])
    assert trim_padding(model, tokens) is tokens


def test_a_frozen_text_tower_is_encoded_once_per_text_and_gives_the_same_loss():
    from rsvl.config import TrainableConfig
    from rsvl.train.trainable import apply_trainable, set_train_mode

    torch.manual_seed(0)
    model, _, _, tokenizer = build_model("rsvl-tiny", None, 3, None)
    frozen = TrainableConfig(text_tower="freeze")
    apply_trainable(model, frozen)
    set_train_mode(model, frozen)
    batch = _batch(tokenizer)
    objective = _objective(model)
    calls = []
    model.encode_text = lambda tokens, normalize=False, encode=model.encode_text: (
        calls.append(len(tokens)), encode(tokens, normalize=normalize))[1]
    first = objective(model, batch)
    second = objective(model, batch)  # the same texts again: answered from the cache
    assert calls == [2 * len(LONG)]
    with torch.no_grad():
        images = model.encode_image(batch["image"])
        long_ref = _infonce(images, model.encode_text(batch["long_text"]), 10.0)
        short_ref = _infonce(images, model.encode_text(batch["short_text"]), 10.0)
    assert float(first["loss"]) == pytest.approx(long_ref + short_ref, rel=1e-5)
    assert float(second["loss"]) == pytest.approx(float(first["loss"]), rel=1e-6)
    first["loss"].backward()  # the image tower still learns
    assert model.visual.proj.grad is not None and model.visual.proj.grad.abs().sum() > 0
