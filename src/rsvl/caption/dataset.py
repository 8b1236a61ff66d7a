"""Caption a canonical dataset: rows without captions get SAR-Narrator captions, the rest pass through.

The manifest schema has no column for a caption's provenance, so two side tables sit next to the
manifest: ``caption_provenance.parquet`` (every caption in the manifest that this step wrote, with
its route and rewriter) and ``caption_rejected.parquet`` (every candidate the quality filter
refused, with rule and reason).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rsvl.config.caption import CaptionConfig
from rsvl.caption.narrate import Narration, narrate
from rsvl.caption.rewrite import Rewriter, build_rewriter
from rsvl.caption.scene import Scene
from rsvl.data.media import load_raster
from rsvl.data.schema import MEDIA_COLUMNS
from rsvl.data.store import MEDIA_DIR, DatasetWriter, read_manifest, read_meta, relative_to_dataset
from rsvl.errors import DataError

PROVENANCE_FILE = "caption_provenance.parquet"
REJECTED_FILE = "caption_rejected.parquet"
ADAPTER = "sar-narrator"

PROVENANCE_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("caption", pa.string(), nullable=False),
    pa.field("route", pa.string(), nullable=False),
    pa.field("rewriter", pa.string(), nullable=False),
])
REJECTED_SCHEMA = pa.schema([*PROVENANCE_SCHEMA, pa.field("rule", pa.string(), nullable=False),
                             pa.field("reason", pa.string(), nullable=False)])
_META_KEYS_SET_BY_WRITER = {"schema_version", "name", "kind", "adapter", "source", "counts"}


@dataclass
class CaptionReport:
    """What :func:`caption_dataset` did: rows by fate, captions by route and rewriter, rejections by rule."""

    out_dir: Path
    rows: int
    captioned: int
    passed_through: int
    uncaptioned: int
    by_route: dict[str, int] = field(default_factory=dict)
    by_rewriter: dict[str, int] = field(default_factory=dict)
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    optical_route: str = "off"
    """Where the optical route's captions came from, or why it had none."""

    def summary(self) -> str:
        """One paragraph for the CLI and pipeline logs."""
        routes = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_route.items())) or "none"
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejected_by_rule.items())) or "none"
        return (f"{self.rows} rows written to {self.out_dir}: {self.captioned} captioned, "
                f"{self.passed_through} passed through, {self.uncaptioned} left without captions; "
                f"captions by route: {routes}; optical route: {self.optical_route}; "
                f"rejected: {rejected} (see {self.out_dir / REJECTED_FILE})")


def _mask_classes(config: CaptionConfig, meta: dict) -> dict[int, str]:
    values = config.mask_values if config.mask_values is not None else meta.get("mask_values")
    if not values:
        return {}
    try:
        return {int(key): str(name) for key, name in values.items()}
    except (TypeError, ValueError, AttributeError) as err:
        raise DataError(f"mask_values must map integer pixel values to class names, got {values!r}") from err


def optical_captions_path(config: CaptionConfig, dataset_dir: str | Path) -> Path | None:
    """Where the optical route reads its captions for one dataset, or ``None`` when it has none.

    An absolute ``config.optical_captions`` is read as given and must exist. A relative one names a
    file inside the dataset being captioned (the generated SAR set ships ``optical_captions.json``
    of its co-registered optical twins), so the file travels with the data to every step; a
    dataset without that file (HRSID) has no co-registered optical images, and its optical route
    is empty.

    Args:
        config: Caption settings.
        dataset_dir: The dataset being captioned.

    Returns:
        The file, or ``None`` when the route is off or the dataset has no such file.

    Raises:
        DataError: An absolute path that does not exist.
    """
    if config.optical_captions is None:
        return None
    path = Path(config.optical_captions)
    if path.is_absolute():
        if not path.is_file():
            raise DataError(f"caption.optical_captions: {path} does not exist")
        return path
    inside = Path(dataset_dir) / path
    return inside if inside.is_file() else None


