"""Model registry: pyfunc versions with lineage, reuse by identity, aliases, and real consumers.

Everything runs against a real MLflow sqlite store under ``tmp_path``. Reference embeddings are
computed here straight from :func:`rsvl.models.load_model`, independently of the pyfunc code.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from forged_media import declared_png
from PIL import Image
from pydantic import ValidationError

from rsvl.data.media import load_raster
from rsvl.errors import ConfigError, DataError, ModelError, PayloadTooLarge
from rsvl.models import build_model, load_model, save_model
from rsvl.model_registry import CANDIDATE, CHAMPION, Lineage, get_champion, register_model, registry_client, set_champion
from rsvl.model_registry.embedder import embed_frame, load_embedder
from rsvl.model_registry.image_input import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from rsvl.model_registry.identity import IDENTITY_TAG, WEIGHTS_TAG
from rsvl.model_registry.register import LOGGED_MODEL_TAG

NAME = "rsvl-georsclip"
TEXTS = ["a river runs through a dense green forest", "many planes are parked at the airport"]


def lineage(**changes: str) -> Lineage:
    fields = {
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "train_data_md5": "a" * 32,
        "eval_data_md5": "b" * 32,
        "pipeline_run_id": "run-1",
        "config_hash": "c" * 16,
        "paper": "georsclip",
    }
    return Lineage(**{**fields, **changes})


def tracking_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def rgb_image(seed: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A (3, H, W) uint8 image with some structure (random noise would embed alike)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size[0] * size[1]).reshape(size)
    return np.stack([np.roll(ramp, int(rng.integers(0, 40)), axis=1) for _ in range(3)]).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.transpose(1, 2, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_tiny(folder: Path, seed: int, **options) -> Path:
    torch.manual_seed(seed)
    model = build_model("rsvl-tiny", pretrained=None, **options)[0]
    return save_model(model, folder)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """An untrained rsvl-tiny saved once for the module."""
    return save_tiny(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def request_rows(tmp_path_factory) -> dict:
    """A request with a text-only row, a path, a file:// URI and a base64 image, plus the pixels."""
    folder = tmp_path_factory.mktemp("images")
    first, second = rgb_image(1), rgb_image(2, size=(30, 50))
    path = folder / "scene.png"
    path.write_bytes(png_bytes(first))
    frame = pd.DataFrame({
        "text": [TEXTS[0], TEXTS[1], None, "parking lot"],
        "image": [None, str(path), base64.b64encode(png_bytes(second)).decode("ascii"), path.as_uri()],
    })
    return {"frame": frame, "path": path, "pixels": {1: first, 2: second, 3: first}}


@torch.no_grad()
def reference_embeddings(model_dir: Path, frame: pd.DataFrame, pixels: dict[int, np.ndarray]) -> dict:
    """Embeddings computed directly with the rsvl model, row by row."""
    model, _, preprocess, tokenizer = load_model(model_dir)
    model.eval()
    texts = {row: text for row, text in enumerate(frame["text"]) if isinstance(text, str)}
    text_vectors = torch.nn.functional.normalize(model.encode_text(tokenizer(list(texts.values()))), dim=-1)
    images = {row: preprocess(torch.from_numpy(array.astype(np.float32))) for row, array in pixels.items()}
    image_vectors = torch.nn.functional.normalize(model.encode_image(torch.stack(list(images.values()))), dim=-1)
    return {
        "text": dict(zip(texts, text_vectors.numpy())),
        "image": dict(zip(images, image_vectors.numpy())),
    }


def assert_matches(answer: pd.DataFrame, reference: dict, rows: int) -> None:
    assert len(answer) == rows
    for column, kind in (("text_embedding", "text"), ("image_embedding", "image")):
        for row in range(rows):
            value = answer[column].iloc[row]
            if row not in reference[kind]:
                assert value is None or (isinstance(value, float) and np.isnan(value)), (column, row)
                continue
            vector = np.asarray(value, dtype=np.float32)
            assert vector.shape == reference[kind][row].shape
            assert abs(np.linalg.norm(vector) - 1.0) < 1e-4
            np.testing.assert_allclose(vector, reference[kind][row], atol=1e-5)


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory, tiny_dir) -> str:
    """A store where the tiny model is registered and made champion."""
    uri = tracking_uri(tmp_path_factory.mktemp("store"))
    registration = register_model(tiny_dir, NAME, lineage(), uri)
    set_champion(registry_client(uri), NAME, registration.version)
    return uri


