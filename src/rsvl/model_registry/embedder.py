"""The served model: a saved rsvl model behind MLflow's pyfunc interface.

Request: a DataFrame with a ``text`` column, an ``image`` column, or both (strings; an image is
a path, a ``file://`` URI or base64 bytes, see :mod:`rsvl.model_registry.image_input`). A sensor
model (CLOSP: an image tower per sensor) reads any of its towers' band counts, e.g. a 2-band
Sentinel-1 or a 12-band Sentinel-2 ``.npy`` array, and embeds each with the tower taking that
count. A model with a location encoder (GeoCLOSP) also reads ``lat`` and ``lon`` (degrees,
floats; see :mod:`rsvl.model_registry.location_input`). A cell may be empty (``None``, NaN or
blank) when another input of its row is given. Errors name the row by its position in the
request, counting from 0.

Response: a DataFrame with one row per request row and the columns ``text_embedding`` and
``image_embedding``, each an L2-normalised list of floats or ``None`` where the row had no
such input; location models add ``location_embedding`` (rows with both ``lat`` and ``lon``),
captioners (CoCa: the model has ``generate``) add ``caption`` for rows with an image.
Embeddings of all towers share one space, so ``text_embedding · image_embedding`` is the
cosine similarity the model was trained on (and an S1 and an S2 image compare through it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.exceptions import MlflowException
from mlflow.types.schema import Array, ColSpec, DataType, Schema
from torch import nn

from rsvl.errors import DataError, ModelError
from rsvl.evaluate.captioning import decode_tokens, is_captioner
from rsvl.models import load_model
from rsvl.models.files import MODEL_DIR_ARTIFACT
from rsvl.model_registry.image_input import accepted_bands, encode_image, read_image
from rsvl.model_registry.location_input import LAT, LON, read_locations

TEXT, IMAGE = "text", "image"
TEXT_EMBEDDING, IMAGE_EMBEDDING, CAPTION = "text_embedding", "image_embedding", "caption"
LOCATION_EMBEDDING = "location_embedding"
BATCH = 32
EXAMPLE_TEXT = "farmland next to a river"
EXAMPLE_SIDE = 16
EXAMPLE_PLACES = ((46.95, 7.45), (-33.87, 151.21))


def served_bands(spec: Mapping[str, Any]) -> tuple[int, ...]:
    """The band counts a model's image towers read, sorted, from its ``rsvl`` spec/config section.

    Args:
        spec: ``model.rsvl_spec`` or the ``rsvl`` section of a saved ``open_clip_config.json``:
            a sensor model has ``sensors`` (each with ``in_bands``), others ``in_bands``.

    Returns:
        ``(in_bands,)`` for a single-tower model, one count per sensor tower otherwise (``(2, 12)``).

    Raises:
        ModelError: The spec names no band count.
    """
    sensors = spec.get("sensors")
    if sensors:
        return accepted_bands([int(sensor["in_bands"]) for sensor in sensors.values()])
    if spec.get("in_bands") is None:
        raise ModelError("the model spec has neither 'in_bands' nor 'sensors'; cannot tell what images it reads")
    return accepted_bands(int(spec["in_bands"]))


def serves_locations(spec: Mapping[str, Any]) -> bool:
    """Whether a model's ``rsvl`` spec/config section has a location encoder (GeoCLOSP)."""
    return bool(spec.get("location"))


@dataclass
class LoadedEmbedder:
    """A saved model ready to embed: eval mode, validation preprocessing, tokenizer."""

    model: nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    device: torch.device

    @property
    def in_bands(self) -> tuple[int, ...]:
        """Band counts the image towers read, sorted: ``(3,)`` for RGB, ``(2, 12)`` for S1 + S2 towers."""
        return served_bands(self.model.rsvl_spec)

    @property
    def has_location(self) -> bool:
        """Whether the model embeds ``[latitude, longitude]`` (GeoCLOSP's location encoder)."""
        return getattr(self.model, "location", None) is not None

    @property
    def captions(self) -> bool:
        """Whether the model writes captions (CoCa)."""
        return is_captioner(self.model)


def load_embedder(model_dir: str | Path, device: str | torch.device | None = None) -> LoadedEmbedder:
    """Load a saved rsvl model folder for inference.

    Args:
        model_dir: Folder written by :func:`rsvl.models.save_model`.
        device: Where to run; default CUDA when available, else CPU.

    Raises:
        ModelError: The folder is not a loadable saved model.
    """
    model, _, preprocess_val, tokenizer = load_model(model_dir)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return LoadedEmbedder(model.eval().to(target), preprocess_val, tokenizer, target)


