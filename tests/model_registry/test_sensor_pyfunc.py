"""The registry's pyfunc serving CLOSP sensor models: S1 and S2 arrays, texts and (GeoCLOSP) locations.

Models are built with :func:`rsvl.models.multisensor.build_sensor_model` (image size 64) and
registered into a real MLflow sqlite store under a temporary folder. Reference embeddings come
from the in-memory built model, its towers named explicitly, independently of the pyfunc code.
The location encoder used is the project's :class:`rsvl.models.location.LocationEncoder`.
"""

from __future__ import annotations

import base64
import io
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.types.schema import DataType
from PIL import Image

from rsvl.data.adapters.bigearthnet import load_patch
from rsvl.errors import DataError
from rsvl.models import build_model, save_model
from rsvl.models.multisensor import build_sensor_model
from rsvl.model_registry import Lineage, register_model
from rsvl.model_registry.embedder import embed_frame, input_example, load_embedder, signature
from rsvl.model_registry.image_input import read_image
from rsvl.model_registry.location_input import read_locations

ARCH = "rsvl-effnetlite0-minilm-cls"
S1_STATS = {"bands": ["VV", "VH"], "mean": [-12.5, -19.3], "std": [5.0, 5.5]}
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
S2_STATS = {"bands": S2_BANDS, "mean": [350.0 + 150 * i for i in range(12)], "std": [500.0 + 40 * i for i in range(12)]}
# at 32 pixels the EfficientNet trunk ends on a 1x1 map and, untrained, gives real S1 patches an
# all-zero feature (a zero embedding); 64 keeps every embedding compared here a unit vector
IMAGE_SIZE = 64
LOCATION = {"legendre_polys": 10, "hidden": 32, "layers": 2}
CLOSP, GEOCLOSP = "rsvl-closp", "rsvl-geoclosp"
TEXTS = ["trees. water", "flooded area. built area"]
LAT, LON = 46.95, 7.45


def lineage() -> Lineage:
    return Lineage(git_commit="0123456789abcdef0123456789abcdef01234567", train_data_md5="a" * 32,
                   eval_data_md5="b" * 32, pipeline_run_id="run-1", config_hash="c" * 16, paper="closp")


def npy_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def s1_array(seed: int, side: int = 40) -> np.ndarray:
    """A (2, side, side) dB field with structure (VV above VH, as in real backscatter)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-6.0, 6.0, side * side).reshape(side, side)
    return np.stack([-11 + np.roll(ramp, int(rng.integers(0, side)), 1),
                     -19 + np.roll(ramp, int(rng.integers(0, side)), 0)]).astype(np.float32)


def s2_array(seed: int, side: int = 40) -> np.ndarray:
    """A (12, side, side) reflectance x 10000 field."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 3000.0, side * side).reshape(side, side)
    return np.stack([300 + 80 * band + np.roll(ramp, int(rng.integers(0, side)), band % 2)
                     for band in range(12)]).astype(np.float32)


def build(location: dict | None, seed: int):
    torch.manual_seed(seed)
    model, _, preprocess, tokenizer = build_sensor_model(ARCH, "packaged", {"s1": (2, S1_STATS), "s2": (12, S2_STATS)},
                                                         image_size=IMAGE_SIZE, location=location)
    return model.eval(), preprocess, tokenizer


@pytest.fixture(scope="module")
def closp(tmp_path_factory) -> dict:
    """An untrained CLOSP model (S1 and S2 towers, no location encoder), in memory and saved."""
    model, preprocess, tokenizer = build(None, seed=0)
    folder = save_model(model, tmp_path_factory.mktemp("closp") / "model")
    return {"model": model, "preprocess": preprocess, "tokenizer": tokenizer, "dir": folder}


@pytest.fixture(scope="module")
def geoclosp(tmp_path_factory) -> dict:
    """An untrained GeoCLOSP model (S1, S2 towers and a location encoder), in memory and saved."""
    model, preprocess, tokenizer = build(LOCATION, seed=1)
    folder = save_model(model, tmp_path_factory.mktemp("geoclosp") / "model")
    return {"model": model, "preprocess": preprocess, "tokenizer": tokenizer, "dir": folder}