def test_register_reuse_and_new_version(tmp_path, tiny_dir) -> None:
    uri = tracking_uri(tmp_path / "store")
    client = registry_client(uri)
    first = register_model(tiny_dir, NAME, lineage(), uri)
    assert (first.version, first.created, first.aliases) == (1, True, (CANDIDATE,))
    assert first.uri == f"models:/{NAME}/1"
    version = client.get_model_version(NAME, "1")
    assert Lineage.from_tags(version.tags) == lineage()
    assert version.tags[IDENTITY_TAG] == first.identity
    weights = (tiny_dir / "open_clip_model.safetensors").read_bytes()
    assert version.tags[WEIGHTS_TAG] == hashlib.sha256(weights).hexdigest()

    moved = Path(shutil.copytree(tiny_dir, tmp_path / "same-weights-elsewhere"))
    again = register_model(moved, NAME, lineage(pipeline_run_id="run-2", git_commit="f" * 40), uri)
    assert (again.version, again.created, again.identity) == (1, False, first.identity)
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1

    retrained = save_tiny(tmp_path / "retrained", seed=1)
    second = register_model(retrained, NAME, lineage(pipeline_run_id="run-3"), uri)
    assert (second.version, second.created, second.aliases) == (2, True, (CANDIDATE,))
    assert client.get_registered_model(NAME).aliases == {CANDIDATE: 2}
    assert client.get_model_version(NAME, "2").tags["pipeline_run_id"] == "run-3"

    other_data = register_model(tiny_dir, NAME, lineage(train_data_md5="d" * 32), uri)
    assert (other_data.version, other_data.created) == (3, True)


def test_champion_is_moved_only_by_set_champion(tmp_path, tiny_dir) -> None:
    uri = tracking_uri(tmp_path / "store")
    client = registry_client(uri)
    assert get_champion(NAME, client) is None
    first = register_model(tiny_dir, NAME, lineage(), uri)
    assert get_champion(NAME, client) is None
    set_champion(client, NAME, first.version)
    register_model(save_tiny(tmp_path / "next", seed=3), NAME, lineage(), uri)
    assert get_champion(NAME, client) == 1
    assert client.get_registered_model(NAME).aliases == {CANDIDATE: 2, CHAMPION: 1}
    with pytest.raises(ModelError, match="no version 9"):
        set_champion(client, NAME, 9)


def test_run_id_attaches_the_model_to_the_run(tmp_path, tiny_dir) -> None:
    uri = tracking_uri(tmp_path / "store")
    client = registry_client(uri)
    run = client.create_run(client.create_experiment("train", (tmp_path / "artifacts").as_uri()))
    registration = register_model(tiny_dir, NAME, lineage(), uri, run_id=run.info.run_id)
    version = client.get_model_version(NAME, str(registration.version))
    assert version.run_id == run.info.run_id
    logged = client.get_logged_model(version.tags[LOGGED_MODEL_TAG])
    assert logged.source_run_id == run.info.run_id
    assert logged.model_id in {output.model_id for output in client.get_run(run.info.run_id).outputs.model_outputs}


def test_not_an_rsvl_model_folder(tmp_path, tiny_dir) -> None:
    uri = tracking_uri(tmp_path / "store")
    with pytest.raises(ModelError, match="not a directory"):
        register_model(tmp_path / "missing", NAME, lineage(), uri)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="open_clip_config.json is missing"):
        register_model(tmp_path / "empty", NAME, lineage(), uri)
    plain = Path(shutil.copytree(tiny_dir, tmp_path / "plain"))
    config = json.loads((plain / "open_clip_config.json").read_text())
    del config["rsvl"]
    (plain / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="not an rsvl model folder"):
        register_model(plain, NAME, lineage(), uri)
    with pytest.raises(ConfigError, match="registered model name"):
        register_model(tiny_dir, "bad/name", lineage(), uri)


def test_lineage_rules() -> None:
    with pytest.raises(ValidationError, match="unknown paper"):
        lineage(paper="nature2025")
    with pytest.raises(ValidationError):
        lineage(git_commit="")
    with pytest.raises(ValidationError):
        lineage(config_hash="has space")
    with pytest.raises(ValidationError):
        Lineage.from_tags({"git_commit": "abc"})


