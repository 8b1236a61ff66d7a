"""The archive search service: text and image queries against one index, with its model, over HTTP.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

* ``POST /search``: ``{"text": ..., "k": 20, "filters": {...}}`` → ranked results;
* ``POST /search/image?k=20``: the request body is one image (PNG, JPEG, TIFF or a ``.npy``
  array, at most :data:`Limits.upload_bytes`) → the most similar indexed images;
* ``GET /thumbnails/{entry}.png``: the preview of result ``entry`` (an index position: no request
  value ever becomes a file path);
* ``GET /healthz``: the model, the data version and the entry count;
* ``GET /``: the search page (:mod:`rsvl.search.page`, no external assets).

The model is the one that built the index (its weights hash is checked at start-up), so query
and archive embeddings share one space.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rsvl.errors import DataError, PayloadTooLarge
from rsvl.model_registry.image_input import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, decode_image
from rsvl.search.searcher import MAX_K, Filters, Searcher

log = logging.getLogger(__name__)

IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"II*\x00": "tiff", b"MM\x00*": "tiff",
               b"\x93NUMPY": "npy"}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    text_chars: int = 1000
    k: int = MAX_K
    upload_bytes: int = MAX_IMAGE_BYTES
    upload_pixels: int = MAX_IMAGE_PIXELS


class TextQuery(BaseModel):
    """A text search request."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    text: str = Field(min_length=1, max_length=Limits.text_chars)
    k: int = Field(default=20, ge=1, le=MAX_K)
    filters: Filters = Filters()


def image_kind(data: bytes) -> str | None:
    """``png``, ``jpeg``, ``tiff`` or ``npy`` from the first bytes; ``None`` for anything else."""
    return next((kind for magic, kind in IMAGE_MAGIC.items() if data.startswith(magic)), None)


