"""A multispectral archive: a CLOSP sensor model indexes each S1 and S2 array with the tower for its band count."""

from __future__ import annotations

import io
import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.routing import APIRoute

from rsvl.data.generate import write_s1s2_patches
from rsvl.data.store import read_manifest
from rsvl.model_registry.embedder import load_embedder
from rsvl.models import save_model
from rsvl.models.multisensor import build_sensor_model
from rsvl.search.index import METADATA, build_index
from rsvl.search.model_ref import resolve_model
from rsvl.search.searcher import Filters, Searcher
from rsvl.search.service import create_app
from search_support import serving

PAIRS = 8
S1_STATS = {"bands": ["VV", "VH"], "mean": [-12.5, -19.3], "std": [5.0, 5.5]}
S2_STATS = {"bands": [f"B{i}" for i in range(12)], "mean": [350.0 + 150 * i for i in range(12)],
            "std": [500.0 + 40 * i for i in range(12)]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("sensors")
    write_s1s2_patches(root / "s1s2", seed=0, count=PAIRS)
    torch.manual_seed(0)
    model = build_sensor_model("rsvl-effnetlite0-minilm-cls", "packaged",
                               {"s1": (2, S1_STATS), "s2": (12, S2_STATS)}, image_size=64)[0]
    folder, ref = resolve_model(str(save_model(model, root / "model")))
    embedder = load_embedder(folder, "cpu")
    return root, embedder, build_index(embedder, ref, root / "s1s2", root / "index")


def test_every_s1_and_s2_array_is_indexed_by_its_own_tower(archive):
    root, embedder, manifest = archive
    frame = read_manifest(root / "s1s2")
    meta = pd.read_parquet(root / "index" / METADATA)
    assert manifest["entries"] == 2 * PAIRS and manifest["skipped"] == 0
    assert sorted(zip(meta["sample_id"], meta["media"])) == sorted(
        [(i, "s1") for i in frame["sample_id"]] + [(i, "s2") for i in frame["sample_id"]])
    searcher = Searcher(root / "index")
    s2_row = int(np.flatnonzero(meta["media"].to_numpy() == "s2")[0])
    array = np.load(root / "s1s2" / meta["path"].iloc[s2_row], allow_pickle=False)
    with torch.no_grad():
        alone = embedder.model.encode_image(embedder.preprocess(array)[None], normalize=True)[0].numpy()
    hits = searcher.search(alone, 1, Filters(media=["s2"]))
    assert hits[0].entry == s2_row and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # an S2 query may find S1 arrays too: both towers share one space
    assert {searcher.metadata["media"].iloc[h.entry] for h in searcher.search(alone, 2 * PAIRS)} == {"s1", "s2"}


def test_an_uploaded_s2_array_is_searched_through_the_service(archive):
    root, embedder, _ = archive
    searcher = Searcher(root / "index")
    meta = searcher.metadata
    s2_row = int(np.flatnonzero(meta["media"].to_numpy() == "s2")[3])
    buffer = io.BytesIO()
    np.save(buffer, np.load(root / "s1s2" / meta["path"].iloc[s2_row], allow_pickle=False))
    app = create_app(searcher, embedder)
    thumbnail = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/thumbnails/{entry}.png").endpoint
    response = thumbnail(s2_row)
    assert response.media_type == "image/png" and response.body[:8] == b"\x89PNG\r\n\x1a\n"
    with serving(app) as url:
        request = urllib.request.Request(f"{url}/search/image?k=1", data=buffer.getvalue(),
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            first = json.loads(answer.read())["results"][0]
    assert (first["entry"], first["media"]) == (s2_row, "s2") and first["score"] == pytest.approx(1.0, abs=1e-5)
