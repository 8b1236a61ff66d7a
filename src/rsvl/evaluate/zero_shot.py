"""Zero-shot scene classification with GeoRSCLIP's 105 prompt templates (PAPERS.md, RS5M/GeoRSCLIP).

Class names are normalised (``_`` and ``/`` become spaces, lower case). Each class is written into
all 105 templates, the text tower embeds them, and the class vector is the L2-normalised mean of
those (raw) template embeddings, as in the authors' ``zeroshot_classifier``. Logits are
``100 · image · W`` with L2-normalised images; the prediction is the arg-max (ties go to the class
listed first).

The 105 templates are the 35 phrasings of :data:`TEMPLATE_PHRASINGS` for each of the three image
kinds of :data:`IMAGE_KINDS`. PAPERS.md gives only the count and one example; the phrasings here
are the ones the GeoRSCLIP authors publish with their evaluation code (om-ai-lab/RS5M,
``inference/classname_and_prompt/``): CLIP's ImageNet phrasings with "photo" replaced by the image
kind, 35 of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Sequence

import torch
from torch import nn

from rsvl.data.adapters.class_folder import normalise_class
from rsvl.errors import DataError
from rsvl.evaluate.embedding import Tokenizer, embed_texts

LOGIT_SCALE: Final[float] = 100.0
IMAGE_KINDS: Final[tuple[str, ...]] = ("remote sensing image", "aerial image", "satellite image")
TEMPLATE_PHRASINGS: Final[tuple[str, ...]] = (
    "a {kind} of many {}.",
    "a {kind} of a {}.",
    "a {kind} of the {}.",
    "a {kind} of the hard to see {}.",
    "a {kind} of a hard to see {}.",
    "a low resolution {kind} of the {}.",
    "a low resolution {kind} of a {}.",
    "a bad {kind} of the {}.",
    "a bad {kind} of a {}.",
    "a cropped {kind} of the {}.",
    "a cropped {kind} of a {}.",
    "a bright {kind} of the {}.",
    "a bright {kind} of a {}.",
    "a dark {kind} of the {}.",
    "a dark {kind} of a {}.",
    "a close-up {kind} of the {}.",
    "a close-up {kind} of a {}.",
    "a black and white {kind} of the {}.",
    "a black and white {kind} of a {}.",
    "a jpeg corrupted {kind} of the {}.",
    "a jpeg corrupted {kind} of a {}.",
    "a blurry {kind} of the {}.",
    "a blurry {kind} of a {}.",
    "a good {kind} of the {}.",
    "a good {kind} of a {}.",
    "a {kind} of the large {}.",
    "a {kind} of a large {}.",
    "a {kind} of the nice {}.",
    "a {kind} of a nice {}.",
    "a {kind} of the small {}.",
    "a {kind} of a small {}.",
    "a {kind} of the weird {}.",
    "a {kind} of a weird {}.",
    "a {kind} of the cool {}.",
    "a {kind} of a cool {}.",
)
"""35 phrasings; ``{kind}`` is an image kind, ``{}`` the class name."""

_A_BEFORE_VOWEL = re.compile(r"^a (?=[aeiou])")


def georsclip_templates() -> list[str]:
    """The 105 templates: every phrasing for every image kind ("an aerial image of a {}.").

    Returns:
        Templates with one ``{}`` slot for the class name, kind by kind in :data:`IMAGE_KINDS` order.
    """
    return [
        _A_BEFORE_VOWEL.sub("an ", phrasing.replace("{kind}", kind))
        for kind in IMAGE_KINDS
        for phrasing in TEMPLATE_PHRASINGS
    ]


@torch.no_grad()
def class_vectors(
    model: nn.Module,
    tokenizer: Tokenizer,
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Build the zero-shot classifier: one normalised mean template embedding per class.

    Args:
        model: An open_clip model in eval mode, on ``device``.
        tokenizer: The model's tokenizer.
        class_names: Class names, normalised here (``_``/``/`` → space, lower case).
        templates: Templates with one ``{}`` slot (default: :func:`georsclip_templates`).
        device: Where the model lives.

    Returns:
        (classes, dim) float32 tensor on the CPU, rows of unit length.

    Raises:
        DataError: No classes, or a template has no ``{}`` slot.
    """
    templates = list(templates) if templates is not None else georsclip_templates()
    if not class_names:
        raise DataError("zero-shot classification needs at least one class name")
    broken = [t for t in templates if "{}" not in t]
    if broken or not templates:
        raise DataError(f"every template needs one '{{}}' slot for the class name; these have none: {broken}")
    rows = []
    for name in class_names:
        prompts = [template.replace("{}", normalise_class(name)) for template in templates]
        rows.append(embed_texts(model, tokenizer, prompts, device=device).mean(dim=0))
    return nn.functional.normalize(torch.stack(rows), dim=-1)


