"""Zero-shot classification: GeoRSCLIP's 105 templates, template-ensemble class vectors, accuracy."""

from __future__ import annotations

import pytest
import torch

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


def test_unknown_label_is_named():
    with pytest.raises(DataError, match="image 1: label 'lake'"):
        classify(torch.eye(2), torch.eye(2), ["forest", "lake"], ["forest", "water"])
