"""Queries against an index folder: nearest images to a vector, within metadata filters.

Filters become a FAISS ID selector, so the index itself skips the excluded entries and ``k``
results come back whenever ``k`` entries pass (no over-fetch and post-filter that can run short).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rsvl.search.index import INDEX, METADATA, read_manifest_file

MAX_K = 1000


class Filters(BaseModel):
    """Metadata filters; an entry must pass every one given (a missing value fails a filter on it).

    Attributes:
        modality: Keep these modalities (``sar``, ``optical``, ``multispectral``).
        media: Keep these media columns (``image``, ``s1``, ``s2``).
        split: Keep these splits.
        bbox: ``[min_lon, min_lat, max_lon, max_lat]`` in degrees; entries without a location fail.
        time_from: Earliest timestamp (ISO 8601, inclusive); entries without one fail.
        time_to: Latest timestamp (ISO 8601, inclusive).
        labels: Keep entries with at least one of these labels.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    modality: list[str] | None = Field(default=None, max_length=16)
    media: list[str] | None = Field(default=None, max_length=3)
    split: list[str] | None = Field(default=None, max_length=8)
    bbox: tuple[float, float, float, float] | None = None
    time_from: str | None = Field(default=None, max_length=40)
    time_to: str | None = Field(default=None, max_length=40)
    labels: list[str] | None = Field(default=None, max_length=64)

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is None:
            return value
        min_lon, min_lat, max_lon, max_lat = value
        if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
            raise ValueError("bbox must be [min_lon, min_lat, max_lon, max_lat] within [-180, 180] x [-90, 90]")
        return value

    @field_validator("time_from", "time_to")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as err:
                raise ValueError(f"{value!r} is not an ISO 8601 date or time") from err
        return value

    @model_validator(mode="after")
    def _order(self) -> "Filters":
        if self.time_from and self.time_to and _utc(self.time_from) > _utc(self.time_to):
            raise ValueError("time_from is after time_to")
        return self

    def empty(self) -> bool:
        """Whether no filter is set."""
        return all(value is None for value in self.model_dump().values())


def _utc(text: str) -> pd.Timestamp:
    stamp = pd.Timestamp(text.replace("Z", "+00:00"))
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclass(frozen=True)
class Hit:
    """One result: the entry's position in the index and its cosine similarity to the query."""

    entry: int
    score: float


class Searcher:
    """An index folder loaded for queries.

    Args:
        index_dir: Folder written by :func:`rsvl.search.index.build_index`.
    """

    def __init__(self, index_dir: str | Path) -> None:
        import faiss

        self.root = Path(index_dir)
        self.manifest = read_manifest_file(self.root)
        self.index = faiss.read_index(str(self.root / INDEX))
        self.metadata = pd.read_parquet(self.root / METADATA)
        self._times = pd.to_datetime(self.metadata["timestamp"], utc=True, errors="coerce", format="ISO8601")
        self._labels = [set(labels) for labels in self.metadata["labels"]]
        if self.index.ntotal != len(self.metadata):
            raise ValueError(f"{self.root}: {self.index.ntotal} vectors but {len(self.metadata)} metadata rows")

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.index.d)

    def allowed(self, filters: Filters) -> np.ndarray | None:
        """The entries that pass ``filters`` as a boolean mask (``None``: no filter set)."""
        if filters.empty():
            return None
        meta = self.metadata
        keep = np.ones(len(meta), dtype=bool)
        for column in ("modality", "media", "split"):
            wanted = getattr(filters, column)
            if wanted is not None:
                keep &= meta[column].isin(wanted).to_numpy()
        if filters.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = filters.bbox
            lat, lon = meta["lat"].astype("float64").to_numpy(), meta["lon"].astype("float64").to_numpy()
            with np.errstate(invalid="ignore"):
                keep &= (lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon)
        if filters.time_from is not None:
            keep &= (self._times >= _utc(filters.time_from)).fillna(False).to_numpy(dtype=bool)
        if filters.time_to is not None:
            keep &= (self._times <= _utc(filters.time_to)).fillna(False).to_numpy(dtype=bool)
        if filters.labels is not None:
            wanted_labels = set(filters.labels)
            keep &= np.array([bool(labels & wanted_labels) for labels in self._labels], dtype=bool)
        return keep

    def search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` entries most similar to ``vector`` that pass ``filters``, best first.

        Args:
            vector: An L2-normalised query embedding of width :attr:`dim`.
            k: Results wanted, 1 to :data:`MAX_K`.
            filters: Metadata filters (``None``: none).

        Returns:
            Up to ``k`` hits (fewer when fewer entries pass), ties in index order.

        Raises:
            ValueError: ``k`` out of range or a vector of another width.
        """
        import faiss

        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.dim:
            raise ValueError(f"query embedding has {query.shape[1]} values; the index holds {self.dim}")
        mask = self.allowed(filters) if filters is not None else None
        params: Any = None
        if mask is not None:
            ids = np.flatnonzero(mask).astype(np.int64)
            if not len(ids):
                return []
            selector = faiss.IDSelectorBatch(ids)
            if isinstance(self.index, faiss.IndexHNSW):
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.index.hnsw.efSearch, k))
            else:
                params = faiss.SearchParameters(sel=selector)
        elif isinstance(self.index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(self.index.hnsw.efSearch, k))
        scores, entries = self.index.search(query, min(k, self.index.ntotal), params=params)
        return [Hit(int(e), float(s)) for e, s in zip(entries[0], scores[0]) if e >= 0]

    def describe(self, entry: int) -> dict[str, Any]:
        """The metadata of an entry as plain JSON values."""
        row = self.metadata.iloc[entry]

        def plain(value: Any) -> Any:
            if value is None or (np.ndim(value) == 0 and pd.isna(value)):
                return None
            return value.item() if hasattr(value, "item") else value

        return {"sample_id": row["sample_id"], "media": row["media"], "modality": row["modality"],
                "split": row["split"], "lat": plain(row["lat"]), "lon": plain(row["lon"]),
                "timestamp": plain(row["timestamp"]), "labels": [str(x) for x in row["labels"]],
                "caption": plain(row["caption"])}