def create_app(searcher: Searcher, embedder: Any, limits: Limits = Limits()) -> Any:
    """The FastAPI application.

    Args:
        searcher: The loaded index.
        embedder: A :class:`rsvl.model_registry.embedder.LoadedEmbedder` with the index's weights
            (see :func:`load_service`, which checks that).
        limits: Request limits.

    Returns:
        A FastAPI app (serve it with uvicorn).
    """
    import torch

    from rsvl.data.media import load_raster
    from rsvl.data.store import relative_to_dataset
    from rsvl.search.page import PAGE
    from rsvl.search.thumbnails import thumbnail_png

    manifest = searcher.manifest
    dataset_root = manifest["dataset"]["path"]
    app = FastAPI(title="rsvl archive search", version="1",
                  description=f"Text and image search over {manifest['dataset']['name']} "
                              f"({manifest['entries']} images) with {manifest['model']['uri']}.")

    def results(hits: list, started: float) -> dict[str, Any]:
        return {
            "results": [{"rank": rank + 1, "score": round(hit.score, 6), "entry": hit.entry,
                         "thumbnail": f"/thumbnails/{hit.entry}.png", **searcher.describe(hit.entry)}
                        for rank, hit in enumerate(hits)],
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "entries": manifest["entries"], "index": manifest["index"]["kind"],
                "model": manifest["model"], "data_version": manifest["dataset"]["version"]}

    @app.post("/search")
    def search(query: TextQuery) -> dict[str, Any]:
        started = time.perf_counter()
        if query.k > limits.k:
            raise HTTPException(422, f"k must be at most {limits.k}")
        return results(searcher.search(text_query(embedder, query.text), query.k, query.filters), started)

    @app.post("/search/image", openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def search_image(request: Request, k: int = Query(20, ge=1, le=MAX_K),
                           filters: str | None = Query(None, max_length=4000,
                                                       description="the filters object as JSON")) -> dict[str, Any]:
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.upload_bytes:
            raise HTTPException(413, f"upload is {declared} bytes; the limit is {limits.upload_bytes}")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.upload_bytes:
                raise HTTPException(413, f"upload is over the limit of {limits.upload_bytes} bytes")
        if not data:
            raise HTTPException(400, "the request body must be the image (PNG, JPEG, TIFF or .npy)")
        kind = image_kind(data)
        if kind is None:
            raise HTTPException(415, "the body is not a PNG, JPEG, TIFF or .npy file (checked by its first bytes)")
        try:
            parsed = Filters.model_validate_json(filters) if filters else Filters()
        except ValidationError as err:
            raise HTTPException(422, f"filters: {err.errors(include_url=False)}") from None
        try:
            array = decode_image(data, embedder.in_bands, f"uploaded {kind}", max_pixels=limits.upload_pixels)
        except PayloadTooLarge as err:
            raise HTTPException(413, str(err)) from None
        except DataError as err:
            raise HTTPException(400, str(err)) from None
        with torch.no_grad():
            pixels = embedder.preprocess(array).unsqueeze(0).to(embedder.device)
            vector = embedder.model.encode_image(pixels, normalize=True).float().cpu().numpy()[0]
        return results(searcher.search(vector, k, parsed), started)

    @lru_cache(maxsize=2048)
    def thumbnail(entry: int) -> bytes:
        row = searcher.metadata.iloc[entry]
        # the path comes from the index's own metadata, never from the request
        return thumbnail_png(load_raster(relative_to_dataset(Path(dataset_root), row["path"])), row["media"])

    @app.get("/thumbnails/{entry}.png", response_class=Response)
    def thumbnails(entry: int) -> Response:
        if not 0 <= entry < len(searcher.metadata):
            raise HTTPException(404, f"no entry {entry}; the index has {len(searcher.metadata)}")
        try:
            return Response(thumbnail(entry), media_type="image/png",
                            headers={"Cache-Control": "public, max-age=3600"})
        except DataError as err:
            raise HTTPException(500, f"entry {entry}: {err}") from None

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.replace("__TITLE__", html.escape(f"{manifest['dataset']['name']} ({manifest['entries']} images)"))

    return app


def open_index(index_dir: str, model: str | None = None, tracking_uri: str | None = None,
               device: str | None = None) -> tuple[Searcher, Any]:
    """Load an index and the model that built it; refuse any other weights.

    Args:
        index_dir: The index folder, or a folder whose ``CURRENT`` file names one (the pipeline's
            ``<out_dir>/<registered name>``: the newest champion's index).
        model: A ``models:/`` URI or model folder; default: the model copy kept in the index folder
            (``rsvl index`` downloads a registry version there), else the registered version (or
            folder) the manifest records.
        tracking_uri: The MLflow registry for ``models:/`` URIs.
        device: Where the model runs (default CUDA when available).

    Returns:
        ``(searcher, embedder)``.

    Raises:
        ModelError: The model's weights are not the ones that built the index.
    """
    from rsvl.model_registry.embedder import load_embedder
    from rsvl.search.index import check_model, current_index, kept_model
    from rsvl.search.model_ref import resolve_model

    searcher = Searcher(current_index(index_dir))
    built = searcher.manifest["model"]
    kept = None if model else kept_model(searcher.root, built["weights_sha256"])
    wanted = model or (f"models:/{built['name']}/{built['version']}" if built.get("name") else built["uri"])
    folder, ref = resolve_model(str(kept) if kept else wanted, tracking_uri)
    check_model(searcher.manifest, ref.weights_sha256)
    return searcher, load_embedder(folder, device)


def text_query(embedder: Any, text: str) -> Any:
    """The L2-normalised embedding of one query text (a NumPy vector)."""
    import torch

    with torch.no_grad():
        tokens = embedder.tokenizer([text]).to(embedder.device)
        return embedder.model.encode_text(tokens, normalize=True).float().cpu().numpy()[0]


def load_service(index_dir: str, model: str | None = None, tracking_uri: str | None = None,
                 device: str | None = None, limits: Limits = Limits()) -> Any:
    """The app for an index and its model (:func:`open_index`).

    Raises:
        ModelError: The model's weights are not the ones that built the index.
    """
    searcher, embedder = open_index(index_dir, model, tracking_uri, device)
    log.info("serving %s: %d entries (%s) with %s", index_dir, searcher.manifest["entries"],
             searcher.manifest["index"]["kind"], searcher.manifest["model"]["uri"])
    return create_app(searcher, embedder, limits)
