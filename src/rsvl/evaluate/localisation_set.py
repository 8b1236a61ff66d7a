"""An eval set's rows as semantic-localisation scenes: the image, its 0/1 target mask and the query.

The ``localisation`` task of :mod:`rsvl.evaluate.runner` scores every row of a set with
:func:`rsvl.evaluate.localisation.localisation_report`. A row needs a ``mask`` (a single-band
raster of the image's size, 0 = background and 1 = target, as
:func:`rsvl.data.synthetic.localisation_scenes.write_localisation_dataset` writes it) and a
caption; the first caption is the query. :func:`check_rows` refuses a set with a row lacking
either before any model work, naming the set and the row; :func:`load_scene` checks the mask's
values and size as it reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rsvl.data.dataset import ManifestDataset
from rsvl.errors import DataError
from rsvl.evaluate.report import display_image

MASK_RULE = "0 (background) or 1 (target)"


@dataclass(frozen=True)
class RowScene:
    """One eval-set row ready for :func:`rsvl.evaluate.localisation.localisation_report`.

    Attributes:
        name: The row's sample id.
        image: float32 (H, W, bands) pixels in the raster's units (what the model's preprocessing takes).
        mask: bool (H, W), True on target pixels.
        query: The text to localise (the row's first caption).
        label: The row's ``label`` (the target kind), or ``None``.
        picture: (H, W, 3) in [0, 1], the image as the report draws it.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    query: str
    label: str | None
    picture: np.ndarray


def _where(dataset: ManifestDataset, set_name: str, row: int) -> str:
    record = dataset.record(row)
    return f"eval set {set_name!r}: sample {record['sample_id']!r} (row {row} of {dataset.root})"


def check_rows(dataset: ManifestDataset, set_name: str) -> None:
    """Refuse rows without a mask or a caption, before any heat map is computed.

    Args:
        dataset: The rows to score.
        set_name: The eval set's name, for the message.

    Raises:
        DataError: A row has no ``mask`` or no caption (the first such row is named).
    """
    for row in range(len(dataset)):
        _check_row(dataset, row, set_name)


def _check_row(dataset: ManifestDataset, row: int, set_name: str) -> None:
    record = dataset.record(row)
    if not record.get("mask"):
        raise DataError(f"{_where(dataset, set_name, row)} has no mask; localisation needs a ground-truth "
                        f"mask ({MASK_RULE}) on every row")
    captions = record.get("captions")
    if captions is None or len(captions) == 0 or not str(captions[0]).strip():
        raise DataError(f"{_where(dataset, set_name, row)} has no caption; localisation reads its first "
                        "caption as the query")


def load_scene(dataset: ManifestDataset, row: int, set_name: str, media: str = "image",
               band_names: Sequence[str] | None = None) -> RowScene:
    """Read one row's image, mask and query.

    Args:
        dataset: The rows to score.
        row: Position of the row.
        set_name: The eval set's name, for messages.
        media: The media column holding the image.
        band_names: Band names, to pick the drawn picture's red, green and blue.

    Returns:
        The scene.

    Raises:
        DataError: The mask or the query is missing, the mask has more than one band, another size
            than the image, or a value other than 0 and 1.
    """
    _check_row(dataset, row, set_name)
    sample = dataset[row]
    where = _where(dataset, set_name, row)
    image = np.asarray(sample[media], dtype=np.float32)
    mask = np.asarray(sample["mask"])
    if mask.shape[0] != 1:
        raise DataError(f"{where}: mask {sample['mask_path']} has {mask.shape[0]} bands; it must be single-band")
    if mask.shape[1:] != image.shape[1:]:
        raise DataError(f"{where}: mask {sample['mask_path']} is {mask.shape[2]}x{mask.shape[1]} px, the image "
                        f"{image.shape[2]}x{image.shape[1]} px")
    values = np.unique(mask)
    stray = values[~np.isin(values, (0, 1))]
    if len(stray):
        shown = ", ".join(f"{value:g}" for value in stray[:5]) + (" ..." if len(stray) > 5 else "")
        raise DataError(f"{where}: mask {sample['mask_path']} holds the values {shown}; "
                        f"every pixel must be {MASK_RULE}")
    label = sample.get("label")
    return RowScene(name=str(sample["sample_id"]), image=image.transpose(1, 2, 0), mask=mask[0] == 1,
                    query=str(sample["captions"][0]), label=None if label is None else str(label),
                    picture=display_image(image, band_names))


def means_by_label(labels: Sequence[str | None], values: Sequence[float]) -> dict[str, float]:
    """The mean value per label, labels in sorted order; rows without a label are left out.

    Args:
        labels: Each row's label.
        values: Each row's value.

    Returns:
        Label → mean of its rows' values.
    """
    groups: dict[str, list[float]] = {}
    for label, value in zip(labels, values):
        if label is not None:
            groups.setdefault(label, []).append(float(value))
    return {label: float(np.mean(groups[label])) for label in sorted(groups)}
