"""GeoCLOSP at query time: an eval set's ``location_weight`` fuses each row's place into its image embedding."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from references import unit_rows
from test_evaluate_cross_sensor import DIM, SIDE, TwoTower, preprocess, tokenize

from rsvl.config.evaluate import EvalSet
from rsvl.data.store import DatasetWriter
from rsvl.errors import DataError, ModelError
from rsvl.evaluate.runner import evaluate_model
from rsvl.models.location import LocationEncoder

ROWS = 12


class GeoTwoTower(TwoTower):
    """The two-tower test model with a real location encoder into its space."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.location = LocationEncoder(DIM, legendre_polys=4, hidden=16, layers=2)

    def encode_location(self, latlon: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.location(latlon, normalize=normalize)


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    rng = np.random.default_rng(11)
    s1 = rng.normal(size=(ROWS, 2, SIDE, SIDE)).astype(np.float32)
    places = np.stack([rng.uniform(36, 70, ROWS), rng.uniform(-10, 30, ROWS)], axis=1).round(4)
    labels = [["water"] if i % 2 else ["flooded area"] for i in range(ROWS)]
    out = tmp_path_factory.mktemp("placed") / "crisis"
    with DatasetWriter(out, name="crisis", kind="multisensor", adapter="test", source="rng") as writer:
        for i in range(ROWS):
            writer.add_row(sample_id=f"r{i}", split="test", modality="sar", s1=writer.write_array(s1[i], f"s1_{i}"),
                           captions=[labels[i][0]], labels=labels[i], lat=float(places[i, 0]),
                           lon=float(places[i, 1]))
    return out, s1, places, labels


def _evaluate(model, root, out, weight):
    sets = [EvalSet(name="crisis", dataset=str(root), split="test", media="s1", tasks=["ndcg"], ndcg_k=ROWS,
                    location_weight=weight)]
    return evaluate_model((model, preprocess, preprocess, tokenize), sets, out, data_root="/nonexistent")


def _ndcg(images: np.ndarray, texts: np.ndarray, labels: list[list[str]], queries: list[str]) -> float:
    """Reference nDCG@all of single-label queries with gain 1, ties against the query (none occur here)."""
    scores = unit_rows(texts) @ unit_rows(images).T
    values = []
    for q, query in enumerate(queries):
        rel = np.array([1.0 if query in row else 0.0 for row in labels])
        order = np.argsort(-scores[q], kind="stable")
        discounts = 1 / np.log2(np.arange(2, len(rel) + 2))
        values.append(float((rel[order] * discounts).sum() / (np.sort(rel)[::-1] * discounts).sum()))
    return float(np.mean(values))


def test_location_weight_scores_images_fused_with_their_place(placed, tmp_path):
    root, s1, places, labels = placed
    model = GeoTwoTower().eval()
    fused = _evaluate(model, root, tmp_path / "fused", 1.0).metrics["crisis.ndcg_at_12"]
    plain = _evaluate(model, root, tmp_path / "plain", None).metrics["crisis.ndcg_at_12"]
    with torch.no_grad():
        images = (torch.from_numpy(s1).flatten(1) @ model.s1_map).numpy()
        location = model.location(torch.from_numpy(places).float(), normalize=True).numpy()
        texts = model.encode_text(tokenize(["flooded area", "water"])).numpy()
    expected = unit_rows(unit_rows(images) + 1.0 * location)
    assert fused == pytest.approx(_ndcg(expected, texts, labels, ["flooded area", "water"]), abs=1e-6)
    assert plain == pytest.approx(_ndcg(images, texts, labels, ["flooded area", "water"]), abs=1e-6)
    assert fused != pytest.approx(plain, abs=1e-4)  # the place changed the ranking
    zero = _evaluate(model, root, tmp_path / "zero", 0.0).metrics["crisis.ndcg_at_12"]
    assert zero == pytest.approx(plain, abs=1e-9)


def test_location_weight_needs_a_location_encoder_and_places(placed, tmp_path):
    root = placed[0]
    with pytest.raises(ModelError, match="no location encoder"):
        _evaluate(TwoTower(), root, tmp_path / "a", 1.0)
    stripped = tmp_path / "noplace"
    with DatasetWriter(stripped, name="noplace", kind="multisensor", adapter="test", source="rng") as writer:
        writer.add_row(sample_id="x0", split="test", modality="sar",
                       s1=writer.write_array(np.zeros((2, SIDE, SIDE), np.float32), "s1_0"),
                       captions=["water"], labels=["water"])
    with pytest.raises(DataError, match="'x0': location_weight needs lat and lon"):
        _evaluate(GeoTwoTower(), stripped, tmp_path / "b", 1.0)
