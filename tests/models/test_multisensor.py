"""SensorCLIP built from the model zoo: one widened image tower per sensor, a shared text tower, saved and loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsvl.errors import DataError, ModelError
from rsvl.models import build_model, load_model, save_model
from rsvl.models.bands import first_conv
from rsvl.models.multisensor import build_sensor_model

S1_STATS = {"bands": ["VV", "VH"], "mean": [-11.0, -18.0], "std": [4.0, 5.0]}
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
S2_STATS = {"bands": S2_BANDS, "mean": [900.0 + 100 * i for i in range(12)], "std": [400.0 + 10 * i for i in range(12)]}
ARCH = "rsvl-effnetlite0-minilm-cls"


@pytest.fixture(scope="module")
def sensor_model():
    return build_sensor_model(ARCH, "packaged", {"s1": (2, S1_STATS), "s2": (12, S2_STATS)}, image_size=32)


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return ((rng.normal(-12, 4, (2, 32, 32))).astype(np.float32), rng.uniform(0, 4000, (12, 32, 32)).astype(np.float32))


def test_each_sensor_tower_is_the_architecture_widened_to_its_bands(sensor_model):
    model, _, val, tokenizer = sensor_model
    torch.manual_seed(0)
    single, _, single_val, _ = build_model(ARCH, "packaged", 12, S2_STATS, image_size=32)
    # same packaged trunk weights, widened by the same rule: the S2 tower's stem equals a 12-band build's
    assert torch.equal(first_conv(model.visual["s2"])[1].weight, first_conv(single.visual)[1].weight)
    assert first_conv(model.visual["s1"])[1].weight.shape[1] == 2
    assert model.rsvl_spec["sensors"]["s1"]["bands"] == ["VV", "VH"]
    assert model.rsvl_spec["sensors"]["s2"]["normalisation"]["mean"] == S2_STATS["mean"]
    s1, s2 = _inputs()
    assert torch.equal(val(s2), single_val(s2))  # the S2 input is standardised with the S2 statistics
    expected = (torch.from_numpy(s1) - torch.tensor(S1_STATS["mean"]).view(2, 1, 1)) / torch.tensor(
        S1_STATS["std"]).view(2, 1, 1)
    assert torch.allclose(val(s1), expected, atol=1e-5)
    with pytest.raises(DataError, match="take \\[2, 12\\]"):
        val(np.zeros((3, 32, 32), np.float32))
    # CLS pooling of MiniLM's last hidden state, as CLOSP's text tower; 64 tokens
    assert tokenizer(["trees. water"]).shape == (1, 64)
    assert type(model.text.pooler).__name__ == "ClsLastHiddenStatePooler"


def test_save_and_load_give_the_same_embeddings(tmp_path, sensor_model):
    model, _, val, tokenizer = sensor_model
    model.eval()
    folder = save_model(model, tmp_path / "closp")
    loaded, _, loaded_val, loaded_tokenizer = load_model(folder)
    loaded.eval()
    s1, s2 = _inputs()
    with torch.no_grad():
        for image in (s1, s2):
            assert torch.equal(loaded.encode_image(loaded_val(image)[None]), model.encode_image(val(image)[None]))
        tokens = tokenizer(["flooded area. water"])
        assert torch.equal(loaded_tokenizer(["flooded area. water"]), tokens)
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
    assert loaded.rsvl_spec["sensors"] == model.rsvl_spec["sensors"]


def test_unknown_sensors_are_refused():
    with pytest.raises(ModelError, match="among"):
        build_sensor_model(ARCH, "packaged", {"image": (3, None)}, image_size=32)


def test_a_geoclosp_model_saves_and_loads_its_location_encoder(tmp_path):
    torch.manual_seed(3)
    model, *_ = build_sensor_model(ARCH, "packaged", {"s1": (2, S1_STATS), "s2": (12, S2_STATS)}, image_size=32,
                                   location={"legendre_polys": 10, "hidden": 32, "layers": 2})
    assert model.rsvl_spec["location"] == {"embed_dim": 384, "legendre_polys": 10, "hidden": 32, "layers": 2,
                                           "w0_initial": 30.0}
    places = torch.tensor([[45.0, 9.0], [-33.9, 151.2]])
    loaded, *_ = load_model(save_model(model, tmp_path / "geoclosp"))
    with torch.no_grad():
        expected = model.encode_location(places, normalize=True)
        assert torch.equal(loaded.encode_location(places, normalize=True), expected)
    assert torch.allclose(expected.norm(dim=-1), torch.ones(2))
