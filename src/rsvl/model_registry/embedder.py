"""The served model: a saved rsvl model behind MLflow's pyfunc interface.

Request: a DataFrame with a ``text`` column, an ``image`` column, or both (strings; an image is
a path, a ``file://`` URI or base64 bytes, see :mod:`rsvl.model_registry.image_input`). A cell may be
empty (``None``, NaN or blank) when the other column of its row is given. Errors name the row
by its position in the request, counting from 0.

Response: a DataFrame with one row per request row and the columns ``text_embedding`` and
``image_embedding``, each an L2-normalised list of floats or ``None`` where the row had no
such input; captioners (CoCa: the model has ``generate``) add ``caption`` for rows with an image.
Embeddings of both towers share one space, so ``text_embedding · image_embedding`` is the
cosine similarity the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, DataType, Schema
from torch import nn

from rsvl.errors import DataError
from rsvl.evaluate.captioning import decode_tokens, is_captioner
from rsvl.models import load_model
from rsvl.model_registry.image_input import encode_image, read_image

MODEL_DIR_ARTIFACT = "model_dir"
TEXT, IMAGE = "text", "image"
TEXT_EMBEDDING, IMAGE_EMBEDDING, CAPTION = "text_embedding", "image_embedding", "caption"
BATCH = 32
EXAMPLE_TEXT = "farmland next to a river"
EXAMPLE_SIDE = 16


@dataclass
class LoadedEmbedder:
    """A saved model ready to embed: eval mode, validation preprocessing, tokenizer."""

    model: nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    device: torch.device

    @property
    def in_bands(self) -> int:
        """Bands the image tower reads."""
        return int(self.model.rsvl_spec["in_bands"])

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


@torch.no_grad()
def embed_frame(embedder: LoadedEmbedder, frame: pd.DataFrame) -> pd.DataFrame:
    """Embed the texts and images of a request (see the module docstring for both layouts).

    Args:
        embedder: The loaded model.
        frame: Request rows with ``text`` and/or ``image`` columns.

    Returns:
        ``text_embedding``, ``image_embedding`` (and ``caption`` for captioners), same index.

    Raises:
        DataError: No known column, a row with neither input, a non-string text, or an image
            that cannot be read (the message names the row).
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a DataFrame with '{TEXT}' and/or '{IMAGE}' columns, got {type(frame).__name__}")
    if TEXT not in frame.columns and IMAGE not in frame.columns:
        raise DataError(f"request has columns {list(frame.columns)}; it needs '{TEXT}' and/or '{IMAGE}'")
    text_rows, image_rows = _rows_of(frame, TEXT), _rows_of(frame, IMAGE)
    empty = sorted(set(range(len(frame))) - set(text_rows) - set(image_rows))
    if empty:
        raise DataError(f"row {empty[0]}: needs a '{TEXT}' or an '{IMAGE}' value, both are empty")
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
    if embedder.captions:
        out[CAPTION] = [None] * len(frame)
    for start in range(0, len(image_rows), BATCH):
        rows = image_rows[start:start + BATCH]
        pixels = torch.stack([
            embedder.preprocess(read_image(frame[IMAGE].iloc[row], embedder.in_bands, f"row {row} {IMAGE}"))
            for row in rows
        ]).to(device)
        for row, vector in zip(rows, _as_lists(model.encode_image(pixels, normalize=True))):
            out[IMAGE_EMBEDDING][row] = vector
        if embedder.captions:
            for row, tokens in zip(rows, model.generate(pixels).cpu().tolist()):
                out[CAPTION][row] = decode_tokens(tokens, embedder.tokenizer, getattr(model, "pad_id", 0))
    return pd.DataFrame({column: pd.Series(values, index=frame.index, dtype=object) for column, values in out.items()})


class RsvlEmbedder(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc that loads the ``model_dir`` artifact with :func:`rsvl.models.load_model`."""

    def load_context(self, context: Any) -> None:
        """Load the saved model folder MLflow copied next to the pyfunc."""
        self.embedder = load_embedder(context.artifacts[MODEL_DIR_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Embed a request DataFrame (see :func:`embed_frame`)."""
        return embed_frame(self.embedder, model_input)


def signature(captioner: bool) -> ModelSignature:
    """The pyfunc's signature: optional ``text``/``image`` strings in, embeddings (and caption) out.

    Args:
        captioner: Add the ``caption`` output column.
    """
    inputs = Schema([ColSpec(DataType.string, TEXT, required=False), ColSpec(DataType.string, IMAGE, required=False)])
    columns = [
        ColSpec(Array(DataType.float), TEXT_EMBEDDING, required=False),
        ColSpec(Array(DataType.float), IMAGE_EMBEDDING, required=False),
    ]
    if captioner:
        columns.append(ColSpec(DataType.string, CAPTION, required=False))
    return ModelSignature(inputs=inputs, outputs=Schema(columns))


def input_example(in_bands: int) -> pd.DataFrame:
    """One request row: a caption and a small base64 image the model can read.

    Three-band models get an 8-bit RGB PNG; other band counts a float32 ``.npy`` array, the
    form their data takes.
    """
    ramp = np.linspace(0, 255, EXAMPLE_SIDE * EXAMPLE_SIDE, dtype=np.float32).reshape(EXAMPLE_SIDE, EXAMPLE_SIDE)
    planes = np.stack([np.roll(ramp, 3 * band, axis=band % 2) for band in range(in_bands)])
    pixels = planes.astype(np.uint8) if in_bands == 3 else planes
    return pd.DataFrame({TEXT: [EXAMPLE_TEXT], IMAGE: [encode_image(pixels)]})