@pytest.fixture(scope="module")
def store(tmp_path_factory, closp, geoclosp) -> str:
    """A sqlite MLflow store with both models registered (version 1 each); the self-test ran on both."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    for name, built in ((CLOSP, closp), (GEOCLOSP, geoclosp)):
        registration = register_model(built["dir"], name, lineage(), uri)
        assert (registration.version, registration.created) == (1, True)
    return uri


@torch.no_grad()
def image_reference(built: dict, array: np.ndarray, sensor: str) -> np.ndarray:
    """The named tower's normalised embedding of one (bands, H, W) array."""
    pixels = built["preprocess"](torch.from_numpy(array))[None]
    return built["model"].encode_image(pixels, normalize=True, sensor=sensor)[0].numpy()


@torch.no_grad()
def text_reference(built: dict, text: str) -> np.ndarray:
    return built["model"].encode_text(built["tokenizer"]([text]), normalize=True)[0].numpy()


@torch.no_grad()
def location_reference(built: dict, lat: float, lon: float) -> np.ndarray:
    latlon = torch.tensor([[lat, lon]], dtype=torch.float64)
    return built["model"].encode_location(latlon, normalize=True)[0].numpy()


def assert_embedding(value, reference: np.ndarray) -> None:
    vector = np.asarray(value, dtype=np.float32)
    assert vector.shape == reference.shape
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    np.testing.assert_allclose(vector, reference, atol=1e-5)


def is_empty(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def test_read_image_accepts_each_sensor_band_count(tmp_path) -> None:
    s1, s2 = s1_array(0), s2_array(1)
    np.save(tmp_path / "s2.npy", s2)
    np.testing.assert_array_equal(read_image(npy_b64(s1), (2, 12), "row 0 image"), s1)
    np.testing.assert_array_equal(read_image(str(tmp_path / "s2.npy"), {12, 2}, "row 1 image"), s2)
    with pytest.raises(DataError, match=r"^row 4 image: image has 3 bands, the model reads 2 or 12$"):
        read_image(npy_b64(s2[:3]), (2, 12), "row 4 image")
    with pytest.raises(DataError, match=r"^row 0 image: image has 12 bands, the model reads 4$"):
        read_image(npy_b64(s2), 4, "row 0 image")
    # a PNG is an RGB image: a model reading 2 or 12 bands does not convert it to 3 bands
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    with pytest.raises(DataError, match="image has 3 bands, the model reads 2 or 12"):
        read_image(base64.b64encode(png.getvalue()).decode(), (2, 12), "row 0 image")


def test_short_base64_is_not_mistaken_for_a_long_file_name() -> None:
    """Base64 text under 4096 characters with a run of over 255 characters without '/' is no path."""
    array = np.arange(2 * 12 * 12, dtype=np.float32).reshape(2, 12, 12)
    text = npy_b64(array)
    assert len(text) < 4096 and max(len(part) for part in text.split("/")) > 255
    np.testing.assert_array_equal(read_image(text, 2, "row 0 image"), array)


def test_read_locations_rows_and_rules() -> None:
    frame = pd.DataFrame({"lat": [45.5, None, -90.0, np.nan], "lon": [9.25, None, 180.0, np.nan]})
    rows, latlon = read_locations(frame, has_encoder=True)
    assert rows == [0, 2]
    np.testing.assert_array_equal(latlon, np.array([[45.5, 9.25], [-90.0, 180.0]]))
    assert latlon.dtype == np.float64
    assert read_locations(pd.DataFrame({"text": ["a"]}), has_encoder=False)[0] == []
    # columns present but empty are no location, even for a model without an encoder
    assert read_locations(pd.DataFrame({"lat": [None], "lon": [np.nan]}), has_encoder=False)[0] == []
    bad = [
        ({"lat": [None, 10.0], "lon": [None, 20.0]}, False, r"^row 1: 'lat' and 'lon' given, but this model has no "
                                                           r"location encoder"),
        ({"lat": [10.0, 45.0], "lon": [5.0, None]}, True, r"^row 1: has 'lat' but no 'lon'; a location needs both"),
        ({"lon": [5.0]}, True, r"^row 0: has 'lon' but no 'lat'"),
        ({"lat": [95.0], "lon": [5.0]}, True, r"^row 0 lat: 95.0 is not a latitude; it must be a finite number in "
                                              r"\[-90, 90\] degrees$"),
        ({"lat": [5.0, 5.0], "lon": [5.0, -180.5]}, True, r"^row 1 lon: -180.5 is not a longitude; .*\[-180, 180\]"),
        ({"lat": [math.inf], "lon": [5.0]}, True, r"^row 0 lat: inf is not a latitude"),
        ({"lat": ["45"], "lon": [5.0]}, True, r"^row 0 lat: expected a number of degrees, got str '45'"),
        ({"lat": [True], "lon": [5.0]}, True, r"^row 0 lat: expected a number of degrees, got bool"),
    ]
    for columns, has_encoder, message in bad:
        with pytest.raises(DataError, match=message):
            read_locations(pd.DataFrame(columns), has_encoder)


def test_signature_and_example_of_each_kind_of_model() -> None:
    plain = signature(False)
    assert plain.inputs.input_names() == ["text", "image"]
    assert plain.outputs.input_names() == ["text_embedding", "image_embedding"]
    geo = signature(False, location=True)
    assert geo.inputs.input_names() == ["text", "image", "lat", "lon"]
    assert geo.inputs.input_types()[2:] == [DataType.double, DataType.double]
    assert not any(spec.required for spec in geo.inputs.inputs)
    assert geo.outputs.input_names() == ["text_embedding", "image_embedding", "location_embedding"]

    rgb = input_example(3)
    assert list(rgb.columns) == ["text", "image"] and len(rgb) == 1
    with Image.open(io.BytesIO(base64.b64decode(rgb["image"][0]))) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (16, 16))
    sensors = input_example((12, 2))
    assert list(sensors.columns) == ["text", "image"]
    assert [read_image(cell, (2, 12), "example").shape for cell in sensors["image"]] == [(2, 16, 16), (12, 16, 16)]
    located = input_example((2, 12), location=True)
    assert list(located.columns) == ["text", "image", "lat", "lon"]
    rows, _ = read_locations(located, has_encoder=True)
    assert rows == [0, 1] and located["lat"].dtype == np.float64


