"""The spatial VQA head: the tower's feature grid, its cell projection, and counting that the grid makes learnable.

A tiny synthetic set whose count is known by construction (0-3 bright squares on a dark 64 px
image, each in its own 16 px cell) stands where the answer is knowable; an untrained rsvl-tiny
ViT (seeded) is the CLIP, so the test measures what the head can read from the features, not
what a trained tower learned. (Here total brightness gives the count away, so the global
embedding counts too; ``bench/vqa_heads.py`` compares the heads on the SAR chips.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsvl.errors import ModelError
from rsvl.models import build_model, save_model
from rsvl.vqa import (
    ClipSpatialHead,
    MajorityAnswer,
    evaluate_vqa,
    load_vqa_model,
    make_record,
    read_vqa_config,
    save_vqa_model,
)
from rsvl.vqa.persist import VQA_CONFIG_NAME
from rsvl.vqa.questions import count_question, presence_question
from rsvl.vqa.scoring import RecordImages
from rsvl.vqa.spatial import MAX_GRID, CellProjection, GridEncoder, tower_grid

SIDE, CELL = 64, 16


def write_counting_set(root: Path, images: int, seed: int) -> list[dict]:
    """``images`` PNGs with 0-3 bright 8 px squares, each in a distinct 16 px cell; records ask count and presence."""
    rng = np.random.default_rng(seed)
    records = []
    root.mkdir(parents=True, exist_ok=True)
    for index in range(images):
        pixels = rng.integers(0, 40, (SIDE, SIDE)).astype(np.uint8)
        count = int(rng.integers(0, 4))
        for cell in rng.choice((SIDE // CELL) ** 2, size=count, replace=False):
            y, x = divmod(int(cell), SIDE // CELL)
            top, left = y * CELL + int(rng.integers(0, 8)), x * CELL + int(rng.integers(0, 8))
            pixels[top:top + 8, left:left + 8] = 250
        name = f"{seed}_{index:04d}.png"
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(root / name)
        records.append(make_record(name, name, [(presence_question("ship"), "yes" if count else "no"),
                                                (count_question("ship"), str(count))]))
    return records


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    root = tmp_path_factory.mktemp("counting")
    return root, write_counting_set(root, 100, seed=1), write_counting_set(root, 60, seed=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    built = build_model("rsvl-tiny")
    return built, save_model(built[0], tmp_path_factory.mktemp("spatial_tiny") / "model")


def test_the_grid_comes_with_the_same_embedding_encode_image_gives(tiny):
    (model, _, _, _), _ = tiny
    batch = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        embedding, grid = tower_grid(model.eval(), batch)
        assert torch.allclose(embedding, model.encode_image(batch), atol=1e-6)
    # rsvl-tiny: 64 px in 8 px patches, an 8×8 token grid of width 64, pooled to MAX_GRID a side
    assert grid.shape == (3, 64, MAX_GRID, MAX_GRID)
    assert model.visual.output_tokens is False


def test_a_timm_trunk_gives_its_stride_16_map_and_the_same_embedding():
    torch.manual_seed(0)
    model = build_model("rsvl-effnetlite0-minilm", None, image_size=64)[0].eval()
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        embedding, grid = tower_grid(model, batch)
        assert torch.allclose(embedding, model.encode_image(batch), atol=1e-5)
    assert grid.shape == (2, 112, 4, 4)  # efficientnet_lite0's stage before the last: 112 channels, 64 px / 16


def test_the_cell_projection_keeps_the_principal_components():
    rng = np.random.default_rng(0)
    grids = torch.tensor(rng.normal(size=(20, 5, 3, 2)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])[None, :, None, None],
                         dtype=torch.float32)
    projection = CellProjection.fit(grids, components=3)
    assert projection.basis.shape == (5, 3) and projection.grid == (3, 2) and projection.dim == 3 * (2 + 6)
    assert torch.allclose(projection.basis.T @ projection.basis, torch.eye(3), atol=1e-5)
    cells = grids.permute(0, 2, 3, 1).reshape(-1, 5).numpy().astype(np.float64)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(cells, rowvar=False)))[::-1][:3]
    projected = ((torch.tensor(cells, dtype=torch.float32) - projection.mean) @ projection.basis).numpy()
    np.testing.assert_allclose(projected.var(axis=0, ddof=1), eigen, rtol=1e-3)
    # an image whose cells are all alike: its mean cell, max cell and every cell are the same vector
    flat = projection.mean[None, :, None, None].expand(1, 5, 3, 2) + projection.basis[:, 0][None, :, None, None]
    features = projection.features(torch.zeros(1, 4), flat)
    assert features.shape == (1, 4 + projection.dim)
    assert torch.allclose(features[0, 4:].reshape(-1, 3), torch.tensor([[1.0, 0.0, 0.0]]).expand(8, 3), atol=1e-5)
    with pytest.raises(ModelError, match=r"feature grid \(2, 2\) differs from the fitted \(3, 2\)"):
        projection.features(torch.zeros(1, 4), torch.zeros(1, 5, 2, 2))


def test_the_spatial_head_learns_to_count_far_above_chance(tiny, counting):
    (model, _, preprocess, _), _ = tiny
    root, train, test = counting
    spatial = ClipSpatialHead.fit(model, preprocess, train, RecordImages(train, root))
    ours, majority = evaluate_vqa(spatial, test, root), evaluate_vqa(MajorityAnswer(train), test, root)
    truths = [answer for _, question, answer, _ in ours.predictions if question == count_question("ship")]
    chance = max(truths.count(str(k)) for k in range(4)) / len(truths)  # the commonest count, computed here
    print(f"\ncount: spatial {ours.per_type['count']:.3f}, majority {majority.per_type['count']:.3f}")
    assert majority.per_type["count"] <= chance + 1e-9
    assert ours.per_type["count"] >= chance + 0.3
    assert ours.per_type["presence"] >= 0.9


def test_a_saved_spatial_head_loads_back_with_the_same_answers(tiny, counting, tmp_path):
    (model, _, preprocess, _), clip_dir = tiny
    root, train, test = counting
    fitted = ClipSpatialHead.fit(model, preprocess, train[:60], RecordImages(train[:60], root))
    save_vqa_model(fitted, tmp_path / "vqa", clip_dir)
    saved = read_vqa_config(tmp_path / "vqa")
    assert saved.kind == "spatial_head" and saved.grid.rows == saved.grid.cols == MAX_GRID
    loaded = load_vqa_model(tmp_path / "vqa", clip_dir)
    assert isinstance(loaded, ClipSpatialHead) and isinstance(loaded.encoder, GridEncoder)
    assert evaluate_vqa(loaded, test, root).predictions == evaluate_vqa(fitted, test, root).predictions
    text = (tmp_path / "vqa" / VQA_CONFIG_NAME).read_text(encoding="utf-8")
    (tmp_path / "vqa" / VQA_CONFIG_NAME).write_text(text.replace('"spatial_head"', '"linear_head"'), encoding="utf-8")
    with pytest.raises(ModelError, match="a 'grid' belongs to a spatial_head"):
        read_vqa_config(tmp_path / "vqa")
