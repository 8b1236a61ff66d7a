"""Embedding a split's images and any list of texts with an open_clip model, batch by batch.

Images are decoded, preprocessed and embedded one batch at a time, so memory holds the embeddings
(images × dim floats) and one batch of pixels, never the whole split's pixels.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsvl.data.dataset import ManifestDataset
from rsvl.errors import DataError
from rsvl.models.text_batch import trim_padding

EMBED_BATCH = 64
TEXT_MEMO_BATCHES = 1024
"""Text batches :func:`embed_texts` keeps (64 × 512 float32 each: at most 128 MiB)."""
NOT_TEXT = ("visual.", "logit_scale", "logit_bias")
"""State-dict names outside the text path (the image tower, the contrastive temperature)."""

_TEXT_MEMO: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()

Preprocess = Callable[[Any], torch.Tensor]
Tokenizer = Callable[[list[str]], torch.Tensor]


class _PreprocessedMedia(Dataset):
    """One media column of a :class:`ManifestDataset`, preprocessed for the image tower."""

    def __init__(self, dataset: ManifestDataset, media: str, preprocess: Preprocess) -> None:
        self.dataset, self.media, self.preprocess = dataset, media, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        sample = self.dataset[index]
        if self.media not in sample:
            raise DataError(f"{self.dataset.root} sample {sample['sample_id']!r}: no {self.media!r} media to embed")
        return self.preprocess(sample[self.media])


def image_batches(
    dataset: ManifestDataset,
    media: str,
    preprocess: Preprocess,
    batch_size: int = EMBED_BATCH,
    num_workers: int = 0,
) -> DataLoader:
    """Batches of preprocessed images of ``dataset``'s ``media`` column, in row order.

    Args:
        dataset: The split to read.
        media: Media column (``image``, ``s1``, ``s2``).
        preprocess: Validation preprocessing of the model.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes decoding images (0: in this process).
    """
    return DataLoader(_PreprocessedMedia(dataset, media, preprocess), batch_size=batch_size,
                      shuffle=False, num_workers=num_workers)


@torch.no_grad()
def embed_images(
    model: nn.Module,
    preprocess: Preprocess,
    dataset: ManifestDataset,
    media: str = "image",
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> torch.Tensor:
    """Embed every row's ``media`` with the image tower.

    Args:
        model: An open_clip model in eval mode, on ``device``.
        preprocess: Validation preprocessing.
        dataset: The split to embed.
        media: Media column the image tower reads.
        batch_size: Images per forward pass.
        device: Where the model lives.
        num_workers: DataLoader workers decoding images.

    Returns:
        (rows, dim) float32 embeddings on the CPU, not normalised.

    Raises:
        DataError: The split is empty or a row has no ``media``.
    """
    if len(dataset) == 0:
        raise DataError(f"{dataset.root}: no rows to embed")
    parts = [model.encode_image(batch.to(device)).float().cpu()
             for batch in image_batches(dataset, media, preprocess, batch_size, num_workers)]
    return torch.cat(parts)


@torch.no_grad()
def embed_images_with_tokens(
    model: nn.Module,
    preprocess: Preprocess,
    dataset: ManifestDataset,
    media: str = "image",
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every row's ``media`` and keep its patch tokens (:mod:`rsvl.models.tokens`), in one pass.

    Args:
        model: An open_clip model with token features, in eval mode, on ``device``.
        preprocess: Validation preprocessing.
        dataset: The split to embed.
        media: Media column the image tower reads.
        batch_size: Images per forward pass.
        device: Where the model lives.
        num_workers: DataLoader workers decoding images.

    Returns:
        ``(rows, dim)`` embeddings and ``(rows, patches, dim)`` tokens, float32 on the CPU, not normalised.

    Raises:
        DataError: The split is empty or a row has no ``media``.
        ModelError: The model has no token features.
    """
    from rsvl.models.tokens import encode_with_tokens

    if len(dataset) == 0:
        raise DataError(f"{dataset.root}: no rows to embed")
    embeddings, tokens = [], []
    for batch in image_batches(dataset, media, preprocess, batch_size, num_workers):
        out = encode_with_tokens(model, images=batch.to(device))
        embeddings.append(out["image_features"].float().cpu())
        tokens.append(out["image_tokens"].float().cpu())
    return torch.cat(embeddings), torch.cat(tokens)


