"""Saving and loading the closed-set VQA models as a folder, without unpickling anything.

A saved VQA model sits on a saved CLIP (:func:`rsvl.models.save_model`) and names it by the
SHA-256 of the CLIP's weights file rather than copying it, so the folder is a few kilobytes and
cannot silently be paired with another CLIP. The folder holds:

* ``vqa_model.json``: format and version, ``kind`` (``linear_head``, ``spatial_head`` or
  ``answer_ranker``), the ``clip`` it sits on (weights SHA-256 and architecture), the closed
  ``vocabulary`` (sorted answers per question), and for the heads their feature ``normalisation``
  and the tensor name of each question's ``heads`` entry; the spatial head also its ``grid``
  (cells a side, principal components per cell). A question's type is not stored: scoring derives it from the question
  (:func:`rsvl.vqa.questions.question_type`).
* ``vqa_heads.safetensors`` (heads only): the standardisation mean and standard deviation,
  each head's ``weight``/``bias``, and for the spatial head the cell projection's ``cell_mean`` and
  ``cell_basis`` (:class:`rsvl.vqa.spatial.CellProjection`).

The folder may come from elsewhere (a pipeline artifact, a registry download), so loading reads
tensors with safetensors only, validates the JSON strictly and checks that the tensors are exactly
the ones the vocabulary calls for, each of its shape, before building the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rsvl.data.store import sha256_file
from rsvl.errors import ModelError
from rsvl.models import load_model
from rsvl.models.io import WEIGHTS_NAME
from rsvl.config.base import StrictModel
from rsvl.vqa.models import ClipAnswerRanker, ClipImageEncoder, ClipLinearHead
from rsvl.vqa.spatial import CellProjection, ClipSpatialHead, GridEncoder

VQA_CONFIG_NAME = "vqa_model.json"
VQA_WEIGHTS_NAME = "vqa_heads.safetensors"
FORMAT = "rsvl-closed-set-vqa"
FORMAT_VERSION = 1
MEAN_KEY, STD_KEY = "feature_mean", "feature_std"
CELL_MEAN_KEY, CELL_BASIS_KEY = "cell_mean", "cell_basis"

ClosedSetModel = ClipLinearHead | ClipAnswerRanker


class ClipReference(StrictModel):
    """The saved CLIP a VQA model was built on, named by the SHA-256 of its weights file."""

    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weights_file: Literal["open_clip_model.safetensors"] = WEIGHTS_NAME
    architecture: str | None = None


class Normalisation(StrictModel):
    """Image features: L2-normalised CLIP embeddings, then standardised with two stored vectors."""

    l2: Literal[True] = True
    mean: Literal["feature_mean"] = MEAN_KEY
    std: Literal["feature_std"] = STD_KEY


class Grid(StrictModel):
    """The spatial head's feature grid: cells a side and principal components kept per cell."""

    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    components: int = Field(ge=1)


class SavedVqa(StrictModel):
    """The contents of ``vqa_model.json``."""

    format: Literal["rsvl-closed-set-vqa"] = FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    kind: Literal["linear_head", "spatial_head", "answer_ranker"]
    clip: ClipReference
    vocabulary: dict[str, list[str]]
    normalisation: Normalisation | None = None
    heads: dict[str, str] = {}
    grid: Grid | None = None


def clip_reference(clip_dir: str | Path, architecture: str | None = None) -> ClipReference:
    """Name the saved CLIP at ``clip_dir`` by its weights' SHA-256.

    Raises:
        ModelError: The folder has no safetensors weights file.
    """
    weights = Path(clip_dir) / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{weights}: missing; a VQA model sits on a CLIP saved by rsvl.models.save_model")
    return ClipReference(weights_sha256=sha256_file(weights), architecture=architecture)


