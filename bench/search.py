"""Archive search latency: FAISS exact vs HNSW at 10k and 100k images, and the HTTP service end to end.

For each archive size, generated unit embeddings (clustered like real image embeddings: 200
scene centres plus noise, so nearest neighbours are not arbitrary) are written as an index folder
twice, ``flat-ip`` and ``hnsw-ip`` (:func:`rsvl.search.index.write_index`). Queries are other
points drawn the same way. Printed side by side, single-threaded query after query as a service
answers them:

* build time, p50 and p95 latency per query and queries/s of :meth:`rsvl.search.searcher.Searcher.search`
  (k = 10), unfiltered and with a 10% metadata filter (one split in ten);
* HNSW's recall@10 against the exact index (the share of the exact top 10 it returns);
* at 10k, the HTTP service (``POST /search`` through uvicorn on loopback) with the laptop model
  (``rsvl-effnetlite0-minilm``: text encoding included), p50/p95 and queries/s.

Usage: ``python bench/search.py [--sizes 10000 100000 --queries 500 --dim 512 --threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from rsvl.search.index import write_index
from rsvl.search.model_ref import ModelRef
from rsvl.search.searcher import Filters, Searcher

SPLITS = [f"s{i}" for i in range(10)]


def embeddings(count: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around random scene centres."""
    picked = centres[rng.integers(0, len(centres), count)]
    vectors = picked + 0.35 * rng.standard_normal((count, dim)).astype(np.float32) / np.sqrt(dim) * 4
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def metadata(count: int) -> pd.DataFrame:
    return pd.DataFrame({
        "sample_id": [f"gen_{i:07d}" for i in range(count)], "media": "image", "path": [f"media/{i}.png" for i in range(count)],
        "modality": "sar", "split": [SPLITS[i % 10] for i in range(count)],
        "lat": pd.array([None] * count, dtype="Float64"), "lon": pd.array([None] * count, dtype="Float64"),
        "timestamp": [None] * count, "labels": [[] for _ in range(count)], "caption": [None] * count,
    })


def timed(run, queries) -> tuple[np.ndarray, float]:
    times = []
    started = time.perf_counter()
    for query in queries:
        start = time.perf_counter()
        run(query)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000, len(queries) / (time.perf_counter() - started)


def measure_size(count: int, args: argparse.Namespace, root: Path) -> list[dict]:
    rng = np.random.default_rng(count)
    centres = rng.standard_normal((200, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors, queries = embeddings(count, args.dim, rng, centres), embeddings(args.queries, args.dim, rng, centres)
    meta = metadata(count)
    ref = ModelRef("generated", None, None, "0" * 64)
    rows, exact_tops = [], None
    for kind in ("flat-ip", "hnsw-ip"):
        started = time.perf_counter()
        write_index(root / f"{kind}-{count}", vectors, meta, ref, {"path": "-", "version": "-", "name": "generated"}, kind=kind)
        build = time.perf_counter() - started
        searcher = Searcher(root / f"{kind}-{count}")
        tops = [[hit.entry for hit in searcher.search(q, 10)] for q in queries]
        plain, qps = timed(lambda q: searcher.search(q, 10), queries)
        one_split = Filters(split=["s3"])
        filtered, fqps = timed(lambda q: searcher.search(q, 10, one_split), queries)
        if kind == "flat-ip":
            exact_tops = tops
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops, exact_tops)])
        rows.append({"images": count, "index": kind, "build_s": round(build, 2),
                     "p50_ms": round(float(np.percentile(plain, 50)), 3), "p95_ms": round(float(np.percentile(plain, 95)), 3),
                     "qps": round(qps, 1), "filtered_p50_ms": round(float(np.percentile(filtered, 50)), 3),
                     "filtered_p95_ms": round(float(np.percentile(filtered, 95)), 3), "filtered_qps": round(fqps, 1),
                     "recall_at_10": round(float(recall), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_http(count: int, args: argparse.Namespace, root: Path) -> dict:
    """The service end to end on a generated index with the laptop model's width and weights hash."""
    import torch
    import uvicorn

    from rsvl.models import build_model, save_model
    from rsvl.search.model_ref import resolve_model
    from rsvl.search.service import load_service

    model = build_model("rsvl-effnetlite0-minilm", "packaged")[0]
    save_model(model, root / "model")
    folder, ref = resolve_model(str(root / "model"))
    with torch.no_grad():
        dim = int(model.encode_text(torch.zeros(1, 8, dtype=torch.long)).shape[1])
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    write_index(root / "http", embeddings(count, dim, rng, centres), metadata(count), ref,
                {"path": "-", "version": "-", "name": "generated"})
    app = load_service(str(root / "http"), str(folder), device="cpu")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    words = ["ships", "a harbour", "moored along a quay", "open sea", "near the coast", "three small", "large vessels"]
    texts = [f"{words[i % 7]} {words[(i * 3 + 1) % 7]}" for i in range(min(args.queries, 200))]

    def ask(text: str) -> None:
        body = json.dumps({"text": text, "k": 10}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/search", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            response.read()

    ask(texts[0])
    times, qps = timed(ask, texts)
    server.should_exit = True
    row = {"images": count, "index": "flat-ip", "http_p50_ms": round(float(np.percentile(times, 50)), 2),
           "http_p95_ms": round(float(np.percentile(times, 95)), 2), "http_qps": round(qps, 1), "dim": dim}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="rsvl-bench-search-") as tmp:
        rows = [row for size in args.sizes for row in measure_size(size, args, Path(tmp))]
        http = None if args.no_http else measure_http(min(args.sizes), args, Path(tmp))
    print(f"\n{'images':>8} {'index':>8} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'q/s':>8} "
          f"{'filt p50':>9} {'filt p95':>9} {'filt q/s':>9} {'recall@10':>10}")
    for r in rows:
        print(f"{r['images']:>8} {r['index']:>8} {r['build_s']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['qps']:>8} "
              f"{r['filtered_p50_ms']:>9} {r['filtered_p95_ms']:>9} {r['filtered_qps']:>9} {r['recall_at_10']:>10}")
    if http:
        print(f"\nHTTP POST /search at {http['images']} images (text encoding by the laptop model included, "
              f"{http['dim']}-d): p50 {http['http_p50_ms']} ms, p95 {http['http_p95_ms']} ms, {http['http_qps']} queries/s")


if __name__ == "__main__":
    main()
