"""An archive's images embedded by one model, in a FAISS index with a metadata table and a manifest.

Layout of an index folder:

* ``manifest.json``: the model (:class:`rsvl.search.model_ref.ModelRef`: URI, registered name and
  version, weights SHA-256), the dataset (path and data version), the FAISS index kind and its
  parameters, the embedding width, entry counts and the media left out with their reasons;
* ``index.faiss``: inner-product index over L2-normalised image embeddings (cosine similarity),
  exact (``flat-ip``) up to :data:`EXACT_MAX` entries, HNSW (``hnsw-ip``) beyond, chosen
  automatically; ``--kind`` forces one;
* ``metadata.parquet``: one row per entry, in index order: sample id, media column (``image``,
  ``s1``, ``s2``), media path inside the dataset, modality, split, lat/lon, timestamp, labels and
  the first caption;
* ``skipped.parquet``: media that were not indexed (unreadable, a band count no tower reads), with the reason;
* ``shards/``: the embeddings as they were computed, :data:`SHARD` entries a file; a build that
  stops (killed, out of memory) starts again from the first missing shard. A shard records the
  weights and entry keys it was computed for, so a build with another model or data recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rsvl.console import Progress
from rsvl.errors import DataError, ModelError
from rsvl.search.model_ref import ModelRef

log = logging.getLogger(__name__)

MANIFEST, INDEX, METADATA, SKIPPED, SHARDS = "manifest.json", "index.faiss", "metadata.parquet", "skipped.parquet", "shards"
INDEXED_MEDIA = ("image", "s1", "s2")
"""Media columns that are indexed (a ``mask`` is not an image to search)."""
SHARD = 2048
"""Entries embedded per shard file: the unit a resumed build skips."""
EXACT_MAX = 250_000
"""Above this many entries the index is HNSW (a flat scan of 250k × 512 floats is ~25 ms a query on 2 cores)."""
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
KINDS = ("auto", "flat-ip", "hnsw-ip")
FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """One indexed medium: a dataset row's image (or S1, or S2 array)."""

    row: int
    media: str
    path: str

    @property
    def key(self) -> str:
        """Stable identity inside the dataset: ``<row>:<media>:<path>``."""
        return f"{self.row}:{self.media}:{self.path}"


def list_entries(frame: pd.DataFrame) -> list[Entry]:
    """Every indexable medium of a manifest, in row order then :data:`INDEXED_MEDIA` order."""
    entries = []
    for row, record in enumerate(frame[[c for c in INDEXED_MEDIA if c in frame.columns]].itertuples(index=False)):
        for media, path in zip([c for c in INDEXED_MEDIA if c in frame.columns], record):
            if isinstance(path, str) and path:
                entries.append(Entry(row, media, path))
    return entries


def _shard_digest(weights_sha256: str, entries: Sequence[Entry]) -> str:
    digest = hashlib.sha256(weights_sha256.encode())
    for entry in entries:
        digest.update(entry.key.encode() + b"\n")
    return digest.hexdigest()


def write_atomic(path: Path, write) -> None:
    """Call ``write(scratch)`` beside ``path``, then rename it over ``path``: readers see the old file or the new one."""
    scratch = path.with_name(f".{path.name}.partial")
    write(scratch)
    os.replace(scratch, path)


def _embed_shard(embedder: Any, dataset_root: Path, entries: Sequence[Entry], batch_size: int
                 ) -> tuple[np.ndarray, list[str | None]]:
    """Embeddings of ``entries`` (NaN rows where a medium could not be embedded) and the reasons."""
    import torch
    from PIL import Image

    from rsvl.data.store import relative_to_dataset
    from rsvl.model_registry.image_input import decode_image

    width = None
    vectors: list[np.ndarray | None] = [None] * len(entries)
    reasons: list[str | None] = [None] * len(entries)
    arrays: dict[int, np.ndarray] = {}
    for index, entry in enumerate(entries):
        # decoded as the service decodes an upload (RGB for a 3-band model), so both land in one space
        try:
            data = relative_to_dataset(dataset_root, entry.path).read_bytes()
            arrays[index] = decode_image(data, embedder.in_bands, entry.path)
        except (DataError, OSError, Image.DecompressionBombError) as err:
            reasons[index] = str(err)
    readable = sorted(arrays)
    with torch.no_grad():
        for bands in sorted({arrays[i].shape[0] for i in readable}):
            rows = [i for i in readable if arrays[i].shape[0] == bands]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                pixels = torch.stack([embedder.preprocess(arrays[i]) for i in chunk]).to(embedder.device)
                out = embedder.model.encode_image(pixels, normalize=True).float().cpu().numpy()
                width = out.shape[1]
                for i, vector in zip(chunk, out):
                    vectors[i] = vector
    if width is None:
        width = _embedding_width(embedder)
    matrix = np.full((len(entries), width), np.nan, dtype=np.float32)
    for i, vector in enumerate(vectors):
        if vector is not None:
            matrix[i] = vector
    return matrix, reasons


