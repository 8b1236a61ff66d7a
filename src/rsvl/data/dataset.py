"""The loader training and evaluation use: a canonical dataset as a torch ``Dataset``.

Samples are uniform dicts (torchgeo style) so one collate function and one trainer serve all
modalities: rasters are float32 tensors (bands, height, width), text and annotations keep their
manifest types. Only columns that apply to a sample appear in its dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rsvl.data.media import load_raster
from rsvl.data.schema import MEDIA_COLUMNS
from rsvl.data.store import read_manifest, read_meta, relative_to_dataset

Transform = Callable[[dict[str, Any]], dict[str, Any]]

ANNOTATION_COLUMNS = (
    "captions",
    "long_caption",
    "label",
    "labels",
    "boxes",
    "lat",
    "lon",
    "timestamp",
    "vqa",
)


class ManifestDataset(Dataset):
    """A canonical dataset directory read as a map-style torch dataset.

    Args:
        root: Dataset directory (``dataset.json`` + ``manifest.parquet`` + ``media/``).
        split: Keep only this split (``train``/``val``/``test``); ``None`` keeps all.
        transforms: Called on each sample dict; returns the transformed dict.
        load_media: Set False to read annotations only (text-side work, statistics).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        transforms: Transform | None = None,
        load_media: bool = True,
    ) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        frame = read_manifest(self.root)
        if split is not None:
            frame = frame[frame["split"] == split].reset_index(drop=True)
        self.frame = frame
        self.transforms = transforms
        self.load_media = load_media

    def __len__(self) -> int:
        return len(self.frame)

    def record(self, index: int) -> dict[str, Any]:
        """Return the manifest row at ``index`` as a plain dict (no media decoded)."""
        return self.frame.iloc[index].to_dict()

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.record(index)
        sample: dict[str, Any] = {
            "sample_id": row["sample_id"],
            "split": row["split"],
            "modality": row["modality"],
        }
        for column in MEDIA_COLUMNS:
            rel = row[column]
            if rel is None:
                continue
            sample[f"{column}_path"] = rel
            if self.load_media:
                array = load_raster(relative_to_dataset(self.root, rel))
                sample[column] = torch.from_numpy(np.ascontiguousarray(array))
        for column in ANNOTATION_COLUMNS:
            value = row[column]
            if value is None or (isinstance(value, list) and not value):
                continue
            sample[column] = value
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def with_media(self, column: str) -> "ManifestDataset":
        """The rows that have ``column`` media (a sensor's rows of an unpaired S1/S2 set), as a new dataset.

        Args:
            column: A media column (``image``, ``s1``, ``s2``).
        """
        return self.subset(self.frame[column].notna().tolist())

    def subset(self, keep: Sequence[bool]) -> "ManifestDataset":
        """The rows where ``keep`` is true, in their order, as a new dataset (same root, meta, transforms).

        Args:
            keep: One flag per row.

        Raises:
            ValueError: ``keep`` does not have one flag per row.
        """
        flags = [bool(flag) for flag in keep]
        if len(flags) != len(self.frame):
            raise ValueError(f"{len(flags)} flags for the {len(self.frame)} rows of {self.root}")
        subset = ManifestDataset.__new__(ManifestDataset)
        subset.__dict__.update(self.__dict__)
        subset.frame = self.frame[flags].reset_index(drop=True)
        return subset

    @property
    def band_stats(self) -> dict[str, dict[str, list[float]]]:
        """Per-band mean/std recorded by the adapter or generator (empty when none)."""
        return self.meta.get("band_stats", {})