def save_vqa_model(model: ClosedSetModel, out_dir: str | Path, clip_dir: str | Path) -> Path:
    """Write a closed-set VQA model as a folder that :func:`load_vqa_model` reads back.

    Args:
        model: A fitted :class:`ClipLinearHead` (or :class:`ClipSpatialHead`) or a :class:`ClipAnswerRanker`.
        out_dir: Destination folder; created if needed, its files overwritten (an answer ranker
            saved over a linear head removes the heads file it has no use for).
        clip_dir: The saved CLIP the model runs on (recorded by its weights' SHA-256).

    Returns:
        The folder, resolved.

    Raises:
        ModelError: ``model`` is another kind of :class:`rsvl.vqa.models.VqaModel` (a generative
            model keeps its own checkpoint format), or ``clip_dir`` has no weights file.
    """
    if not isinstance(model, (ClipLinearHead, ClipAnswerRanker)):
        raise ModelError(f"cannot save a {type(model).__name__}: only ClipLinearHead and ClipAnswerRanker "
                         "have a saved-folder format; a generative VQA model keeps its own checkpoint")
    architecture = getattr(model.encoder.model, "rsvl_spec", {}).get("architecture")
    vocabulary = {question: list(answers) for question, answers in model.vocabulary.items()}
    saved = {
        "kind": ("spatial_head" if isinstance(model, ClipSpatialHead) else
                 "linear_head" if isinstance(model, ClipLinearHead) else "answer_ranker"),
        "clip": clip_reference(clip_dir, architecture),
        "vocabulary": vocabulary,
    }
    directory = Path(out_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, ClipLinearHead):
        tensors = {MEAN_KEY: model.mean, STD_KEY: model.std}
        heads = {}
        for index, (question, (_, head)) in enumerate(model.heads.items()):
            if head is not None:
                heads[question] = f"heads.{index}"
                tensors[f"heads.{index}.weight"] = head.weight
                tensors[f"heads.{index}.bias"] = head.bias
        saved.update(normalisation=Normalisation(), heads=heads)
        if isinstance(model, ClipSpatialHead):
            projection = model.projection
            tensors.update({CELL_MEAN_KEY: projection.mean, CELL_BASIS_KEY: projection.basis})
            saved["grid"] = Grid(rows=projection.grid[0], cols=projection.grid[1],
                                 components=projection.basis.shape[1])
        save_file({key: value.detach().cpu().float().contiguous() for key, value in tensors.items()},
                  str(directory / VQA_WEIGHTS_NAME), metadata={"format": FORMAT})
    else:
        (directory / VQA_WEIGHTS_NAME).unlink(missing_ok=True)
    (directory / VQA_CONFIG_NAME).write_text(SavedVqa(**saved).model_dump_json(indent=1) + "\n", encoding="utf-8")
    return directory


def read_vqa_config(vqa_dir: str | Path) -> SavedVqa:
    """Read and check ``vqa_model.json`` (types, format version, closed answer sets, one head per open question).

    Raises:
        ModelError: The file is missing, not JSON, or breaks a rule (the file and rule are named).
    """
    path = Path(vqa_dir) / VQA_CONFIG_NAME
    if not path.is_file():
        raise ModelError(f"{path}: missing; not a VQA model folder written by rsvl.vqa.save_vqa_model")
    try:
        saved = SavedVqa.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not a valid VQA model description ({err})") from err
    for question, answers in saved.vocabulary.items():
        if not answers or len(set(answers)) != len(answers):
            raise ModelError(f"{path}: the answers of {question!r} must be a non-empty list without repeats")
    if (saved.grid is not None) != (saved.kind == "spatial_head"):
        raise ModelError(f"{path}: a 'grid' belongs to a spatial_head, and a spatial_head needs one")
    if saved.kind in ("linear_head", "spatial_head"):
        if saved.normalisation is None:
            raise ModelError(f"{path}: a {saved.kind} needs its 'normalisation'")
        for question, answers in saved.vocabulary.items():
            if (len(answers) > 1) != (question in saved.heads):
                raise ModelError(f"{path}: question {question!r} has {len(answers)} answers; a head is stored "
                                 "exactly for questions with more than one")
        unknown = sorted(set(saved.heads) - set(saved.vocabulary))
        if unknown:
            raise ModelError(f"{path}: 'heads' names questions {unknown} that are not in 'vocabulary'")
        if len(set(saved.heads.values())) != len(saved.heads):
            raise ModelError(f"{path}: two questions in 'heads' share one tensor name; each head has its own")
    elif saved.heads or saved.normalisation is not None:
        raise ModelError(f"{path}: an answer_ranker has no heads or normalisation")
    return saved


