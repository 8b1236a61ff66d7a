"""Batches for training: ManifestDataset samples to image tensors and tokenized text.

Every random choice is a function of ``(seed, epoch, sample index)``: the caption drawn for an
image (one of its captions, uniformly, each time it is seen) and the train augmentation (random
crop and flips, run under a forked torch RNG). The batch order is a function of ``(seed, epoch)``.
So a run resumed in the middle of an epoch sees exactly the batches an uninterrupted run would,
with any number of loader workers.

Batch entries an objective can ask for (:data:`BATCH_FIELDS`): ``image`` (N, bands, H, W),
``text`` (tokens of one caption per image), ``long_text`` (tokens of ``long_caption``),
``short_text`` (tokens of the long caption's first sentence, :func:`rsvl.data.long_text.first_sentence`),
``location`` (N, 2: latitude, longitude), ``caption`` (the drawn caption of each image, as text: a
list). ``sample_id`` (a list) is always there. A sensor model's
batch holds one such batch per sensor under ``sensors`` (:class:`EpochBatches`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rsvl.data.dataset import ManifestDataset
from rsvl.data.long_text import first_sentence
from rsvl.errors import DataError, ModelError
from rsvl.models.bands import normalisation_from_stats, widen_first_conv
from rsvl.models.factory import WIDENING_RULE, BuiltModel
from rsvl.models.io import saved_spec
from rsvl.models.preprocess import make_preprocess

BATCH_FIELDS = ("image", "text", "long_text", "short_text", "location", "caption")
SEED_BITS = 62


def sample_seed(*keys: int) -> int:
    """A 62-bit seed derived from integer keys (seed, epoch, index, ...)."""
    return int(np.random.default_rng([int(k) for k in keys]).integers(2**SEED_BITS))


def data_bands(dataset: ManifestDataset, column: str = "image") -> int:
    """Bands of ``column`` in ``dataset``: from its recorded statistics, else from its first sample.

    Raises:
        DataError: The dataset is empty or its first sample has no ``column``.
    """
    if len(dataset) == 0:
        raise DataError(f"{dataset.root}: no samples to train on")
    stats = dataset.band_stats.get(column)
    if stats and "bands" in stats:
        return len(stats["bands"])
    first = dataset[0]
    if column not in first:
        raise DataError(f"{dataset.root}: sample {first['sample_id']!r} has no {column!r} media")
    return int(first[column].shape[0])


def image_inputs(dataset: ManifestDataset, column: str = "image") -> tuple[int, dict[str, Any] | None]:
    """Return ``(in_bands, band_stats)`` a freshly built model needs for ``column`` of ``dataset``.

    ``(3, None)`` (the model's own RGB normalisation) for three bands or one band without
    statistics; else the band count and the dataset's recorded statistics for the column.

    Raises:
        DataError: The dataset is empty or its first sample has no ``column``.
    """
    bands = data_bands(dataset, column)
    stats = dataset.band_stats.get(column)
    # an 8-bit grey chip (SAR PNG) keeps the pretrained RGB convolution, the band repeated; a band with
    # statistics (SAR in dB, one multispectral band) is not 8-bit RGB and widens the first convolution
    if bands == 3 or (bands == 1 and not stats):
        return 3, None
    return bands, stats or None


def saved_in_bands(model_dir: str | Path) -> int:
    """Bands the image tower of a saved model folder takes (three for a plain open_clip folder).

    Raises:
        ModelError: The folder holds no readable model config.
    """
    return int(saved_spec(model_dir).get("in_bands") or 3)


def saved_sensor_bands(model_dir: str | Path) -> dict[str, int]:
    """Sensor → bands of each image tower of a saved sensor model (empty for a one-tower model).

    Raises:
        ModelError: The folder holds no readable model config.
    """
    sensors = saved_spec(model_dir).get("sensors") or {}
    return {sensor: int(spec["in_bands"]) for sensor, spec in sensors.items()}


def fit_model_to_data(built: BuiltModel, dataset: ManifestDataset, column: str = "image") -> BuiltModel:
    """The model a fit trains on ``dataset``: ``built`` itself, or its RGB tower narrowed to the data's band.

    Only an RGB tower given one band with statistics changes (see :func:`image_inputs`): its first
    convolution takes the band by the widening rule of :mod:`rsvl.models.bands`.

    Args:
        built: ``(model, preprocess_train, preprocess_val, tokenizer)`` (fresh or ``train.init_from``).
        dataset: The fit's training data.
        column: Its media column.

    Returns:
        ``built``, or the adapted 4-tuple (the model changed in place, its ``rsvl_spec`` updated).
    """
    model, _, _, tokenizer = built
    spec = model.rsvl_spec
    bands, stats = image_inputs(dataset, column)
    if stats is None or bands == spec["in_bands"] or spec["in_bands"] != 3:
        return built
    mean, std, names = normalisation_from_stats(stats, bands)
    with torch.random.fork_rng(devices=[]):  # the new convolution's random init is overwritten; keep the seed stream
        widen_first_conv(model.visual, bands, names)
    model.rsvl_spec = {**spec, "in_bands": bands, "bands": names, "widening": WIDENING_RULE,
                       "normalisation": {"mean": mean, "std": std}}
    train, val = make_preprocess(spec["image_size"], mean, std, spec["interpolation"])
    return model, train, val, tokenizer


def tower_bands_after(dataset: ManifestDataset, column: str, in_bands: int, where: str) -> int:
    """Check ``dataset`` fits a tower taking ``in_bands`` and return the bands it takes after training on it.

    Raises:
        DataError: The bands do not fit (:func:`check_bands_fit`).
    """
    bands = data_bands(dataset, column)
    check_bands_fit(bands, in_bands, where)
    stats = image_inputs(dataset, column)[1]
    return bands if stats is not None and in_bands == 3 else in_bands


def check_bands_fit(bands: int, in_bands: int, where: str) -> None:
    """Refuse data whose bands the model's image tower cannot take (equal, or one band for RGB).

    Args:
        bands: Bands of the data.
        in_bands: Bands of the model.
        where: The dataset (and stage) for the message.

    Raises:
        DataError: The counts fit neither directly nor by repeating a single band.
    """
    if bands != in_bands and not (bands == 1 and in_bands == 3):
        raise DataError(
            f"{where}: the images have {bands} band(s) but the model's image tower takes {in_bands}; every "
            "stage trains one tower, so its data must have the bands the tower takes (or one band for an RGB "
            "tower: repeated, or with band statistics taken by a narrowed first convolution)"
        )


class CaptionPairs(Dataset):
    """Image-caption samples of a ManifestDataset, drawn deterministically per epoch.

    Args:
        samples: The split to read.
        preprocess: Image transform (``preprocess_train`` of :func:`rsvl.models.build_model`).
        media: Media column the image tower reads (``image``, ``s1``, ``s2``).
        seed: Run seed.
    """

    def __init__(self, samples: ManifestDataset, preprocess: Callable[[Any], torch.Tensor],
                 media: str = "image", seed: int = 0) -> None:
        self.samples = samples
        self.preprocess = preprocess
        self.media = media
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose captions and augmentations the next reads draw."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        where = f"{self.samples.root} sample {sample['sample_id']!r}"
        if self.media not in sample:
            raise DataError(f"{where}: no {self.media!r} media")
        captions = sample.get("captions")
        if not captions:
            raise DataError(f"{where}: no captions to train on")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues a seed for each accelerator not yet
            # started, recording a formatted stack each time (0.2-0.7 ms a sample); the augmentation draws
            # from the CPU generator, and the train step seeds every device before its forward pass
            torch.default_generator.manual_seed(int(rng.integers(2**SEED_BITS)))
            image = self.preprocess(sample[self.media])
        item = {"sample_id": sample["sample_id"], "image": image, "caption": str(captions[rng.integers(len(captions))])}
        for key in ("long_caption", "lat", "lon"):
            if key in sample:
                item[key] = sample[key]
        return item


TEXT_SOURCES = {"text": "captions", "long_text": "long captions", "short_text": "short texts"}
TRUNCATED_PREFIX = "truncated_"
"""A fit's count of the training texts of a field its tokenizer cut is logged as ``truncated_<field>``."""


def truncated_texts(tokenizer: Callable[[list[str]], torch.Tensor], samples: ManifestDataset,
                    fields: Sequence[str]) -> dict[str, tuple[int, int]]:
    """How many of the training texts each text field tokenizes are longer than the model's context.

    The tokenizer cuts them at its context length (77, or 248 for a stretched LRSCLIP model), so
    what comes after is never seen; a fit logs the counts (:class:`rsvl.train.loop`).

    Args:
        tokenizer: The model's open_clip tokenizer.
        samples: The training split.
        fields: The objective's batch fields; ``text`` counts every caption, ``long_text`` every
            long caption, ``short_text`` every long caption's first sentence.

    Returns:
        Field → ``(texts longer than the context, texts)``, for the text fields among ``fields``.
    """
    from rsvl.models.token_counts import overlong

    wanted = [field for field in fields if field in TEXT_SOURCES]
    texts: dict[str, list[str]] = {field: [] for field in wanted}
    for index in range(len(samples) if wanted else 0):
        record = samples.record(index)
        long_caption = record.get("long_caption")
        for field in wanted:
            if field == "text":
                texts[field].extend(str(c) for c in record.get("captions") or [])
            elif long_caption:
                texts[field].append(str(long_caption) if field == "long_text" else first_sentence(str(long_caption)))
    return {field: (overlong(tokenizer, values), len(values)) for field, values in texts.items()}


class TextImageCollate:
    """Stack images and tokenize text into the batch fields an objective asks for.

    Args:
        tokenizer: open_clip tokenizer (list of str -> LongTensor).
        fields: Entries of :data:`BATCH_FIELDS` to build.

    Raises:
        ValueError: A field is not one of :data:`BATCH_FIELDS`.
    """

    def __init__(self, tokenizer: Callable[[list[str]], torch.Tensor], fields: Sequence[str]) -> None:
        unknown = sorted(set(fields) - set(BATCH_FIELDS))
        if unknown:
            raise ValueError(f"unknown batch fields {unknown}; known: {list(BATCH_FIELDS)}")
        self.tokenizer = tokenizer
        self.fields = tuple(fields)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"sample_id": [item["sample_id"] for item in items]}
        if "image" in self.fields:
            batch["image"] = torch.stack([item["image"] for item in items])
        if "text" in self.fields:
            batch["text"] = self.tokenizer([item["caption"] for item in items])
        if "caption" in self.fields:
            batch["caption"] = [item["caption"] for item in items]
        if "long_text" in self.fields:
            batch["long_text"] = self.tokenizer([_required(item, "long_caption") for item in items])
        if "short_text" in self.fields:
            batch["short_text"] = self.tokenizer([first_sentence(_required(item, "long_caption")) for item in items])
        if "location" in self.fields:
            coords = [[float(_required(item, "lat")), float(_required(item, "lon"))] for item in items]
            batch["location"] = torch.tensor(coords, dtype=torch.float32)
        return batch