def test_embed_frame_picks_the_tower_by_band_count(tmp_path, closp) -> None:
    s1, s2, other_s1 = s1_array(0), s2_array(1, side=24), s1_array(2, side=56)
    np.save(tmp_path / "s2.npy", s2)
    frame = pd.DataFrame({
        "text": [TEXTS[0], None, None, TEXTS[1], None],
        "image": [None, npy_b64(s1), str(tmp_path / "s2.npy"), (tmp_path / "s2.npy").as_uri(), npy_b64(other_s1)],
    })
    embedder = load_embedder(closp["dir"], device="cpu")
    assert (embedder.in_bands, embedder.has_location) == ((2, 12), False)
    answer = embed_frame(embedder, frame)
    assert list(answer.columns) == ["text_embedding", "image_embedding"]
    assert_embedding(answer["text_embedding"][0], text_reference(closp, TEXTS[0]))
    assert_embedding(answer["text_embedding"][3], text_reference(closp, TEXTS[1]))
    assert_embedding(answer["image_embedding"][1], image_reference(closp, s1, "s1"))
    assert_embedding(answer["image_embedding"][2], image_reference(closp, s2, "s2"))
    assert_embedding(answer["image_embedding"][3], image_reference(closp, s2, "s2"))
    assert_embedding(answer["image_embedding"][4], image_reference(closp, other_s1, "s1"))
    assert all(is_empty(answer[c][r]) for c, r in (("image_embedding", 0), ("text_embedding", 1)))

    bad = [
        (pd.DataFrame({"image": [npy_b64(s1), npy_b64(s2[:3])]}), r"^row 1 image: image has 3 bands, the model reads "
                                                                  r"2 or 12$"),
        (pd.DataFrame({"text": ["a", "b"], "lat": [None, 45.0], "lon": [None, 9.0]}),
         r"^row 1: 'lat' and 'lon' given, but this model has no location encoder"),
        (pd.DataFrame({"text": ["a", None]}), r"^row 1: needs a 'text' or an 'image' value, both are empty$"),
    ]
    for request, message in bad:
        with pytest.raises(DataError, match=message):
            embed_frame(embedder, request)


