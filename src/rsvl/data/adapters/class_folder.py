"""Class-folder scene classification sets (RSSCN7, EuroSAT, UCMerced, AID, RESISC45 layouts).

Layout: ``SOURCE/<images root>/<ClassDir>/<file>`` plus ``SOURCE/labels.csv`` with columns
``filepath,label[,split]`` (``filepath`` relative to the images root). Without a labels CSV the
class is the folder name and the split is assigned deterministically (70/10/20 by file hash).

``bands``/``width``/``height`` come from each image's header (a grey image is 1 band); they stay
null when the header cannot be read, and validation's decode check rejects that row. Quarantine
rules: ``split_value`` and ``file_exists``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from rsvl.data.adapters import register
from rsvl.data.adapters.row_checks import image_header
from rsvl.data.schema import IMAGE_SUFFIXES, SPLITS
from rsvl.data.splits import SPLIT_ALIASES, canonical_split
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError


def normalise_class(name: str) -> str:
    """Lower-case a class name and turn ``_``/``/`` into spaces (GeoRSCLIP's rule)."""
    return " ".join(name.replace("_", " ").replace("/", " ").lower().split())


def hash_split(key: str) -> str:
    """Assign a split from a stable hash of ``key``: 70% train, 10% val, 20% test."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 7 else "val" if bucket < 8 else "test"


def _images_root(source: Path) -> Path:
    return source / "images" if (source / "images").is_dir() else source


def _rows_from_csv(labels: Path):
    with open(labels, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"filepath", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{labels}: missing columns {sorted(missing)}")
        for line_no, record in enumerate(reader, start=2):
            yield f"{labels.name}:{line_no}", record["filepath"], record["label"], record.get("split")


def _rows_from_folders(root: Path):
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            rel = path.relative_to(root).as_posix()
            yield rel, rel, path.parent.name, None


@register("class-folder")
def ingest_class_folder(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest a class-folder classification set.

    Args:
        source: Directory with the class folders (optionally under ``images/``) and ``labels.csv``.
        out: Destination dataset directory.
        name: Dataset name (default: the source folder name).

    Returns:
        The ingest report; missing files and unknown splits are quarantined.
    """
    root = _images_root(source)
    labels = source / "labels.csv"
    rows = _rows_from_csv(labels) if labels.is_file() else _rows_from_folders(root)
    with DatasetWriter(out, name=name or source.name, kind="classification",
                       adapter="class-folder", source=str(source)) as writer:
        for where, rel, label, written in rows:
            split = canonical_split(written) if written else hash_split(rel)
            path = root / rel
            if split is None:
                writer.quarantine(where=where, rule="split_value",
                                  reason=f"split {written!r} is not one of {SPLITS} or an alias "
                                         f"({', '.join(SPLIT_ALIASES)})", sample_id=rel)
                continue
            if not path.is_file():
                writer.quarantine(where=where, rule="file_exists", reason=f"{path} does not exist", sample_id=rel)
                continue
            try:
                width, height, bands = image_header(path)
            except DataError:
                width = height = bands = None
            writer.add_row(
                sample_id=Path(rel).with_suffix("").as_posix(),
                split=split,
                modality="optical",
                image=writer.copy_media(path, rel),
                bands=bands,
                width=width,
                height=height,
                label=normalise_class(label),
                source=where,
            )
    return writer.report