@torch.no_grad()
def embed_texts_with_tokens(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed texts and keep every position's token state (:mod:`rsvl.models.tokens`), in one pass.

    Args:
        model: An open_clip model with token features, in eval mode, on ``device``.
        tokenizer: The model's tokenizer.
        texts: The strings to embed.
        batch_size: Texts per forward pass.
        device: Where the model lives.

    Returns:
        ``(texts, dim)`` embeddings and ``(texts, context_length, dim)`` token states, float32 on the CPU.

    Raises:
        DataError: ``texts`` is empty.
        ModelError: The model has no token features.
    """
    from rsvl.models.tokens import encode_with_tokens

    if not texts:
        raise DataError("no texts to embed")
    texts = [str(text) for text in texts]
    embeddings, tokens = [], []
    for start in range(0, len(texts), batch_size):
        out = encode_with_tokens(model, text=tokenizer(texts[start:start + batch_size]).to(device))
        embeddings.append(out["text_features"].float().cpu())
        tokens.append(out["text_tokens"].float().cpu())
    return torch.cat(embeddings), torch.cat(tokens)


def text_weights_digest(model: nn.Module) -> str | None:
    """SHA-256 of every state-dict entry outside the image tower: equal digests, equal text features.

    Models that share a frozen text tower (a candidate, its base and its ablations, trained with
    ``text_tower: freeze``) get the same digest, so :func:`embed_texts` encodes their texts once.
    Entries that ``encode_text`` does not read (a CoCa decoder) only make the digest stricter.

    Args:
        model: An open_clip model.

    Returns:
        The hex digest, or ``None`` while any module is in training mode (dropout: not repeatable).
    """
    if any(module.training for module in model.modules()):
        return None
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        if name.startswith(NOT_TEXT):
            continue
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        # as bytes: numpy has no bfloat16
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()  # also what lets the memo keep a batch: a result with a graph is never kept
def embed_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batch_size: int = EMBED_BATCH,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Embed texts with the text tower.

    A batch already encoded in this process by a model with the same text weights
    (:func:`text_weights_digest`), from the same token ids, is taken from memory: the same numbers
    the model would give again. The last :data:`TEXT_MEMO_BATCHES` batches are kept.

    Args:
        model: An open_clip model in eval mode, on ``device``.
        tokenizer: The model's tokenizer.
        texts: The strings to embed.
        batch_size: Texts per forward pass.
        device: Where the model lives.

    Returns:
        (texts, dim) float32 embeddings on the CPU, not normalised.

    Raises:
        DataError: ``texts`` is empty.
    """
    if not texts:
        raise DataError("no texts to embed")
    texts = [str(text) for text in texts]
    weights = text_weights_digest(model)
    kind = torch.device(device).type
    context = (str(device), torch.is_grad_enabled(), torch.is_autocast_enabled(kind))
    parts = []
    for start in range(0, len(texts), batch_size):
        # a Hugging Face tower ignores padding: a 248-token model need not run 248 columns for short captions
        tokens = trim_padding(model, tokenizer(texts[start:start + batch_size]))
        key = None if weights is None else (weights, context, tuple(tokens.shape), tokens.numpy().tobytes())
        part = _TEXT_MEMO.get(key) if key is not None else None
        if part is None:
            part = model.encode_text(tokens.to(device)).float().cpu()
            if key is not None and not part.requires_grad:
                _TEXT_MEMO[key] = part
                while len(_TEXT_MEMO) > TEXT_MEMO_BATCHES:
                    _TEXT_MEMO.popitem(last=False)
        else:
            _TEXT_MEMO.move_to_end(key)
        parts.append(part)
    return torch.cat(parts)


def captions_of(dataset: ManifestDataset, media: str, text: str = "captions") -> tuple[list[str], list[int]]:
    """Every caption of the split and the row it belongs to, read without decoding media.

    Args:
        dataset: The split.
        media: Media column the rows must have (checked here, before any embedding work).
        text: ``captions`` (every short caption of a row) or ``long_caption`` (its one long caption).

    Returns:
        ``(captions, row of each caption)``.

    Raises:
        DataError: A row has no such text or no ``media`` (the row's sample id is named).
    """
    if text not in ("captions", "long_caption"):
        raise ValueError(f"text must be 'captions' or 'long_caption', got {text!r}")
    captions: list[str] = []
    owner: list[int] = []
    for index in range(len(dataset)):
        record = dataset.record(index)
        value = record.get(text)
        texts = [value] if text == "long_caption" and value else list(value or [])
        if record.get(media) is None or not [t for t in texts if str(t).strip()]:
            raise DataError(f"{dataset.root} sample {record['sample_id']!r}: retrieval needs {media!r} and {text}")
        captions.extend(str(c) for c in texts)
        owner.extend([index] * len(texts))
    return captions, owner


@torch.no_grad()
def with_location(
    model: nn.Module,
    image_embeddings: torch.Tensor,
    dataset: ManifestDataset,
    weight: float,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Fuse each row's place into its image embedding: ``normalize(normalize(image) + weight · location)``.

    The location encoder of a GeoCLOSP model is trained to meet the image embeddings of its place
    in the shared space, so adding it pulls an image towards what is usual where it was taken (a
    dark patch in a flood zone towards "flooded area"); ``weight`` 0 gives the image alone.

    Args:
        model: A model with ``encode_location`` and a location encoder (GeoCLOSP), on ``device``.
        image_embeddings: (rows, dim) embeddings of ``dataset``'s rows, any scale.
        dataset: The rows, each with ``lat`` and ``lon``.
        weight: The location's weight.
        device: Where the model lives.

    Returns:
        (rows, dim) float32 unit vectors on the CPU.

    Raises:
        ModelError: The model has no location encoder.
        DataError: A row has no ``lat``/``lon`` (its sample id is named).
    """
    from rsvl.errors import ModelError

    if getattr(model, "location", None) is None:
        raise ModelError(f"{type(model).__name__} has no location encoder; location_weight needs a GeoCLOSP model")
    places = []
    for index in range(len(dataset)):
        record = dataset.record(index)
        if record.get("lat") is None or record.get("lon") is None:
            raise DataError(f"{dataset.root} sample {record['sample_id']!r}: location_weight needs lat and lon "
                            "on every row")
        places.append([float(record["lat"]), float(record["lon"])])
    location = model.encode_location(torch.tensor(places, dtype=torch.float32, device=device), normalize=True)
    fused = nn.functional.normalize(image_embeddings.float(), dim=-1) + weight * location.float().cpu()
    return nn.functional.normalize(fused, dim=-1)
