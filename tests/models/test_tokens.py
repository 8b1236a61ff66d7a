"""Token features (rsvl.models.tokens) and the KER head (rsvl.models.ker_head) against references built by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsvl.errors import ModelError
from rsvl.models import build_model, load_model, save_model
from rsvl.models.ker_head import KerHead, attach_ker_head, ker_settings
from rsvl.models.tokens import capture_tokens, encode_with_tokens, has_tokens

CAPTIONS = ["a red roof near a road", "two planes parked beside the terminal", "green trees"]


@pytest.fixture(scope="module")
def local_model():
    model, _, _, tokenizer = build_model("rsvl-effnetlite0-minilm", "packaged", 3, None, image_size=64)
    return model.eval(), tokenizer


def test_cnn_tokens_are_the_projected_feature_map_whose_mean_is_the_embedding(local_model):
    model, _ = local_model
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    out = encode_with_tokens(model, images=images)
    # reference: the trunk's feature map, each position through the tower's linear projection
    with torch.no_grad():
        fmap = model.visual.trunk.forward_features(images)
        expected = fmap.flatten(2).transpose(1, 2) @ model.visual.head.proj.weight.T
    assert out["image_tokens"].shape == (2, 4, 384)  # 64 px / stride 32 = 2 x 2 positions
    torch.testing.assert_close(out["image_tokens"], expected, rtol=1e-4, atol=1e-5)
    # average pooling then a linear map = the mean of the mapped positions
    torch.testing.assert_close(out["image_tokens"].mean(1), out["image_features"], rtol=1e-4, atol=1e-5)


def test_minilm_tokens_are_every_positions_hidden_state_and_mean_pool_to_the_embedding(local_model):
    model, tokenizer = local_model
    text = tokenizer(CAPTIONS)
    out = encode_with_tokens(model, text=text)
    with torch.no_grad():
        hidden = model.text.transformer(input_ids=text, attention_mask=(text != 0).long()).last_hidden_state
    assert out["text_tokens"].shape == (3, tokenizer.context_length, 384)  # padding positions included
    torch.testing.assert_close(out["text_tokens"], hidden)
    mask = (text != 0).unsqueeze(-1).float()
    torch.testing.assert_close((hidden * mask).sum(1) / mask.sum(1), out["text_features"], rtol=1e-4, atol=1e-5)


def test_vit_and_clip_text_tokens_follow_open_clip_layers():
    model, _, _, tokenizer = build_model("ViT-B-32", None, 3, None, image_size=64)
    model.eval()
    torch.manual_seed(1)
    images, text = torch.randn(1, 3, 64, 64), tokenizer(CAPTIONS[:2])
    out = encode_with_tokens(model, images=images, text=text)
    visual = model.visual
    with torch.no_grad():  # open_clip's own tokens (after ln_post, class token dropped), projected by hand
        visual.output_tokens = True
        _, patches = visual(images)
        visual.output_tokens = False
        states = model.ln_final(model.transformer(model.token_embedding(text) + model.positional_embedding,
                                                   attn_mask=model.attn_mask))
    assert out["image_tokens"].shape == (1, 4, 512)
    torch.testing.assert_close(out["image_tokens"], patches @ visual.proj)
    torch.testing.assert_close(out["text_tokens"], states @ model.text_projection, rtol=1e-4, atol=1e-5)
    # CLIP's text embedding is the end-of-text position's projected state
    eot = text.argmax(dim=-1)
    torch.testing.assert_close(out["text_tokens"][torch.arange(2), eot], out["text_features"], rtol=1e-4, atol=1e-5)


def test_token_gradients_reach_the_image_projection_through_a_normal_forward(local_model):
    model, tokenizer = build_model("rsvl-effnetlite0-minilm", "packaged", 3, None, image_size=64)[::3]
    with capture_tokens(model) as captured:
        model(image=torch.randn(2, 3, 64, 64), text=tokenizer(CAPTIONS[:2]))
        captured.image_tokens().sum().backward()
    assert model.visual.head.proj.weight.grad is not None and model.visual.head.proj.weight.grad.abs().sum() > 0
    # the hooks are gone after the block: a later pass keeps nothing
    captured.image_raw = None
    model.encode_image(torch.randn(1, 3, 64, 64))
    assert captured.image_raw is None


def test_models_without_token_features_say_so():
    model = build_model("rsvl-tiny-coca", None, 3, None)[0]
    assert not has_tokens(model)
    with pytest.raises(ModelError, match="not supported"):
        with capture_tokens(model):
            pass


def test_ker_head_shapes_and_a_saved_model_loads_with_its_head(tmp_path, local_model):
    model, tokenizer = build_model("rsvl-effnetlite0-minilm", "packaged", 3, None, image_size=64)[::3]
    head = attach_ker_head(model, ["road", "tree", "plane"], layers=2, vocabulary_sha256="abc")
    assert attach_ker_head(model, ["road", "tree", "plane"], layers=2, vocabulary_sha256="abc") is head
    with pytest.raises(ModelError, match="already has a KER head"):
        attach_ker_head(model, ["road"], layers=2)
    scores = head(torch.randn(2, 5, 384), torch.randn(2, 4, 384))
    assert scores.shape == (2, 5, 3)
    assert len(head.transformer.resblocks) == 2 and head.cross_attn.num_heads == 6
    with torch.no_grad():
        head.mlp[3].bias.fill_(0.25)
    loaded = load_model(save_model(model, tmp_path / "m"))[0]
    assert ker_settings(loaded) == {"vocab_size": 3, "layers": 2, "width": 384, "vocabulary_sha256": "abc"}
    for name, tensor in model.ker_head.state_dict().items():
        torch.testing.assert_close(loaded.ker_head.state_dict()[name], tensor)


def test_ker_head_reads_the_image():
    torch.manual_seed(0)
    head = KerHead(64, 7, layers=2).eval()
    text = torch.randn(1, 3, 64)
    first, second = head(text, torch.randn(1, 4, 64)), head(text, torch.randn(1, 4, 64))
    assert not torch.allclose(first, second)  # different images, different keyword scores
    assert isinstance(head.cross_attn, nn.MultiheadAttention)