def test_plain_models_keep_their_response_layout(tmp_path) -> None:
    torch.manual_seed(0)
    folder = save_model(build_model("rsvl-tiny", pretrained=None)[0], tmp_path / "tiny")
    embedder = load_embedder(folder, device="cpu")
    assert (embedder.in_bands, embedder.has_location) == ((3,), False)
    answer = embed_frame(embedder, pd.DataFrame({"text": ["a"], "image": [input_example(3)["image"][0]]}))
    assert list(answer.columns) == ["text_embedding", "image_embedding"]


def test_registered_closp_refuses_bad_images(monkeypatch, store) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    info = mlflow.models.get_model_info(f"models:/{CLOSP}/1")
    assert info.signature.inputs.input_names() == ["text", "image"]
    assert info.signature.outputs.input_names() == ["text_embedding", "image_embedding"]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{CLOSP}/1")
    with pytest.raises(MlflowException, match=r"row 0 image: image has 13 bands, the model reads 2 or 12") as no:
        pyfunc.predict(pd.DataFrame({"image": [npy_b64(np.zeros((13, 8, 8), np.float32))]}))
    assert no.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400 from `mlflow models serve`
    # MLflow drops inputs its signature lacks before the model sees them: no location answer, no error
    answer = pyfunc.predict(pd.DataFrame({"text": ["a"], "lat": [45.0], "lon": [9.0]}))
    assert list(answer.columns) == ["text_embedding", "image_embedding"]


def test_registered_geoclosp_embeds_locations(monkeypatch, store, geoclosp) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    uri = f"models:/{GEOCLOSP}/1"
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.input_names() == ["text", "image", "lat", "lon"]
    assert info.signature.outputs.input_names() == ["text_embedding", "image_embedding", "location_embedding"]
    s1, s2 = s1_array(3), s2_array(4)
    frame = pd.DataFrame({
        "text": [TEXTS[0], None, None, None],
        "image": [None, None, npy_b64(s2), npy_b64(s1)],
        "lat": [LAT, -33.87, None, 0.0],
        "lon": [LON, 151.21, None, -180.0],
    })
    pyfunc = mlflow.pyfunc.load_model(uri)
    answer = pyfunc.predict(frame)
    assert list(answer.columns) == ["text_embedding", "image_embedding", "location_embedding"]
    assert_embedding(answer["text_embedding"][0], text_reference(geoclosp, TEXTS[0]))
    assert_embedding(answer["location_embedding"][0], location_reference(geoclosp, LAT, LON))
    assert_embedding(answer["location_embedding"][1], location_reference(geoclosp, -33.87, 151.21))
    assert_embedding(answer["location_embedding"][3], location_reference(geoclosp, 0.0, -180.0))
    assert is_empty(answer["location_embedding"][2])
    assert_embedding(answer["image_embedding"][2], image_reference(geoclosp, s2, "s2"))
    assert_embedding(answer["image_embedding"][3], image_reference(geoclosp, s1, "s1"))

    bad = [
        (pd.DataFrame({"text": ["a", "b"], "lat": [10.0, 45.0], "lon": [5.0, None]}),
         r"^row 1: has 'lat' but no 'lon'; a location needs both, in degrees$"),
        (pd.DataFrame({"text": ["a"], "lat": [95.0], "lon": [9.0]}),
         r"^row 0 lat: 95.0 is not a latitude; it must be a finite number in \[-90, 90\] degrees$"),
        (pd.DataFrame({"image": [npy_b64(s2[:4])]}), r"^row 0 image: image has 4 bands, the model reads 2 or 12$"),
        (pd.DataFrame({"text": ["a", None], "lat": [1.0, None], "lon": [2.0, None]}),
         r"^row 1: needs a 'text', an 'image' or a 'lat'/'lon' pair, all are empty$"),
    ]
    for request, message in bad:
        with pytest.raises(MlflowException, match=message) as no:
            pyfunc.predict(request)
        assert no.value.error_code == "INVALID_PARAMETER_VALUE"


