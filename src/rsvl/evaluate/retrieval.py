"""Image-text retrieval recall (PAPERS.md "Shared retrieval protocol"), exact and in memory.

Scores are ``S = T · Iᵀ`` of L2-normalised embeddings. Image→text R@K is the share of images
with at least one of their captions among the top K texts; text→image R@K the share of captions
whose image is among the top K images; K ∈ {1, 5, 10}, in percent; ``mR`` is the mean of the six.
Ties count against the query: a caption (or image) ranks behind every wrong candidate that
scores at least as high, so a model that gives everything the same embedding scores zero, not
a hundred.

Metric keys (MLflow-safe): ``i2t_r1 i2t_r5 i2t_r10 t2i_r1 t2i_r5 t2i_r10 mR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from rsvl.data.dataset import ManifestDataset
from rsvl.errors import DataError

RECALL_KS = (1, 5, 10)
EMBED_BATCH = 64


def recall_metrics(
    image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, text_image: Sequence[int]
) -> dict[str, float]:
    """Compute the seven retrieval numbers.

    Args:
        image_embeddings: (images, dim), any scale (normalised here).
        text_embeddings: (texts, dim), any scale.
        text_image: For each text, the row of its image.

    Returns:
        ``i2t_r{K}``, ``t2i_r{K}`` for K in 1, 5, 10, and ``mR``, in percent.

    Raises:
        DataError: Sizes disagree, an image has no text, or there is nothing to score.
    """
    owner = torch.as_tensor(list(text_image), dtype=torch.long)
    n_images, n_texts = image_embeddings.shape[0], text_embeddings.shape[0]
    if n_images == 0 or n_texts == 0:
        raise DataError("retrieval needs at least one image and one text")
    if owner.numel() != n_texts or owner.min() < 0 or owner.max() >= n_images:
        raise DataError(f"text_image must give an image row in [0, {n_images}) for each of the {n_texts} texts")
    if torch.bincount(owner, minlength=n_images).min() == 0:
        raise DataError("every image needs at least one text")
    images = nn.functional.normalize(image_embeddings.float(), dim=-1)
    texts = nn.functional.normalize(text_embeddings.float(), dim=-1)
    scores = texts @ images.T
    own = torch.zeros_like(scores, dtype=torch.bool)
    own[torch.arange(n_texts), owner] = True
    true_score = scores[torch.arange(n_texts), owner]
    t2i_rank = ((scores >= true_score[:, None]) & ~own).sum(dim=1)
    best_own = torch.full((n_images,), -torch.inf).scatter_reduce(0, owner, true_score, reduce="amax")
    i2t_rank = ((scores >= best_own[None, :]) & ~own).sum(dim=0)
    metrics: dict[str, float] = {}
    for k in RECALL_KS:
        metrics[f"i2t_r{k}"] = 100.0 * int((i2t_rank < k).sum()) / n_images
    for k in RECALL_KS:
        metrics[f"t2i_r{k}"] = 100.0 * int((t2i_rank < k).sum()) / n_texts
    metrics["mR"] = sum(metrics.values()) / len(metrics)
    return metrics


@torch.no_grad()
def embed_pairs(
    model: nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    dataset: ManifestDataset,
    media: str = "image",
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Embed every image of ``dataset`` and every one of its captions.

    Args:
        model: An open_clip model (unwrapped), put in eval mode by the caller.
        preprocess: Validation preprocessing.
        tokenizer: The model's tokenizer.
        dataset: The split to score.
        media: Media column the image tower reads.
        batch_size: Images or texts per forward pass.
        device: Where the model lives.

    Returns:
        ``(image embeddings, text embeddings, image row of each text)`` on the CPU.

    Raises:
        DataError: A sample has no captions or no ``media``.
    """
    images, captions, owner = [], [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        if media not in sample or not sample.get("captions"):
            raise DataError(f"{dataset.root} sample {sample['sample_id']!r}: retrieval needs {media!r} and captions")
        images.append(preprocess(sample[media]))
        captions.extend(str(c) for c in sample["captions"])
        owner.extend([index] * len(sample["captions"]))
    image_parts = [
        model.encode_image(torch.stack(images[i:i + batch_size]).to(device)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    text_parts = [
        model.encode_text(tokenizer(captions[i:i + batch_size]).to(device)).float().cpu()
        for i in range(0, len(captions), batch_size)
    ]
    return torch.cat(image_parts), torch.cat(text_parts), owner


def evaluate_retrieval(
    model: nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    dataset_dir: str | Path,
    split: str | None = "test",
    media: str = "image",
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score a model's retrieval on one split of a canonical dataset.

    Args:
        model: An open_clip model (unwrapped); left in the mode it had.
        preprocess: Validation preprocessing.
        tokenizer: The model's tokenizer.
        dataset_dir: Canonical dataset directory.
        split: Split to score (``None``: all rows).
        media: Media column the image tower reads.
        device: Where the model lives.

    Returns:
        The seven numbers of :func:`recall_metrics`.

    Raises:
        DataError: The split is empty or a sample cannot be scored.
    """
    dataset = ManifestDataset(dataset_dir, split=split)
    if len(dataset) == 0:
        raise DataError(f"{dataset_dir}: split {split!r} is empty; nothing to evaluate")
    was_training = model.training
    model.eval()
    try:
        image_emb, text_emb, owner = embed_pairs(model, preprocess, tokenizer, dataset, media, device=device)
    finally:
        model.train(was_training)
    return recall_metrics(image_emb, text_emb, owner)
