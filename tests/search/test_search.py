"""Archive search: index contents against a brute-force reference, resume, filters, the model tie, and the HTTP service."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsvl.data.generate import write_sar_chips
from rsvl.data.store import read_manifest
from rsvl.errors import ModelError
from rsvl.model_registry.embedder import load_embedder
from rsvl.model_registry.image_input import decode_image
from rsvl.models import build_model, save_model
from rsvl.search.index import METADATA, SKIPPED, build_index, list_entries, read_manifest_file
from rsvl.search.model_ref import resolve_model
from rsvl.search.searcher import Filters, Searcher
from rsvl.search.service import Limits, create_app, load_service

from search_support import serving

CHIPS = 16


def tiny_model(out: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_model(build_model("rsvl-tiny")[0], out)
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    write_sar_chips(root / "sar", seed=0, count=CHIPS)
    folder, ref = resolve_model(str(tiny_model(root / "model", 0)))
    embedder = load_embedder(folder, "cpu")
    manifest = build_index(embedder, ref, root / "sar", root / "index", batch_size=5)
    return root, embedder, ref, manifest


def reference_vectors(root: Path, embedder) -> tuple[list[str], np.ndarray]:
    """Each chip embedded alone, straight from its file: the index must hold these."""
    frame = read_manifest(root / "sar")
    vectors = []
    for path in frame["image"]:
        array = decode_image((root / "sar" / path).read_bytes(), embedder.in_bands, path)
        with torch.no_grad():
            vectors.append(embedder.model.encode_image(embedder.preprocess(array)[None], normalize=True)[0].numpy())
    return frame["sample_id"].tolist(), np.stack(vectors)


def text_vector(embedder, text: str) -> np.ndarray:
    with torch.no_grad():
        return embedder.model.encode_text(embedder.tokenizer([text]), normalize=True)[0].numpy()


def test_the_index_holds_every_image_and_ranks_as_a_brute_force_scan(archive):
    root, embedder, ref, manifest = archive
    ids, vectors = reference_vectors(root, embedder)
    searcher = Searcher(root / "index")
    assert manifest["entries"] == CHIPS and manifest["skipped"] == 0 and manifest["index"]["kind"] == "flat-ip"
    assert manifest["model"]["weights_sha256"] == ref.weights_sha256
    assert searcher.metadata["sample_id"].tolist() == ids
    query = text_vector(embedder, "three ships near the coast")
    scores = vectors @ query
    expected = np.argsort(-scores, kind="stable")[:7]
    hits = searcher.search(query, 7)
    assert [hit.entry for hit in hits] == expected.tolist()
    np.testing.assert_allclose([hit.score for hit in hits], scores[expected], rtol=0, atol=1e-5)


def test_filters_restrict_the_ranking_to_the_entries_that_pass(archive):
    root, embedder, _, _ = archive
    searcher = Searcher(root / "index")
    ids, vectors = reference_vectors(root, embedder)
    splits = np.array(searcher.metadata["split"].tolist())
    query = text_vector(embedder, "a small ship at sea")
    scores = np.where(splits == "train", vectors @ query, -np.inf)
    expected = [int(i) for i in np.argsort(-scores, kind="stable") if splits[i] == "train"]
    hits = searcher.search(query, 50, Filters(split=["train"]))
    assert [hit.entry for hit in hits] == expected  # every train entry, none other
    assert searcher.search(query, 5, Filters(modality=["optical"])) == []
    assert searcher.search(query, 5, Filters(bbox=(0.0, 0.0, 1.0, 1.0))) == []  # chips have no location


def test_a_forced_hnsw_index_finds_what_the_exact_one_finds_on_a_small_archive(archive, tmp_path):
    root, embedder, ref, _ = archive
    manifest = build_index(embedder, ref, root / "sar", tmp_path / "hnsw", kind="hnsw-ip")
    assert manifest["index"]["kind"] == "hnsw-ip" and manifest["index"]["hnsw_m"] == 32
    exact, approx = Searcher(root / "index"), Searcher(tmp_path / "hnsw")
    query = text_vector(embedder, "a harbour with ships")
    assert {h.entry for h in approx.search(query, 10)} == {h.entry for h in exact.search(query, 10)}


def test_a_rebuild_reuses_its_shards_and_another_model_recomputes_them(archive, tmp_path):
    root, embedder, ref, _ = archive
    again = build_index(embedder, ref, root / "sar", root / "index")
    assert again["reused_from_shards"] == CHIPS
    other_folder, other_ref = resolve_model(str(tiny_model(tmp_path / "other", 1)))
    other = build_index(load_embedder(other_folder, "cpu"), other_ref, root / "sar", tmp_path / "copy")
    assert other["reused_from_shards"] == 0 and other["model"]["weights_sha256"] != ref.weights_sha256


def test_an_unreadable_image_is_skipped_with_its_reason_and_counted(archive, tmp_path):
    root, embedder, ref, _ = archive
    import shutil

    shutil.copytree(root / "sar", tmp_path / "sar")
    frame = read_manifest(tmp_path / "sar")
    broken = frame["image"].iloc[3]
    (tmp_path / "sar" / broken).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    manifest = build_index(embedder, ref, tmp_path / "sar", tmp_path / "index")
    skipped = __import__("pandas").read_parquet(tmp_path / "index" / SKIPPED)
    assert (manifest["entries"], manifest["skipped"]) == (CHIPS - 1, 1)
    assert len(list_entries(frame)) == manifest["entries"] + manifest["skipped"]  # nothing lost
    assert skipped["path"].tolist() == [broken] and "decodable" in skipped["reason"].iloc[0]
    assert frame["sample_id"].iloc[3] not in set(__import__("pandas").read_parquet(tmp_path / "index" / METADATA)["sample_id"])


def test_an_index_refuses_another_model(archive, tmp_path):
    root, _, _, _ = archive
    with pytest.raises(ModelError, match="rebuild the index"):
        load_service(str(root / "index"), str(tiny_model(tmp_path / "other", 2)))


def test_bad_filters_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="bbox"):
        Filters(bbox=(10.0, 0.0, 5.0, 1.0))
    with pytest.raises(ValueError, match="ISO 8601"):
        Filters(time_from="yesterday")
    with pytest.raises(ValueError, match="after"):
        Filters(time_from="2024-02-01", time_to="2024-01-01")
    with pytest.raises(ValueError, match="extra"):
        Filters.model_validate({"path": "../etc"})


# ---------------------------------------------------------------- the HTTP service, served by uvicorn


@pytest.fixture(scope="module")
def server(archive):
    root, _, _, _ = archive
    with serving(load_service(str(root / "index"), limits=Limits(upload_bytes=200_000))) as url:
        yield url


def call(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def test_text_search_over_http_matches_the_library(server, archive):
    root, embedder, _, _ = archive
    status, body, _ = call(f"{server}/search", json.dumps({"text": "two ships moored along a quay", "k": 5}).encode())
    assert status == 200
    results = json.loads(body)["results"]
    hits = Searcher(root / "index").search(text_vector(embedder, "two ships moored along a quay"), 5)
    assert [r["entry"] for r in results] == [h.entry for h in hits] and [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["thumbnail"] == f"/thumbnails/{hits[0].entry}.png" and results[0]["modality"] == "sar"
    status, body, content_type = call(server + results[0]["thumbnail"])
    assert status == 200 and content_type == "image/png" and Image.open(io.BytesIO(body)).size[0] <= 160


def test_an_uploaded_chip_finds_itself_first(server, archive):
    root, _, _, _ = archive
    frame = read_manifest(root / "sar")
    data = (root / "sar" / frame["image"].iloc[5]).read_bytes()
    status, body, _ = call(f"{server}/search/image?k=3", data, "application/octet-stream")
    assert status == 200, body
    first = json.loads(body)["results"][0]
    assert first["sample_id"] == frame["sample_id"].iloc[5] and first["score"] == pytest.approx(1.0, abs=1e-5)
    filtered = json.dumps({"split": ["no-such-split"]})
    status, body, _ = call(f"{server}/search/image?k=3&filters={urllib.request.quote(filtered)}", data,
                           "application/octet-stream")
    assert status == 200 and json.loads(body)["results"] == []


@pytest.mark.parametrize("path, body, content_type, code", [
    ("/search", json.dumps({"text": "x" * 1001}).encode(), "application/json", 422),
    ("/search", json.dumps({"text": "ship", "k": 1001}).encode(), "application/json", 422),
    ("/search", json.dumps({"text": "ship", "filters": {"path": "/etc/passwd"}}).encode(), "application/json", 422),
    ("/search", json.dumps({"text": ""}).encode(), "application/json", 422),
    ("/search/image", b"just some text, not an image", "application/octet-stream", 415),
    ("/search/image", b"\x89PNG\r\n\x1a\n" + bytes(300_000), "application/octet-stream", 413),
    ("/search/image", b"\x89PNG\r\n\x1a\nnot really", "application/octet-stream", 400),
    ("/search/image", b"", "application/octet-stream", 400),
    ("/search/image?k=0", b"\x89PNG\r\n\x1a\n", "application/octet-stream", 422),
    ("/thumbnails/99999.png", None, "", 404),
    ("/thumbnails/..%2F..%2Fetc%2Fpasswd", None, "", 404),
    ("/thumbnails/-1.png", None, "", 404),
])
def test_bad_requests_get_a_4xx_and_nothing_else(server, path, body, content_type, code):
    status, _, _ = call(server + path, body, content_type)
    assert status == code


def test_health_and_openapi(server, archive):
    _, _, ref, manifest = archive
    status, body, _ = call(f"{server}/healthz")
    health = json.loads(body)
    assert status == 200 and health["entries"] == CHIPS and health["model"]["weights_sha256"] == ref.weights_sha256
    assert health["data_version"] == manifest["dataset"]["version"]
    status, body, _ = call(f"{server}/openapi.json")
    assert {"/search", "/search/image", "/healthz"} <= set(json.loads(body)["paths"])


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.ids.add(values.get("id", ""))
        for key in ("src", "href"):
            if values.get(key) and "//" in values[key]:
                self.external.append(values[key])


def test_the_page_is_served_whole_with_no_external_asset(server):
    status, body, content_type = call(f"{server}/")
    assert status == 200 and content_type.startswith("text/html")
    parser = _Assets()
    parser.feed(body.decode())
    assert parser.external == [] and b"http://" not in body and b"https://" not in body
    assert {"text", "image", "k", "modality", "split", "labels", "bbox", "from", "to", "grid"} <= parser.ids
    assert b"innerHTML" not in body  # results are written with textContent


def test_the_page_title_escapes_the_dataset_name(archive):
    root, embedder, _, _ = archive
    searcher = Searcher(root / "index")
    searcher.manifest = {**searcher.manifest, "dataset": {**searcher.manifest["dataset"], "name": "<script>x</script>"}}
    from fastapi.routing import APIRoute

    app = create_app(searcher, embedder)
    page = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/").endpoint()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


# ---------------------------------------------------------------- the CLI, with a registered champion


def test_index_and_search_a_registered_champion_from_the_command_line(archive, tmp_path):
    """rsvl index resolves models:/<name>@champion to its version; rsvl search prints the ranking and precision@10."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from rsvl.cli import app
    from rsvl.model_registry import Lineage, register_model
    from rsvl.model_registry.register import set_champion

    root, embedder, ref, _ = archive
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lineage = Lineage(git_commit="0" * 40, train_data_md5="a" * 32, eval_data_md5="b" * 32, pipeline_run_id="run-1",
                      config_hash="c" * 16, paper="sar_text")
    registration = register_model(root / "model", "search_test", lineage, uri)
    set_champion(MlflowClient(uri, registry_uri=uri), "search_test", registration.version)
    runner = CliRunner()
    built = runner.invoke(app, ["index", "--model", "models:/search_test@champion", "--data", str(root / "sar"),
                                "--out", str(tmp_path / "index"), "--tracking-uri", uri])
    assert built.exit_code == 0, built.output
    manifest = read_manifest_file(tmp_path / "index")
    assert (manifest["model"]["name"], manifest["model"]["version"]) == ("search_test", registration.version)
    assert manifest["model"]["weights_sha256"] == ref.weights_sha256 and f"{CHIPS} images indexed" in built.output
    found = runner.invoke(app, ["search", "--index", str(tmp_path / "index"), "--text", "ships near the coast",
                                "--k", "4", "--tracking-uri", uri])
    assert found.exit_code == 0, found.output
    hits = Searcher(root / "index").search(text_vector(embedder, "ships near the coast"), 4)
    expected_ids = [Searcher(root / "index").metadata["sample_id"].iloc[h.entry] for h in hits]
    printed = [line.split()[2] for line in found.output.splitlines() if line.strip()[:1].isdigit()]
    assert printed == expected_ids
    frame = read_manifest(root / "sar").set_index("sample_id")
    with_ships = sum(len(frame.loc[i, "boxes"]) > 0 for i in expected_ids)
    share = np.mean([len(b) > 0 for b in frame["boxes"]])
    assert f"precision@4 with ships (>= 1 box): {with_ships / 4:.2f} ({with_ships}/4); archive share {share:.2f}" in found.output
    missing = runner.invoke(app, ["index", "--model", "models:/search_test@nobody", "--data", str(root / "sar"),
                                  "--out", str(tmp_path / "other"), "--tracking-uri", uri])
    assert missing.exit_code == 1 and "no such registered model alias" in missing.output
