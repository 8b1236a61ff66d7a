"""Zero-shot classification: GeoRSCLIP's 105 templates, template-ensemble class vectors, accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import unit_rows, zero_shot_reference

from rsvl.errors import DataError
from rsvl.evaluate.zero_shot import (
    IMAGE_KINDS,
    TEMPLATE_PHRASINGS,
    class_vectors,
    classify,
    georsclip_templates,
)
from rsvl.models import build_model


def test_105_templates_35_phrasings_per_image_kind():
    templates = georsclip_templates()
    assert len(TEMPLATE_PHRASINGS) == 35 and len(templates) == 105 == len(set(templates))
    for kind in IMAGE_KINDS:
        assert sum(kind in t for t in templates) == 35
    assert "a remote sensing image of a {}." in templates
    assert "an aerial image of many {}." in templates
    assert "a low resolution aerial image of the {}." in templates
    assert all(t.count("{}") == 1 and "{kind}" not in t for t in templates)


def test_class_vector_is_the_normalised_mean_of_the_prompt_embeddings():
    model, _, _, tokenizer = build_model("rsvl-tiny")
    model.eval()
    weights = class_vectors(model, tokenizer, ["Parking_Lot", "river/lake"])
    assert weights.shape == (2, 64)
    with torch.no_grad():
        prompts = [t.format("river lake") for t in georsclip_templates()]
        mean = model.encode_text(tokenizer(prompts)).mean(dim=0)
    assert torch.allclose(weights[1], mean / mean.norm(), atol=1e-5)
    assert torch.allclose(weights.norm(dim=1), torch.ones(2))


def test_accuracy_per_class_accuracy_and_confusion():
    weights = torch.eye(3)  # class c points along axis c
    images = torch.tensor([[5.0, 0, 0], [0, 2, 0], [0.1, 1, 0], [0, 0, 1], [1, 0, 0.5]])
    labels = ["Bare_Land", "forest", "forest", "water", "water"]
    result = classify(images, weights, labels, ["bare land", "forest", "water"])
    assert result.classes == ["bare land", "forest", "water"]
    assert result.predictions == [0, 1, 1, 2, 0]
    assert result.top1 == pytest.approx(80.0)
    assert result.per_class == pytest.approx({"bare land": 100.0, "forest": 100.0, "water": 50.0})
    assert result.confusion == [[1, 0, 0], [0, 2, 0], [1, 0, 1]]
    assert result.mean_per_class == pytest.approx(250 / 3)


CLASSES = ["Bare_Land", "forest", "river/lake", "Water", "crops"]


def random_case(seed: int, quantised: bool, n_images: int = 60, dim: int = 16):
    """Unit class vectors and images near them, labels drawn independently of the images' class.

    Quantised: ±1 vectors (normalising and dot products are exact in float32), with class 3 a copy
    of class 1 and repeated images, so equal scores occur and the first-listed class must win.
    """
    rng = np.random.default_rng(seed)
    if quantised:
        weights = rng.choice([-1.0, 1.0], size=(len(CLASSES), dim))
        weights[3] = weights[1]
        near = rng.integers(0, len(CLASSES), size=n_images)
        images = np.where(rng.random((n_images, dim)) < 0.75, weights[near], -weights[near])
        images[1::7] = images[0]
        images *= 2.0 ** rng.integers(-3, 4, size=(n_images, 1))
    else:
        weights = rng.normal(size=(len(CLASSES), dim))
        near = rng.integers(0, len(CLASSES), size=n_images)
        images = weights[near] + rng.normal(scale=1.2, size=(n_images, dim)) * rng.uniform(0.5, 3.0, size=(n_images, 1))
    truth = np.where(rng.random(n_images) < 0.6, near, rng.integers(0, len(CLASSES), size=n_images))
    truth[truth == 2] = 0  # one class has no image: left out of the per-class accuracies
    labels = [CLASSES[c].upper() if i % 5 == 0 else CLASSES[c] for i, c in enumerate(truth)]
    weights = unit_rows(weights)
    return torch.tensor(images, dtype=torch.float32), torch.tensor(weights, dtype=torch.float32), labels


@pytest.mark.parametrize("quantised", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classify_equals_a_float64_reference(seed, quantised):
    images, weights, labels = random_case(seed, quantised)
    want = zero_shot_reference(images.numpy(), weights.numpy(), labels, CLASSES)
    result = classify(images, weights, labels, CLASSES)
    assert result.predictions == want["predictions"]
    assert result.confusion == want["confusion"]
    assert result.top1 == pytest.approx(want["top1"])
    assert result.per_class == pytest.approx(want["per_class"])
    assert "river lake" not in result.per_class
    assert result.mean_per_class == pytest.approx(want["mean_per_class"])


def test_quantised_case_really_has_ties():
    images, weights, labels = random_case(0, quantised=True)
    scores = unit_rows(images.numpy()) @ weights.numpy().T
    best = scores.max(axis=1, keepdims=True)
    tied = (scores == best).sum(axis=1) > 1
    assert tied.sum() >= 5
    assert all(row.argmax() == 1 for row in scores[tied])  # class 3 (a copy of 1) never wins a tie
    assert 3 not in classify(images, weights, labels, CLASSES).predictions


def test_unknown_label_is_named():
    with pytest.raises(DataError, match="image 1: label 'lake'"):
        classify(torch.eye(2), torch.eye(2), ["forest", "lake"], ["forest", "water"])


def test_the_first_image_with_an_unknown_label_is_named():
    # labels are normalised once per distinct label; the error still names the first row
    with pytest.raises(DataError, match="image 2: label 'Lake'"):
        classify(torch.eye(2)[[0, 1, 0, 1]], torch.eye(2), ["forest", "WATER", "Lake", "lake"], ["forest", "water"])