def _required(item: dict[str, Any], key: str) -> Any:
    if key not in item:
        raise DataError(f"sample {item['sample_id']!r} has no {key!r}, which the objective needs")
    return item[key]


class EpochBatchSampler(Sampler[list[int]]):
    """This worker's share of each global batch, in an order fixed by ``(seed, epoch)``.

    A global batch is ``batch_size * world_size`` samples of one permutation of the dataset; the
    last incomplete global batch is dropped (contrastive losses want full batches). Worker
    ``rank`` takes slice ``rank`` of each global batch.

    Args:
        size: Number of samples.
        batch_size: Samples per worker per step.
        rank: This worker's rank.
        world_size: Number of workers.
        seed: Run seed.

    Raises:
        DataError: The dataset holds fewer samples than one global batch.
    """

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        self.size, self.batch_size, self.rank, self.world_size, self.seed = size, batch_size, rank, world_size, seed
        self.global_batch = batch_size * world_size
        if size < self.global_batch:
            raise DataError(
                f"{size} training samples are fewer than one global batch "
                f"({batch_size} per worker x {world_size} workers); lower train.batch_size"
            )
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start_batch`` on (to resume mid-epoch)."""
        self.epoch, self.start = epoch, start_batch

    def __len__(self) -> int:
        return self.size // self.global_batch

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        for batch in range(self.start, len(self)):
            first = batch * self.global_batch + self.rank * self.batch_size
            yield order[first:first + self.batch_size].tolist()


class EpochBatches:
    """A fit's batches, epoch by epoch: one stream of pairs, or one per sensor taken together.

    With one stream (key ``None``) the loader's batches pass through. With sensor streams
    (``train.sensors``) each step takes one batch of every sensor, never mixed, and yields
    ``{"sample_id": all ids, "sensors": {sensor: that sensor's batch}}``; an epoch is as many
    steps as the sensor with the fewest batches has (the others' surplus batches of that epoch's
    permutation are skipped), so every sensor keeps its own resumable ``(seed, epoch)`` order.

    Args:
        streams: Stream key (sensor, or ``None``) → ``(sampler, pairs, loader)``.
    """

    def __init__(self, streams: dict[str | None, tuple[EpochBatchSampler, CaptionPairs, Any]]) -> None:
        self.streams = streams

    def __len__(self) -> int:
        return min(len(sampler) for sampler, _, _ in self.streams.values())

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start_batch`` on, in every stream."""
        for sampler, pairs, _ in self.streams.values():
            sampler.set_epoch(epoch, start_batch)
            pairs.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if list(self.streams) == [None]:
            yield from self.streams[None][2]
            return
        sensors = list(self.streams)
        for parts in zip(*(loader for _, _, loader in self.streams.values())):
            yield {"sample_id": [sid for part in parts for sid in part["sample_id"]],
                   "sensors": dict(zip(sensors, parts))}