CONSUMER = textwrap.dedent("""
    import sys
    import mlflow
    import pandas as pd
    frame = pd.read_json(sys.argv[1], orient="split")
    for uri, out in zip(sys.argv[2::2], sys.argv[3::2]):
        mlflow.pyfunc.load_model(uri).predict(frame).to_json(out, orient="split")
""")


@pytest.fixture(scope="module")
def ben_patch(shared_data) -> dict:
    """One real BigEarthNet v2 patch: S2 (12, 120, 120) reflectance x 10000 and S1 (2, 120, 120) dB."""
    patches = sorted((shared_data / "ben_s1s2" / "npz").glob("*.npz"))
    if not patches:
        pytest.skip(f"no BigEarthNet S1/S2 patches under {shared_data / 'ben_s1s2' / 'npz'}")
    s2, s1 = load_patch(patches[0])
    assert (s2.shape, s1.shape) == ((12, 120, 120), (2, 120, 120))
    assert (s2.dtype, s1.dtype) == (np.float32, np.float32)
    return {"s1": s1, "s2": s2, "path": patches[0]}


@pytest.mark.slow  # a subprocess and real data: in `make test`, not `make test-fast`
def test_consumer_embeds_real_bigearthnet_patches_in_a_fresh_process(tmp_path, store, closp, geoclosp,
                                                                    ben_patch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    s2_path = tmp_path / "s2.npy"
    np.save(s2_path, ben_patch["s2"])
    # text only; S1 as base64 with a location; S2 as a path; S2 as a file:// URI with a text
    frame = pd.DataFrame({
        "text": [TEXTS[0], None, None, TEXTS[1]],
        "image": [None, npy_b64(ben_patch["s1"]), str(s2_path), s2_path.as_uri()],
        "lat": [None, LAT, None, None],
        "lon": [None, LON, None, None],
    })
    frame.to_json(tmp_path / "request.json", orient="split")
    answers = {name: tmp_path / f"{name}.json" for name in (CLOSP, GEOCLOSP)}
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    pairs = [item for name, out in answers.items() for item in (f"models:/{name}/1", str(out))]
    result = subprocess.run([sys.executable, "-c", CONSUMER, str(tmp_path / "request.json"), *pairs],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(elsewhere.iterdir()), "the consumer must not write into its working directory"

    # the CLOSP model's signature has no lat/lon: MLflow drops them and the answer has no location column
    for name, built, columns in ((CLOSP, closp, ["text_embedding", "image_embedding"]),
                                 (GEOCLOSP, geoclosp, ["text_embedding", "image_embedding", "location_embedding"])):
        answer = pd.read_json(answers[name], orient="split")
        assert list(answer.columns) == columns, name
        assert_embedding(answer["text_embedding"][0], text_reference(built, TEXTS[0]))
        assert_embedding(answer["text_embedding"][3], text_reference(built, TEXTS[1]))
        assert_embedding(answer["image_embedding"][1], image_reference(built, ben_patch["s1"], "s1"))
        assert_embedding(answer["image_embedding"][2], image_reference(built, ben_patch["s2"], "s2"))
        assert_embedding(answer["image_embedding"][3], image_reference(built, ben_patch["s2"], "s2"))
        assert is_empty(answer["image_embedding"][0]) and is_empty(answer["text_embedding"][1])
    geo = pd.read_json(answers[GEOCLOSP], orient="split")
    assert_embedding(geo["location_embedding"][1], location_reference(geoclosp, LAT, LON))
    assert all(is_empty(geo["location_embedding"][row]) for row in (0, 2, 3))