def test_embed_frame_matches_the_model_and_names_bad_rows(tiny_dir, request_rows) -> None:
    embedder = load_embedder(tiny_dir, device="cpu")
    frame = request_rows["frame"]
    answer = embed_frame(embedder, frame)
    assert_matches(answer, reference_embeddings(tiny_dir, frame, request_rows["pixels"]), len(frame))
    assert "caption" not in answer.columns
    text_only = embed_frame(embedder, pd.DataFrame({"text": TEXTS}))
    assert text_only["image_embedding"].tolist() == [None, None]

    bad = [
        (pd.DataFrame({"text": ["x", None], "image": [None, None]}), "row 1: needs a 'text' or an 'image'"),
        (pd.DataFrame({"text": ["x", "  "], "image": [None, ""]}), "row 1: needs a 'text' or an 'image'"),
        (pd.DataFrame({"image": ["https://example.com/a.png"]}), "row 0 image: .* remote URI"),
        (pd.DataFrame({"image": ["not base64 and no file!"]}), "row 0 image: .* not an existing file"),
        (pd.DataFrame({"image": [base64.b64encode(b"plain text").decode()]}), "row 0 image: bytes are neither"),
        (pd.DataFrame({"text": [3]}), "row 0 text: expected a string"),
        (pd.DataFrame({"caption": ["x"]}), "needs 'text' and/or 'image'"),
    ]
    for request, message in bad:
        with pytest.raises(DataError, match=message):
            embed_frame(embedder, request)


def _npy_header_only(shape: tuple[int, ...]) -> bytes:
    """An ``.npy`` file whose header declares ``shape`` float32 values, with no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_request_images_over_the_limits_are_refused_before_decoding(tiny_dir, tmp_path) -> None:
    embedder = load_embedder(tiny_dir, device="cpu")
    big_file = tmp_path / "big.png"
    with big_file.open("wb") as sparse:  # 1 byte over, sparse: nothing is written or read
        sparse.truncate(MAX_IMAGE_BYTES + 1)
    b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
    over = f"{MAX_IMAGE_BYTES + 1:,} bytes; the limit is {MAX_IMAGE_BYTES:,} bytes"
    side = 5000  # 25 M pixels: over the request limit, under Pillow's own guard
    assert side * side > MAX_IMAGE_PIXELS
    cases = [
        (b64(b"\0" * (MAX_IMAGE_BYTES + 1)), f"row 0 image: image is {over}"),
        (str(big_file), f"row 0 image: image is {over}"),
        (big_file.as_uri(), f"row 0 image: image is {over}"),
        (b64(declared_png(side, side)), f"row 0 image: image is {side}x{side} pixels; the limit is {MAX_IMAGE_PIXELS:,}"),
        (b64(declared_png(50_000, 50_000)), "row 0 image: image header declares too many pixels"),
        (b64(_npy_header_only((3, side, side))), f"row 0 image: image is {side}x{side} pixels"),
    ]
    for cell, message in cases:
        with pytest.raises(PayloadTooLarge, match=re.escape(message)):
            embed_frame(embedder, pd.DataFrame({"image": [cell]}))
    # just under both limits still embeds (an all-black 3-band image of the limit's width)
    edge = np.zeros((3, MAX_IMAGE_PIXELS // 4096, 4096), np.uint8)
    assert len(embed_frame(embedder, pd.DataFrame({"image": [b64(png_bytes(edge))]}))["image_embedding"][0]) > 0


def test_multispectral_model_reads_npy_arrays(tmp_path) -> None:
    stats = {"bands": ["B02", "B03", "B04", "B08"], "mean": [900.0, 1000.0, 1100.0, 2500.0],
             "std": [300.0, 320.0, 350.0, 700.0]}
    model_dir = save_tiny(tmp_path / "s2", seed=0, in_bands=4, band_stats=stats)
    array = np.random.default_rng(0).uniform(0, 4000, (4, 40, 40)).astype(np.float32)
    np.save(tmp_path / "patch.npy", array)
    buffer = io.BytesIO()
    np.save(buffer, array)
    frame = pd.DataFrame({"image": [str(tmp_path / "patch.npy"), base64.b64encode(buffer.getvalue()).decode()]})
    answer = embed_frame(load_embedder(model_dir, device="cpu"), frame)
    reference = reference_embeddings(model_dir, pd.DataFrame({"text": [None, None]}), {0: array, 1: array})
    assert_matches(answer, reference, 2)
    with pytest.raises(DataError, match="row 0 image: image has 3 bands, the model reads 4"):
        embed_frame(load_embedder(model_dir, device="cpu"), pd.DataFrame({"image": [base64.b64encode(
            png_bytes(rgb_image(0))).decode()]}))
    registration = register_model(model_dir, "rsvl-s2", lineage(paper="closp"), tracking_uri(tmp_path / "store"))
    assert registration.created


def test_reference_reads_the_file_the_way_training_does(request_rows) -> None:
    """The pixels handed to the reference are the ones the dataset loader reads from the file."""
    np.testing.assert_array_equal(load_raster(request_rows["path"]), request_rows["pixels"][1])


CONSUMER = textwrap.dedent("""
    import sys
    import mlflow
    import pandas as pd
    frame = pd.read_json(sys.argv[1], orient="split")
    answer = mlflow.pyfunc.load_model(sys.argv[2]).predict(frame)
    answer.to_json(sys.argv[3], orient="split")
