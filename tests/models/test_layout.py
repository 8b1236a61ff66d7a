"""Channels-last weights for convolutional towers: same values, ViTs untouched, files unchanged."""

from __future__ import annotations

import torch

from rsvl.models import build_model, load_model, save_model
from rsvl.models.layout import is_convolutional, use_channels_last


def test_a_cnn_tower_goes_channels_last_with_the_same_outputs_and_saved_files(tmp_path):
    torch.manual_seed(0)
    model, _, _, _ = build_model("rsvl-effnetlite0-minilm", None, image_size=64)
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model.encode_image(images)
    save_model(model, tmp_path / "before")
    assert is_convolutional(model) and use_channels_last(model)
    convs = [m.weight for m in model.visual.modules() if isinstance(m, torch.nn.Conv2d)]
    spatial = [w for w in convs if w.shape[1] > 1 and w.shape[-1] > 1]  # 1x1 or depthwise: both layouts at once
    assert spatial and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in spatial)
    with torch.no_grad():
        after = model.encode_image(images)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)  # another summation order, same function
    save_model(model, tmp_path / "after")
    assert (tmp_path / "after" / "open_clip_model.safetensors").read_bytes() == \
        (tmp_path / "before" / "open_clip_model.safetensors").read_bytes()
    reloaded = load_model(tmp_path / "after")[0]
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_a_vit_keeps_its_layout():
    model = build_model("rsvl-tiny", None)[0]
    weight = model.visual.conv1.weight
    assert not is_convolutional(model) and not use_channels_last(model)
    assert model.visual.conv1.weight is weight and weight.is_contiguous()
