"""The canonical dataset format shared by every paper, adapter and training step.

A dataset is a directory::

    DIR/dataset.json        metadata: schema version, name, kind, adapter, source, counts
    DIR/manifest.parquet    one row per sample (the columns below)
    DIR/files.parquet       provenance of every media file: path, sha256, bytes, source path
    DIR/quarantine.parquet  rows that broke a rule, one reason each (ingest and validate stages)
    DIR/media/...           images (PNG/JPEG/TIFF) and band arrays (``.npy``, float32, CHW)

One row per sample, whatever the modality. Columns that do not apply to a sample are null
(scalars) or empty (lists), so one reader serves optical scenes, SAR chips, paired S1/S2
patches, captioned images and VQA sets alike.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

SCHEMA_VERSION: Final[int] = 1

SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
MODALITIES: Final[tuple[str, ...]] = ("optical", "sar", "multispectral", "s1s2")
KINDS: Final[tuple[str, ...]] = (
    "classification",
    "captioning",
    "detection",
    "multisensor",
    "vqa",
)

MEDIA_COLUMNS: Final[tuple[str, ...]] = ("image", "s1", "s2", "mask")
"""Columns that hold a media path relative to the dataset directory."""

IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
ARRAY_SUFFIXES: Final[frozenset[str]] = frozenset({".npy"})

BOX_TYPE: Final = pa.struct(  # pixel edges, x_max/y_max exclusive (COCO x+w); see rsvl.data.boxes
    [
        ("x_min", pa.float64()),
        ("y_min", pa.float64()),
        ("x_max", pa.float64()),
        ("y_max", pa.float64()),
        ("label", pa.string()),
    ]
)
QA_TYPE: Final = pa.struct(
    [
        ("question", pa.string()),
        ("answer", pa.string()),
        ("type", pa.string()),
    ]
)

MANIFEST_SCHEMA: Final = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("image", pa.string()),
        pa.field("s1", pa.string()),
        pa.field("s2", pa.string()),
        pa.field("mask", pa.string()),
        pa.field("bands", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("captions", pa.list_(pa.string())),
        pa.field("long_caption", pa.string()),
        pa.field("label", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("boxes", pa.list_(BOX_TYPE)),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("timestamp", pa.string()),
        pa.field("vqa", pa.list_(QA_TYPE)),
        pa.field("source", pa.string()),
    ],
    metadata={"rsvl_schema_version": str(SCHEMA_VERSION)},
)
"""Arrow schema of ``manifest.parquet``; ``timestamp`` is ISO 8601 text (UTC unless an offset is given)."""

FILES_SCHEMA: Final = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("source_path", pa.string()),
    ]
)

QUARANTINE_SCHEMA: Final = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("where", pa.string(), nullable=False),
        pa.field("sample_id", pa.string()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)
"""``where`` names the source file and row (``labels.csv:12``) or the manifest row."""

LIST_COLUMNS: Final[tuple[str, ...]] = ("captions", "labels", "boxes", "vqa")


def empty_row() -> dict:
    """Return a manifest row with every optional column unset.

    Returns:
        A dict with one key per manifest column: ``None`` for scalars, ``[]`` for lists.
    """
    return {name: ([] if name in LIST_COLUMNS else None) for name in MANIFEST_SCHEMA.names}