""")


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
def test_consumer_loads_the_champion_in_a_fresh_process(tmp_path, champion_store, tiny_dir, request_rows) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    frame = request_rows["frame"]
    frame.to_json(tmp_path / "request.json", orient="split")
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion_store, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CONSUMER, str(tmp_path / "request.json"), f"models:/{NAME}@{CHAMPION}",
         str(tmp_path / "answer.json")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = pd.read_json(tmp_path / "answer.json", orient="split")
    answer = answer.astype(object).where(answer.notna(), None)
    assert_matches(answer, reference_embeddings(tiny_dir, frame, request_rows["pixels"]), len(frame))
    assert not list(elsewhere.iterdir()), "the consumer must not write into its working directory"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_ping(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"{url}/ping did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
def test_mlflow_models_serve_answers_invocations(tmp_path, champion_store, tiny_dir, request_rows) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH even when it is not activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": champion_store, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_ping(url, server, tmp_path / "serve.log", timeout=120)
        frame = request_rows["frame"]
        body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
        request = urllib.request.Request(f"{url}/invocations", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
        answer = pd.DataFrame(predictions)
        assert_matches(answer, reference_embeddings(tiny_dir, frame, request_rows["pixels"]), len(frame))

        # bad payloads: a 400 whose message is the row and the rule, before anything big is decoded or read
        b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
        for cell, message in [
            ("https://example.com/x.png", "row 0 image: 'https://example.com/x.png' is a remote URI"),
            (b64(b"plain text"), "row 0 image: bytes are neither a decodable image nor a .npy array"),
            (b64(declared_png(5000, 5000)), f"row 0 image: image is 5000x5000 pixels; the limit is {MAX_IMAGE_PIXELS:,}"),
            (b64(b"\0" * (MAX_IMAGE_BYTES + 1)), f"row 0 image: image is {MAX_IMAGE_BYTES + 1:,} bytes; the limit"),
        ]:
            bad = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[cell]]}})
            request = urllib.request.Request(f"{url}/invocations", data=bad.encode(),
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=60)
            body = json.loads(refused.value.read())
            assert (refused.value.code, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), body
            assert message in body["message"], body["message"][:500]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()
        log.close()


@pytest.fixture
def tiny_coca_dir(tmp_path) -> Path:
    """A tiny untrained CoCa (the zoo's ``rsvl-tiny-coca``)."""
    torch.manual_seed(0)
    return save_model(build_model("rsvl-tiny-coca", pretrained=None)[0], tmp_path / "coca")


def test_captioner_adds_captions(tmp_path, monkeypatch, tiny_coca_dir, request_rows) -> None:
    uri = tracking_uri(tmp_path / "store")
    register_model(tiny_coca_dir, "rsvl-coca", lineage(paper="iebaker"), uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    candidate = f"models:/rsvl-coca@{CANDIDATE}"
    assert "caption" in mlflow.models.get_model_info(candidate).signature.outputs.input_names()
    frame = request_rows["frame"]
    answer = mlflow.pyfunc.load_model(candidate).predict(frame)
    assert_matches(answer, reference_embeddings(tiny_coca_dir, frame, request_rows["pixels"]), len(frame))
    model, _, preprocess, _ = load_model(tiny_coca_dir)
    with torch.no_grad():
        tokens = model.eval().generate(torch.stack([preprocess(torch.from_numpy(request_rows["pixels"][1].astype(
            np.float32)))]))[0]
    expected = open_clip.decode(tokens).split("<end_of_text>")[0].replace("<start_of_text>", "").strip()
    assert answer["caption"].iloc[1] == " ".join(expected.split())
    assert answer["caption"].iloc[0] is None
    assert all(isinstance(answer["caption"].iloc[row], str) for row in (1, 2, 3))