def _check_clip(saved: SavedVqa, vqa_dir: Path, clip_dir: Path) -> None:
    actual = clip_reference(clip_dir).weights_sha256
    if actual != saved.clip.weights_sha256:
        raise ModelError(f"{vqa_dir} was built on the CLIP whose weights have sha256 {saved.clip.weights_sha256}, "
                         f"but {clip_dir / WEIGHTS_NAME} has sha256 {actual}; load it with the CLIP it was fitted on")


def _tensor(tensors: dict[str, torch.Tensor], key: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    if key not in tensors:
        raise ModelError(f"{path}: tensor {key!r} is missing")
    tensor = tensors[key]
    if tuple(tensor.shape) != shape or not tensor.is_floating_point():
        raise ModelError(f"{path}: tensor {key!r} is {tensor.dtype} {tuple(tensor.shape)}, expected float {shape}")
    return tensor.float()


def _heads(saved: SavedVqa, vqa_dir: Path, encoder: ClipImageEncoder) -> ClipLinearHead:
    path = vqa_dir / VQA_WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{path}: missing; a {saved.kind} stores its heads there")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelError(f"{path}: not a readable safetensors file ({err})") from err
    dim = int(encoder.model.rsvl_spec["model_cfg"]["embed_dim"])
    expected = {MEAN_KEY, STD_KEY} | {f"{name}.{part}" for name in saved.heads.values() for part in ("weight", "bias")}
    projection = None
    if saved.grid is not None:
        expected |= {CELL_MEAN_KEY, CELL_BASIS_KEY}
        channels = tensors[CELL_MEAN_KEY].shape[0] if CELL_MEAN_KEY in tensors else 0
        projection = CellProjection(_tensor(tensors, CELL_MEAN_KEY, (channels,), path),
                                    _tensor(tensors, CELL_BASIS_KEY, (channels, saved.grid.components), path),
                                    (saved.grid.rows, saved.grid.cols))
        dim += projection.dim
    mean = _tensor(tensors, MEAN_KEY, (dim,), path)
    std = _tensor(tensors, STD_KEY, (dim,), path)
    extra = sorted(set(tensors) - expected)
    if extra:
        raise ModelError(f"{path}: tensors {extra} belong to no head of {vqa_dir / VQA_CONFIG_NAME}; "
                         "the file must hold exactly the normalisation and the listed heads")
    heads: dict[str, tuple[list[str], nn.Linear | None]] = {}
    for question, answers in saved.vocabulary.items():
        name = saved.heads.get(question)
        if name is None:
            heads[question] = (list(answers), None)
            continue
        head = nn.Linear(dim, len(answers))
        with torch.no_grad():
            head.weight.copy_(_tensor(tensors, f"{name}.weight", (len(answers), dim), path))
            head.bias.copy_(_tensor(tensors, f"{name}.bias", (len(answers),), path))
        heads[question] = (list(answers), head.eval())
    if projection is not None:
        return ClipSpatialHead(encoder, projection, mean, std, heads)
    return ClipLinearHead(encoder, mean, std, heads)


def load_vqa_model(vqa_dir: str | Path, clip_dir: str | Path, device: str | torch.device = "cpu") -> ClosedSetModel:
    """Rebuild a saved closed-set VQA model on its CLIP.

    Args:
        vqa_dir: A folder written by :func:`save_vqa_model`.
        clip_dir: The saved CLIP it was built on (checked by weights SHA-256 before loading).
        device: Where the CLIP runs.

    Returns:
        The :class:`ClipLinearHead`, :class:`ClipSpatialHead` or :class:`ClipAnswerRanker`, answering
        as when it was saved.

    Raises:
        ModelError: A file is missing or malformed, a tensor has the wrong shape, or ``clip_dir``
            holds another CLIP than the one the model was built on.
    """
    directory, clip = Path(vqa_dir).resolve(), Path(clip_dir).resolve()
    saved = read_vqa_config(directory)
    _check_clip(saved, directory, clip)
    model, _, preprocess, tokenizer = load_model(clip)
    model = model.to(device)
    if saved.kind == "answer_ranker":
        return ClipAnswerRanker(model, preprocess, tokenizer, dict(saved.vocabulary), device)
    encoder = (GridEncoder if saved.kind == "spatial_head" else ClipImageEncoder)(model, preprocess, device)
    return _heads(saved, directory, encoder)