@dataclass(frozen=True)
class ZeroShotResult:
    """Zero-shot classification of one split.

    Attributes:
        classes: Normalised class names, in classifier order.
        top1: Top-1 accuracy in percent.
        per_class: Accuracy (recall) of each class in percent; classes with no image are left out.
        confusion: (classes, classes) counts, rows true class, columns predicted class.
        predictions: Predicted class index of every image.
    """

    classes: list[str]
    top1: float
    per_class: dict[str, float]
    confusion: list[list[int]]
    predictions: list[int]

    @property
    def mean_per_class(self) -> float:
        """Mean of the per-class accuracies (balanced accuracy), in percent."""
        return sum(self.per_class.values()) / len(self.per_class)


def zero_shot_logits(image_embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``100 · normalise(image) · Wᵀ``: the GeoRSCLIP logits.

    Args:
        image_embeddings: (images, dim), any scale.
        weights: (classes, dim) from :func:`class_vectors`.
    """
    return LOGIT_SCALE * nn.functional.normalize(image_embeddings.float(), dim=-1) @ weights.float().T


def classify(
    image_embeddings: torch.Tensor,
    weights: torch.Tensor,
    labels: Sequence[str],
    class_names: Sequence[str],
) -> ZeroShotResult:
    """Score zero-shot predictions against the true labels.

    Args:
        image_embeddings: (images, dim).
        weights: (classes, dim) classifier from :func:`class_vectors`, in ``class_names`` order.
        labels: True class of every image (normalised here before matching).
        class_names: The classes, in classifier order.

    Returns:
        Accuracy, per-class accuracy and the confusion matrix.

    Raises:
        DataError: Sizes disagree, or a label is not one of the classes (the first is named).
    """
    classes = [normalise_class(name) for name in class_names]
    if len(set(classes)) != len(classes):
        raise DataError(f"class names collide after normalisation: {classes}")
    if weights.shape[0] != len(classes) or image_embeddings.shape[0] != len(labels) or not labels:
        raise DataError(f"need one weight row per class ({weights.shape[0]} vs {len(classes)}) and one label "
                        f"per image ({len(labels)} vs {image_embeddings.shape[0]}), and at least one image")
    index = {name: i for i, name in enumerate(classes)}
    # normalise each distinct label once: a split has thousands of images and a few dozen labels
    class_of = {label: index.get(normalise_class(str(label)), -1) for label in set(labels)}
    truth = [class_of[label] for label in labels]
    if -1 in truth:
        row = truth.index(-1)
        raise DataError(f"image {row}: label {labels[row]!r} is not one of the classes {classes}")
    target = torch.tensor(truth)
    # argmax returns the first of equal maxima (documented), so ties go to the class listed first;
    # topk(1) promises no order among ties
    predicted = zero_shot_logits(image_embeddings, weights).argmax(dim=1)
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((target, predicted), torch.ones_like(target), accumulate=True)
    totals = confusion.sum(dim=1)
    per_class = {classes[c]: 100.0 * int(confusion[c, c]) / int(totals[c]) for c in range(len(classes)) if totals[c]}
    return ZeroShotResult(
        classes=classes,
        top1=100.0 * int((predicted == target).sum()) / len(truth),
        per_class=per_class,
        confusion=confusion.tolist(),
        predictions=predicted.tolist(),
    )
