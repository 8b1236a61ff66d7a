"""iEBAKER's published ranking for a consumer: fused global + local scores, then SAR, from a saved model.

The registered pyfunc answers with global embeddings only (one vector per row); iEBAKER ranks with
``S = 0.6 · cosine + 0.4 · local`` (:mod:`rsvl.evaluate.local_similarity`), which needs every text
token and image patch, and re-ranks with SAR (:mod:`rsvl.evaluate.rerank`). A consumer downloads
the version's ``model/`` artifact and calls :func:`fused_ranking`::

    folder = mlflow.artifacts.download_artifacts(f"runs:/{version.run_id}/model")
    model, _, preprocess, tokenizer = rsvl.models.load_model(folder)
    order = fused_ranking(model, preprocess, tokenizer, pictures, ["ships moored along a quay"])
    order[0][:5]   # the five best pictures for the query, best first
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from rsvl.errors import DataError
from rsvl.evaluate.local_similarity import GLOBAL_WEIGHT, LOCAL_WEIGHT, FusedScores, LocalScores
from rsvl.evaluate.rerank import sar_order
from rsvl.evaluate.retrieval import CosineScores, score_matrix
from rsvl.models.tokens import encode_with_tokens

BATCH = 32


def fused_scores(model: nn.Module, preprocess: Callable[[Any], torch.Tensor], tokenizer: Callable[[list[str]], torch.Tensor],
                 images: Sequence[Any], queries: Sequence[str], *, global_weight: float = GLOBAL_WEIGHT,
                 local_weight: float = LOCAL_WEIGHT, device: str | torch.device = "cpu") -> torch.Tensor:
    """The fused score of every query against every image.

    Args:
        model: A loaded model with token features (``rsvl.models.load_model``), on ``device``.
        preprocess: Its validation preprocessing.
        tokenizer: Its tokenizer.
        images: Pictures ``preprocess`` accepts (arrays, tensors, PIL images).
        queries: Query texts.
        global_weight: Weight of the cosine score (iEBAKER: 0.6).
        local_weight: Weight of the local score (iEBAKER: 0.4).
        device: Where the model runs.

    Returns:
        ``(queries, images)`` float32 scores, higher is better.

    Raises:
        DataError: No image or no query.
        ModelError: The model has no token features.
    """
    if not images or not queries:
        raise DataError("fused scores need at least one image and one query")
    was_training = model.training
    model.eval()
    try:
        pictures = [encode_with_tokens(model, images=torch.stack([preprocess(x) for x in images[i:i + BATCH]]).to(device))
                    for i in range(0, len(images), BATCH)]
        texts = [encode_with_tokens(model, text=tokenizer(list(queries[i:i + BATCH])).to(device))
                 for i in range(0, len(queries), BATCH)]
    finally:
        model.train(was_training)
    joined = {key: torch.cat([part[key] for part in parts]).float()
              for parts, keys in ((pictures, ("image_features", "image_tokens")), (texts, ("text_features", "text_tokens")))
              for key in keys}
    scorer = FusedScores(CosineScores(joined["text_features"], joined["image_features"]),
                         LocalScores(joined["text_tokens"], joined["image_tokens"]), global_weight, local_weight)
    return score_matrix(scorer)


def fused_ranking(model: nn.Module, preprocess: Callable[[Any], torch.Tensor], tokenizer: Callable[[list[str]], torch.Tensor],
                  images: Sequence[Any], queries: Sequence[str], *, sar_k: int | None = 10, **weights: float) -> list[list[int]]:
    """Images ranked for each query as iEBAKER ranks them: fused scores, then SAR over the top ``sar_k``.

    SAR's reverse ranks compare each query with the other queries given, so with one query it leaves
    the fused order as it is; give the whole query set to get the paper's re-ranking.

    Args:
        model: A loaded model with token features, on the CPU or where ``device`` says.
        preprocess: Its validation preprocessing.
        tokenizer: Its tokenizer.
        images: The pictures to rank.
        queries: The query texts.
        sar_k: Candidates SAR re-sorts per query; ``None``: the fused order only.
        **weights: ``global_weight``/``local_weight``/``device`` for :func:`fused_scores`.

    Returns:
        For each query, the image indices best first.
    """
    scores = fused_scores(model, preprocess, tokenizer, images, queries, **weights)
    if sar_k is not None:
        scores = sar_order(scores, min(sar_k, scores.shape[1]))[0]
    # stable sort: equal scores keep the lower index first, as the ranking code breaks ties
    return torch.sort(scores, dim=1, descending=True, stable=True).indices.tolist()