def _optical_captions(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return {}
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read optical captions as UTF-8 JSON ({err})") from err
    if not isinstance(listing, dict) or not all(
            isinstance(v, list) and all(isinstance(t, str) for t in v) for v in listing.values()):
        raise DataError(f"{path}: must be an object mapping sample ids to lists of caption strings")
    return listing


def scene_of(dataset_dir: Path, row: dict, kind: str, classes: dict[int, str]) -> Scene:
    """Build the :class:`Scene` of one manifest row, loading its mask when classes are known.

    Args:
        dataset_dir: Dataset directory.
        row: Manifest row.
        kind: Dataset kind (in a ``detection`` dataset an empty box list means no objects).
        classes: Mask value -> class name; empty means the mask is not semantic (not loaded).

    Raises:
        DataError: The row has no width/height, or its mask does not match them.
    """
    width, height = row.get("width"), row.get("height")
    if not width or not height:
        raise DataError(f"manifest row {row['sample_id']!r}: width and height are needed to caption it")
    mask = None
    if classes and row.get("mask"):
        mask = load_raster(relative_to_dataset(dataset_dir, row["mask"]))[0].astype(np.int64)
        if mask.shape != (height, width):
            raise DataError(f"manifest row {row['sample_id']!r}: mask {row['mask']} is {mask.shape[::-1]}, "
                            f"the image is {(width, height)}")
    boxes = list(row.get("boxes") or [])
    return Scene(row["sample_id"], int(width), int(height), boxes,
                 boxes_known=kind == "detection" or bool(boxes), mask=mask, mask_classes=classes)


def copy_row(writer: DatasetWriter, dataset_dir: Path, row: dict) -> dict:
    """A manifest row ready for ``writer``: lists as Python lists, its media copied into the new dataset.

    Args:
        writer: The dataset being written.
        dataset_dir: The source dataset.
        row: A manifest row of the source (:func:`~rsvl.data.store.read_manifest`).

    Returns:
        The row with its media paths pointing at the copies (same relative names).
    """
    row = {key: (list(value) if isinstance(value, (list, np.ndarray)) else value) for key, value in row.items()}
    for column in MEDIA_COLUMNS:
        if row.get(column):
            source = relative_to_dataset(dataset_dir, row[column])
            row[column] = writer.copy_media(source, str(Path(row[column]).relative_to(MEDIA_DIR)))
    return row


def caption_dataset(dataset_dir: str | Path, out_dir: str | Path, config: CaptionConfig | None = None,
                    *, rewriter: Rewriter | None = None) -> CaptionReport:
    """Write a copy of a canonical dataset in which rows without captions are captioned.

    Rows that already have captions pass through unchanged (unless ``config.recaption``);
    media are copied so the new dataset is self-contained. Provenance and rejections go to the
    side tables named in the module docstring.

    Args:
        dataset_dir: Source dataset.
        out_dir: Destination (replaced if it exists).
        config: Caption settings (defaults when ``None``).
        rewriter: Overrides the rewriter the config names (tests, custom backends).

    Returns:
        Row counts, accepted captions per route and rewriter, rejections per rule.
    """
    config = config or CaptionConfig()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    meta = read_meta(dataset_dir)
    manifest = read_manifest(dataset_dir)
    classes = _mask_classes(config, meta)
    optical_file = optical_captions_path(config, dataset_dir)
    optical = _optical_captions(optical_file)
    rewriter = rewriter or build_rewriter(config.rewriter, config.chat)
    extra = {k: v for k, v in meta.items() if k not in _META_KEYS_SET_BY_WRITER}
    extra["captioned_by"] = {"step": ADAPTER, "from": str(dataset_dir), "rewriter": rewriter.name,
                             "config": config.model_dump()}
    provenance, rejected = [], []
    counts = Counter()
    by_route, by_rewriter, by_rule = Counter(), Counter(), Counter()
    with DatasetWriter(out_dir, name=meta["name"], kind=meta["kind"], adapter=meta.get("adapter", ADAPTER),
                       source=meta.get("source", str(dataset_dir)), extra_meta=extra) as writer:
        for row in manifest.to_dict("records"):
            row = copy_row(writer, dataset_dir, row)
            if row["captions"] and not config.recaption:
                counts["passed_through"] += 1
            else:
                scene = scene_of(dataset_dir, row, meta["kind"], classes)
                result: Narration = narrate(scene, config, rewriter=rewriter,
                                            optical_captions=optical.get(row["sample_id"], []))
                row["captions"] = result.texts
                counts["captioned" if result.accepted else "uncaptioned"] += 1
                for caption in result.accepted:
                    provenance.append({"sample_id": row["sample_id"], "caption": caption.text,
                                       "route": caption.route, "rewriter": caption.rewriter})
                    by_route[caption.route] += 1
                    by_rewriter[caption.rewriter] += 1
                for item in result.rejected:
                    rejected.append({"sample_id": row["sample_id"], "caption": item.text, "route": item.route,
                                     "rewriter": item.rewriter, "rule": item.rule, "reason": item.reason})
                    by_rule[item.rule] += 1
            writer.add_row(**row)
    pq.write_table(pa.Table.from_pylist(provenance, schema=PROVENANCE_SCHEMA), out_dir / PROVENANCE_FILE)
    pq.write_table(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), out_dir / REJECTED_FILE)
    if optical_file is not None:
        route = f"captions of co-registered optical images for {len(optical)} rows from {optical_file}"
    elif config.optical_captions is not None:
        route = f"none ({dataset_dir} has no {config.optical_captions}: no co-registered optical images)"
    else:
        route = "off"
    return CaptionReport(out_dir, len(manifest), counts["captioned"], counts["passed_through"],
                         counts["uncaptioned"], dict(by_route), dict(by_rewriter), dict(by_rule), route)


def read_provenance(dataset_dir: str | Path) -> list[dict]:
    """Read ``caption_provenance.parquet`` as a list of rows (sample_id, caption, route, rewriter)."""
    return pq.read_table(Path(dataset_dir) / PROVENANCE_FILE, schema=PROVENANCE_SCHEMA).to_pylist()


def read_rejected(dataset_dir: str | Path) -> list[dict]:
    """Read ``caption_rejected.parquet`` as a list of rows (provenance columns plus rule and reason)."""
    return pq.read_table(Path(dataset_dir) / REJECTED_FILE, schema=REJECTED_SCHEMA).to_pylist()