def _present(value: Any) -> bool:
    """False for an empty cell: None, NaN/NA, or a blank string."""
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (bytes, bytearray)):
        return bool(value)
    return value is not None and not (np.ndim(value) == 0 and pd.isna(value))


def _rows_of(frame: pd.DataFrame, column: str) -> list[int]:
    if column not in frame.columns:
        return []
    return [row for row, value in enumerate(frame[column].tolist()) if _present(value)]


def _as_lists(embeddings: torch.Tensor) -> list[list[float]]:
    return embeddings.float().cpu().tolist()


def _empty_row_error(embedder: LoadedEmbedder, row: int) -> DataError:
    if embedder.has_location:
        return DataError(f"row {row}: needs a '{TEXT}', an '{IMAGE}' or a '{LAT}'/'{LON}' pair, all are empty")
    return DataError(f"row {row}: needs a '{TEXT}' or an '{IMAGE}' value, both are empty")


@torch.no_grad()
def _embed_images(embedder: LoadedEmbedder, frame: pd.DataFrame, image_rows: list[int],
                  out: dict[str, list[Any]]) -> None:
    """Fill ``image_embedding`` (and ``caption``) of ``image_rows``, a batch per band count."""
    model, device = embedder.model, embedder.device
    for start in range(0, len(image_rows), BATCH):
        chunk = image_rows[start:start + BATCH]
        arrays = {row: read_image(frame[IMAGE].iloc[row], embedder.in_bands, f"row {row} {IMAGE}") for row in chunk}
        # a sensor model's towers read different band counts (S1: 2, S2: 12): one batch per count
        for bands in sorted({array.shape[0] for array in arrays.values()}):
            rows = [row for row in chunk if arrays[row].shape[0] == bands]
            pixels = torch.stack([embedder.preprocess(arrays[row]) for row in rows]).to(device)
            for row, vector in zip(rows, _as_lists(model.encode_image(pixels, normalize=True))):
                out[IMAGE_EMBEDDING][row] = vector
            if embedder.captions:
                for row, tokens in zip(rows, model.generate(pixels).cpu().tolist()):
                    out[CAPTION][row] = decode_tokens(tokens, embedder.tokenizer, getattr(model, "pad_id", 0))