def _embedding_width(embedder: Any) -> int:
    import torch

    with torch.no_grad():
        return int(embedder.model.encode_text(embedder.tokenizer(["x"]).to(embedder.device)).shape[1])


def _metadata(frame: pd.DataFrame, entries: Sequence[Entry]) -> pd.DataFrame:
    def column(name: str) -> list:
        return frame[name].tolist() if name in frame.columns else [None] * len(frame)

    ids, splits, modalities = column("sample_id"), column("split"), column("modality")
    lats, lons, times = column("lat"), column("lon"), column("timestamp")
    label, labels, captions = column("label"), column("labels"), column("captions")

    def labels_of(row: int) -> list[str]:
        found = [label[row]] if isinstance(label[row], str) and label[row] else []
        many = labels[row]
        if many is not None and not (np.ndim(many) == 0 and pd.isna(many)):
            found += [str(x) for x in many if str(x) not in found]
        return found

    def number(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return pd.DataFrame({
        "sample_id": [ids[e.row] for e in entries],
        "media": [e.media for e in entries],
        "path": [e.path for e in entries],
        "modality": [modalities[e.row] for e in entries],
        "split": [splits[e.row] for e in entries],
        "lat": pd.array([number(lats[e.row]) for e in entries], dtype="Float64"),
        "lon": pd.array([number(lons[e.row]) for e in entries], dtype="Float64"),
        "timestamp": [times[e.row] if isinstance(times[e.row], str) else None for e in entries],
        "labels": [labels_of(e.row) for e in entries],
        "caption": [(list(captions[e.row])[0] if captions[e.row] is not None and len(captions[e.row]) else None)
                    for e in entries],
    })


def choose_kind(count: int, kind: str = "auto") -> str:
    """The index kind for ``count`` entries: ``flat-ip`` up to :data:`EXACT_MAX`, ``hnsw-ip`` above.

    Args:
        count: Entries to index.
        kind: ``auto`` or a kind to force.

    Raises:
        ValueError: An unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"index kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat-ip" if count <= EXACT_MAX else "hnsw-ip"


def make_faiss_index(vectors: np.ndarray, kind: str) -> Any:
    """A FAISS inner-product index of kind ``flat-ip`` or ``hnsw-ip`` holding ``vectors`` (rows in order)."""
    import faiss

    width = vectors.shape[1]
    if kind == "flat-ip":
        index = faiss.IndexFlatIP(width)
    else:
        index = faiss.IndexHNSWFlat(width, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_index(
    embedder: Any,
    model: ModelRef,
    dataset_root: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 64,
    kind: str = "auto",
    data_version: str | None = None,
) -> dict[str, Any]:
    """Embed every image of a canonical dataset with ``embedder`` and write an index folder.

    Args:
        embedder: A :class:`rsvl.model_registry.embedder.LoadedEmbedder` of ``model``.
        model: The model's reference (goes into the manifest; its weights hash ties the index to it).
        dataset_root: A canonical dataset folder (quarantined rows are left out, as everywhere).
        out_dir: The index folder (created; shards already there for the same model and data are reused).
        batch_size: Images per forward pass.
        kind: ``auto`` (by size, see :func:`choose_kind`), ``flat-ip`` or ``hnsw-ip``.
        data_version: The dataset's version (default: :func:`rsvl.data.versioning.dataset_version`).

    Returns:
        The manifest written.

    Raises:
        DataError: The dataset is not a canonical dataset, or nothing in it could be embedded.
    """
    from rsvl.data.store import read_manifest
    from rsvl.data.versioning import dataset_version

    root, out = Path(dataset_root).resolve(), Path(out_dir)
    frame = read_manifest(root)
    entries = list_entries(frame)
    if not entries:
        raise DataError(f"{root}: no row has an image, s1 or s2 medium to index")
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    progress = Progress(log, f"indexing {root.name}", len(entries), "images")
    parts, reasons = [], []
    reused = 0
    for number, start in enumerate(range(0, len(entries), SHARD)):
        chunk = entries[start:start + SHARD]
        vectors_file, info_file = out / SHARDS / f"{number:05d}.npy", out / SHARDS / f"{number:05d}.json"
        digest = _shard_digest(model.weights_sha256, chunk)
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        if info.get("digest") == digest and vectors_file.is_file():
            vectors = np.load(vectors_file, allow_pickle=False)
            shard_reasons = info["reasons"]
            reused += len(chunk)
        else:
            vectors, shard_reasons = _embed_shard(embedder, root, chunk, batch_size)
            write_atomic(vectors_file, lambda path: np.save(open(path, "wb"), vectors, allow_pickle=False))
            write_atomic(info_file, lambda path: path.write_text(json.dumps({"digest": digest, "reasons": shard_reasons})))
        parts.append(vectors)
        reasons += shard_reasons
        progress.add(len(chunk))
    matrix = np.concatenate(parts)
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    if not kept:
        raise DataError(f"{root}: none of {len(entries)} media could be embedded (first: {reasons[0]})")
    skipped = pd.DataFrame({"sample_id": [frame["sample_id"].iloc[entries[i].row] for i, r in enumerate(reasons) if r],
                            "media": [entries[i].media for i, r in enumerate(reasons) if r],
                            "path": [entries[i].path for i, r in enumerate(reasons) if r],
                            "reason": [r for r in reasons if r]})
    dataset = {"path": str(root), "version": data_version or dataset_version(root), "name": root.name}
    manifest = write_index(out, matrix[kept], _metadata(frame, [entries[i] for i in kept]), model, dataset,
                           kind=kind, skipped=skipped, reused=reused)
    log.info("index %s: %d entries (%s), %d skipped, %d reused from shards", out, len(kept),
             manifest["index"]["kind"], len(entries) - len(kept), reused)
    return manifest


def write_index(
    out_dir: str | Path,
    vectors: np.ndarray,
    metadata: pd.DataFrame,
    model: ModelRef,
    dataset: dict[str, str],
    *,
    kind: str = "auto",
    skipped: pd.DataFrame | None = None,
    reused: int = 0,
) -> dict[str, Any]:
    """Write the FAISS index, metadata, skipped table and manifest of already computed embeddings.

    Args:
        out_dir: The index folder.
        vectors: ``(entries, dim)`` L2-normalised float32 embeddings, in ``metadata`` order.
        metadata: One row per entry (the columns :func:`build_index` writes).
        model: The model that computed them.
        dataset: ``path``, ``version`` and ``name`` of the dataset.
        kind: ``auto``, ``flat-ip`` or ``hnsw-ip`` (see :func:`choose_kind`).
        skipped: Media left out, with ``reason``.
        reused: Entries read back from shards (recorded).

    Returns:
        The manifest written (last, so a folder with a manifest is a finished index).
    """
    import faiss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(vectors) != len(metadata):
        raise ValueError(f"{len(vectors)} vectors but {len(metadata)} metadata rows")
    skipped = skipped if skipped is not None else pd.DataFrame(columns=["sample_id", "media", "path", "reason"])
    (out / MANIFEST).unlink(missing_ok=True)  # no manifest beside half-rewritten files
    chosen = choose_kind(len(vectors), kind)
    index = make_faiss_index(vectors, chosen)
    write_atomic(out / INDEX, lambda path: faiss.write_index(index, str(path)))
    write_atomic(out / METADATA, lambda path: metadata.to_parquet(path, index=False))
    write_atomic(out / SKIPPED, lambda path: skipped.to_parquet(path, index=False))
    manifest = {
        "format": FORMAT,
        "model": model.to_dict(),
        "dataset": dataset,
        "index": {"kind": chosen, "requested": kind, "metric": "inner product of L2-normalised embeddings",
                  "exact_max": EXACT_MAX, "dim": int(vectors.shape[1]),
                  **({"hnsw_m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
                     if chosen == "hnsw-ip" else {})},
        "entries": len(vectors),
        "skipped": len(skipped),
        "reused_from_shards": reused,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(out / MANIFEST, lambda path: path.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def read_manifest_file(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of an index folder.

    Raises:
        DataError: No manifest (not an index folder, or a build that did not finish).
    """
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{index_dir}: no {MANIFEST}; not an index folder (or its build did not finish)")
    return json.loads(path.read_text())


def check_model(manifest: dict[str, Any], weights_sha256: str) -> None:
    """Refuse a model other than the one that built the index.

    Raises:
        ModelError: The weights differ (embeddings would be in another space).
    """
    built = manifest["model"]
    if built["weights_sha256"] != weights_sha256:
        name = f"{built['name']} v{built['version']}" if built.get("name") else built["uri"]
        raise ModelError(f"this index was built with {name} (weights {built['weights_sha256'][:12]}); the model given "
                         f"has weights {weights_sha256[:12]}: rebuild the index with it, or serve it with that model")


CURRENT = "CURRENT"
"""In a folder of index versions: the name of the newest (written by :mod:`rsvl.steps.search_index`)."""
KEPT_MODEL = "model"
"""In an index folder: where ``rsvl index`` downloads a registry version (the service loads it from there)."""


def current_index(folder: str | Path) -> Path:
    """``folder`` itself, or the index version its ``CURRENT`` file names.

    Raises:
        DataError: ``CURRENT`` names something that is not a folder beside it.
    """
    folder = Path(folder)
    pointer = folder / CURRENT
    if not pointer.is_file():
        return folder
    name = pointer.read_text().strip()
    if not name or "/" in name or "\\" in name or name in (".", "..") or not (folder / name).is_dir():
        raise DataError(f"{pointer}: names {name!r}, not an index folder beside it")
    return folder / name


def kept_model(index_dir: str | Path, weights_sha256: str) -> Path | None:
    """The model folder kept inside an index folder whose weights are ``weights_sha256``, if any."""
    from rsvl.data.store import sha256_file
    from rsvl.models.io import WEIGHTS_NAME

    for weights in sorted((Path(index_dir) / KEPT_MODEL).rglob(WEIGHTS_NAME)):
        if sha256_file(weights) == weights_sha256:
            return weights.parent
    return None