@torch.no_grad()
def embed_frame(embedder: LoadedEmbedder, frame: pd.DataFrame) -> pd.DataFrame:
    """Embed the texts, images (and locations) of a request (see the module docstring for both layouts).

    Args:
        embedder: The loaded model.
        frame: Request rows with ``text`` and/or ``image`` columns (and ``lat``/``lon`` for a
            location model).

    Returns:
        ``text_embedding``, ``image_embedding`` (then ``location_embedding`` for location models,
        ``caption`` for captioners), same index.

    Raises:
        DataError: No known column, a row with no input, a non-string text, an image that cannot
            be read or has a band count no tower reads, or a bad location (``lat``/``lon`` sent to a
            model without a location encoder, only one of them, out of range); the message names the row.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a DataFrame with '{TEXT}' and/or '{IMAGE}' columns, got {type(frame).__name__}")
    location_rows, latlon = read_locations(frame, embedder.has_location)
    if TEXT not in frame.columns and IMAGE not in frame.columns and not location_rows:
        wanted = f"'{TEXT}' and/or '{IMAGE}'" + (f" (or '{LAT}' and '{LON}')" if embedder.has_location else "")
        raise DataError(f"request has columns {list(frame.columns)}; it needs {wanted}")
    text_rows, image_rows = _rows_of(frame, TEXT), _rows_of(frame, IMAGE)
    empty = sorted(set(range(len(frame))) - set(text_rows) - set(image_rows) - set(location_rows))
    if empty:
        raise _empty_row_error(embedder, empty[0])
    texts = [frame[TEXT].iloc[row] for row in text_rows]
    for row, text in zip(text_rows, texts):
        if not isinstance(text, str):
            raise DataError(f"row {row} {TEXT}: expected a string, got {type(text).__name__}")
    model, device = embedder.model, embedder.device
    out: dict[str, list[Any]] = {TEXT_EMBEDDING: [None] * len(frame), IMAGE_EMBEDDING: [None] * len(frame)}
    for start in range(0, len(texts), BATCH):
        tokens = embedder.tokenizer(texts[start:start + BATCH]).to(device)
        vectors = _as_lists(model.encode_text(tokens, normalize=True))
        for row, vector in zip(text_rows[start:start + BATCH], vectors):
            out[TEXT_EMBEDDING][row] = vector
    if embedder.has_location:
        out[LOCATION_EMBEDDING] = [None] * len(frame)
        for start in range(0, len(location_rows), BATCH):
            points = torch.from_numpy(latlon[start:start + BATCH]).to(device)
            vectors = _as_lists(model.encode_location(points, normalize=True))
            for row, vector in zip(location_rows[start:start + BATCH], vectors):
                out[LOCATION_EMBEDDING][row] = vector
    if embedder.captions:
        out[CAPTION] = [None] * len(frame)
    _embed_images(embedder, frame, image_rows, out)
    return pd.DataFrame({column: pd.Series(values, index=frame.index, dtype=object) for column, values in out.items()})


class RsvlEmbedder(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc that loads the ``model_dir`` artifact with :func:`rsvl.models.load_model`."""

    def load_context(self, context: Any) -> None:
        """Load the saved model folder MLflow copied next to the pyfunc."""
        self.embedder = load_embedder(context.artifacts[MODEL_DIR_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Embed a request DataFrame (see :func:`embed_frame`).

        Raises:
            MlflowException: ``INVALID_PARAMETER_VALUE`` (HTTP 400 from ``mlflow models serve``) with the
                row and the rule for a request it cannot read: a bad or oversized image, a missing column.
        """
        try:
            return embed_frame(self.embedder, model_input)
        except DataError as err:  # the caller's fault: a 4xx with our message, not MLflow's generic one
            raise MlflowException.invalid_parameter_value(str(err)) from err


def signature(captioner: bool, location: bool = False) -> ModelSignature:
    """The pyfunc's signature: optional ``text``/``image`` strings in, embeddings (and caption) out.

    Args:
        captioner: Add the ``caption`` output column.
        location: Add the optional ``lat``/``lon`` double inputs and the ``location_embedding``
            output (a model with a location encoder).
    """
    inputs = [ColSpec(DataType.string, TEXT, required=False), ColSpec(DataType.string, IMAGE, required=False)]
    columns = [
        ColSpec(Array(DataType.float), TEXT_EMBEDDING, required=False),
        ColSpec(Array(DataType.float), IMAGE_EMBEDDING, required=False),
    ]
    if location:
        inputs += [ColSpec(DataType.double, LAT, required=False), ColSpec(DataType.double, LON, required=False)]
        columns.append(ColSpec(Array(DataType.float), LOCATION_EMBEDDING, required=False))
    if captioner:
        columns.append(ColSpec(DataType.string, CAPTION, required=False))
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(columns))


def _example_pixels(bands: int) -> np.ndarray:
    ramp = np.linspace(0, 255, EXAMPLE_SIDE * EXAMPLE_SIDE, dtype=np.float32).reshape(EXAMPLE_SIDE, EXAMPLE_SIDE)
    planes = np.stack([np.roll(ramp, 3 * band, axis=band % 2) for band in range(bands)])
    return planes.astype(np.uint8) if bands == 3 else planes


def input_example(in_bands: int | Collection[int], location: bool = False) -> pd.DataFrame:
    """Request rows the model can read: a caption and a small base64 image per band count it reads.

    Three-band images are 8-bit RGB PNGs; other band counts float32 ``.npy`` arrays, the form
    their data takes (a sensor model gets one row per tower: S1 with 2 bands, S2 with 12). The
    pixel values are a synthetic ramp.

    Args:
        in_bands: Band count of the model, or the counts of its sensor towers.
        location: Give every row ``lat``/``lon`` too (a model with a location encoder).

    Returns:
        One row per band count, columns ``text``, ``image`` (then ``lat``, ``lon``).
    """
    counts = accepted_bands(in_bands)
    example: dict[str, list[Any]] = {
        TEXT: [EXAMPLE_TEXT] * len(counts),
        IMAGE: [encode_image(_example_pixels(bands)) for bands in counts],
    }
    if location:
        places = [EXAMPLE_PLACES[row % len(EXAMPLE_PLACES)] for row in range(len(counts))]
        example[LAT] = [lat for lat, _ in places]
        example[LON] = [lon for _, lon in places]
    return pd.DataFrame(example)
