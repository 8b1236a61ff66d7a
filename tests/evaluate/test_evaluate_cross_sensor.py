"""Cross-sensor retrieval, the media filter of open_split and per-class nDCG, through evaluate_model.

A two-tower test model (an S1 and an S2 linear map chosen by band count, and a text map) embeds a
tiny canonical S1/S2 dataset; the test embeds the same arrays itself and computes the numbers from
a dense score matrix, independently of the blocked ranking code.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from references import label_set, ndcg_reference, unit_rows
from torch import nn

from rsvl.config.evaluate import EvalSet
from rsvl.data.store import DatasetWriter
from rsvl.errors import DataError
from rsvl.evaluate.cross_sensor import CROSS_KEYS, cross_sensor_ranks
from rsvl.evaluate.runner import evaluate_model, open_split

DIM = 8
SIDE = 8
TOKENS = 24
VOCABULARY = ["water", "trees", "Flooded Area", "crops"]
PAIRS = 24
TIE = 1e-5
"""Scores this close to the right answer's tie with it (float32 noise); the data has no near-ties, only exact ones."""


class TwoTower(nn.Module):
    """An S1 tower (2 bands) and an S2 tower (12 bands), fixed linear maps picked by band count, and a text map.

    The S2 map reads bands 0-1 with the S1 map's weights (and the other bands with small weights),
    so a pair whose S2 bands 0-1 resemble its S1 patch lands close in the shared space.
    ``calls`` counts the images embedded per band count.
    """

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(7)
        s1 = torch.randn(2 * SIDE * SIDE, DIM, generator=gen)
        rest = 0.2 * torch.randn(10 * SIDE * SIDE, DIM, generator=gen)
        self.register_buffer("s1_map", s1)
        self.register_buffer("s2_map", torch.cat([s1, rest]))
        self.register_buffer("text_map", torch.randn(TOKENS, DIM, generator=gen))
        self.calls: Counter[int] = Counter()

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        self.calls[x.shape[1]] += x.shape[0]
        weights = {2: self.s1_map, 12: self.s2_map}[x.shape[1]]
        return x.flatten(1) @ weights

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens @ self.text_map


def tokenize(texts: list[str]) -> torch.Tensor:
    """Character codes, padded with zeros to ``TOKENS``."""
    return torch.tensor([[float(ord(c)) for c in text[:TOKENS]] + [0.0] * (TOKENS - len(text[:TOKENS]))
                         for text in texts])


def preprocess(array: torch.Tensor) -> torch.Tensor:
    return array.float()


def as_model(model: TwoTower) -> tuple:
    return model, preprocess, preprocess, tokenize


def paired_arrays(seed: int = 3) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """S1 (2, 8, 8) and S2 (12, 8, 8) patches and labels; rows 0 and 1 are the same pair (exact ties)."""
    rng = np.random.default_rng(seed)
    s1 = rng.normal(size=(PAIRS, 2, SIDE, SIDE)).astype(np.float32)
    s2 = rng.normal(size=(PAIRS, 12, SIDE, SIDE)).astype(np.float32)
    s2[:, :2] = s1 + 2.0 * rng.normal(size=s1.shape).astype(np.float32)
    s1[1], s2[1] = s1[0], s2[0]
    labels = [[VOCABULARY[i] for i in np.flatnonzero(rng.random(len(VOCABULARY)) < 0.45)] or ["water"]
              for _ in range(PAIRS)]
    return s1, s2, labels


def write_rows(out: Path, rows: list[dict]) -> Path:
    """A canonical multisensor dataset: each row's ``s1``/``s2`` arrays written with write_array."""
    with DatasetWriter(out, name=out.name, kind="multisensor", adapter="test", source="rng") as writer:
        for i, row in enumerate(rows):
            media = {key: writer.write_array(row[key], f"{key}_{i}") for key in ("s1", "s2") if key in row}
            writer.add_row(sample_id=f"r{i}", split=row.get("split", "test"), modality="s1s2",
                           captions=[". ".join(row["labels"])], labels=row["labels"], **media)
    return out


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, list[list[str]]]:
    s1, s2, labels = paired_arrays()
    rows = [{"s1": s1[i], "s2": s2[i], "labels": labels[i]} for i in range(PAIRS)]
    rows.append({"s1": s1[2], "s2": s2[2], "labels": ["water"], "split": "train"})  # not in the test split
    return write_rows(tmp_path_factory.mktemp("paired") / "pairs", rows), s1, s2, labels


@pytest.fixture(scope="module")
def evaluated(paired, tmp_path_factory):
    root = paired[0]
    model = TwoTower()
    sets = [EvalSet(name="pairs", dataset=str(root), split="test", media="s2", tasks=["cross_sensor", "ndcg"],
                    ndcg_k=5)]
    return model, evaluate_model(as_model(model), sets, tmp_path_factory.mktemp("out"), data_root="/nonexistent")


def dense_ranks(queries: np.ndarray, candidates: np.ndarray) -> list[int]:
    """For query ``i``, the wrong candidates scoring at least its own candidate ``i`` (ties against it)."""
    scores = unit_rows(queries) @ unit_rows(candidates).T
    return [sum(scores[i, j] >= scores[i, i] - TIE for j in range(len(candidates)) if j != i)
            for i in range(len(queries))]


def reference_metrics(s1_emb: np.ndarray, s2_emb: np.ndarray) -> tuple[dict[str, float], list[int], list[int]]:
    s1_to_s2, s2_to_s1 = dense_ranks(s1_emb, s2_emb), dense_ranks(s2_emb, s1_emb)
    out = {}
    for name, ranks in (("s1_to_s2", s1_to_s2), ("s2_to_s1", s2_to_s1)):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * sum(rank < k for rank in ranks) / len(ranks)
    out["cross_mR"] = sum(out.values()) / 6
    return out, s1_to_s2, s2_to_s1


def test_cross_sensor_metrics_equal_a_dense_reference(evaluated, paired):
    model, result = evaluated
    _, s1, s2, _ = paired
    reference = TwoTower()
    with torch.no_grad():
        s1_emb = reference.encode_image(torch.from_numpy(s1)).double().numpy()
        s2_emb = reference.encode_image(torch.from_numpy(s2)).double().numpy()
    want, s1_to_s2, s2_to_s1 = reference_metrics(s1_emb, s2_emb)
    assert {f"pairs.{key}" for key in CROSS_KEYS} <= set(result.metrics)
    assert {key: result.metrics[f"pairs.{key}"] for key in CROSS_KEYS} == pytest.approx(want)
    # the case is not trivial: the duplicated pair ties (ranked behind its twin), and recall is neither 0 nor 100
    assert s1_to_s2[0] >= 1 and s1_to_s2[1] >= 1 and s2_to_s1[0] >= 1
    assert all(0 < want[key] < 100 for key in CROSS_KEYS)


@pytest.mark.parametrize("block_size", [1, 5, 4096])
def test_cross_sensor_ranks_equal_the_dense_ranks_block_by_block(paired, block_size):
    _, s1, s2, _ = paired
    model = TwoTower()
    with torch.no_grad():
        s1_emb, s2_emb = model.encode_image(torch.from_numpy(s1)), model.encode_image(torch.from_numpy(s2))
    _, s1_to_s2, s2_to_s1 = reference_metrics(s1_emb.double().numpy(), s2_emb.double().numpy())
    ranks = cross_sensor_ranks(s1_emb, s2_emb, block_size=block_size)
    assert ranks.s1_to_s2.tolist() == s1_to_s2 and ranks.s2_to_s1.tolist() == s2_to_s1


def test_each_media_is_embedded_once_and_shared_by_the_tasks(evaluated):
    model, result = evaluated
    # ndcg reads the set's media (s2) too: one embedding pass per media column for both tasks
    assert model.calls == Counter({2: PAIRS, 12: PAIRS})
    details = json.loads(result.details.read_text())["eval_sets"]["pairs"]
    assert details["cross_sensor"]["pairs"] == PAIRS and details["rows"] == PAIRS
    assert f"cross_sensor: {PAIRS} S1/S2 pairs" in result.report_md.read_text(encoding="utf-8")


def test_per_class_ndcg_is_the_mean_over_the_queries_holding_the_label(evaluated, paired):
    _, result = evaluated
    _, _, s2, labels = paired
    per_query = json.loads(result.details.read_text())["eval_sets"]["pairs"]["ndcg"]["per_query"]
    texts = sorted(per_query)
    model = TwoTower()
    with torch.no_grad():
        images = model.encode_image(torch.from_numpy(s2)).double().numpy()
        queries = model.encode_text(tokenize(texts)).double().numpy()
    query_labels = [text.split(". ") for text in texts]
    _, want_per_query = ndcg_reference(queries, images, query_labels, labels, 5)
    assert [per_query[text] for text in texts] == pytest.approx(want_per_query, abs=1e-9)
    want = {}
    for label in ("water", "trees", "flooded area", "crops"):
        holding = [value for text, value in zip(texts, want_per_query) if label in label_set(text.split(". "))]
        want[f"pairs.ndcg_class.{label.replace(' ', '_')}"] = sum(holding) / len(holding)
    got = {key: value for key, value in result.metrics.items() if ".ndcg_class." in key}
    assert got == pytest.approx(want, abs=1e-9)
    assert set(result.metrics) == {f"pairs.{key}" for key in CROSS_KEYS} | {"pairs.ndcg_at_5"} | set(want)
    assert result.unavailable == {}


def test_cross_sensor_ranks_refuses_unequal_sides():
    with pytest.raises(DataError, match="one S2 patch per S1 patch"):
        cross_sensor_ranks(torch.ones(3, 2), torch.ones(2, 2))


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory) -> Path:
    """Interleaved test rows: S1 at 1, 2, 4, 5, 6; S2 at 0, 3, 7; and two S1 train rows."""
    rng = np.random.default_rng(5)
    kinds = ["s2", "s1", "s1", "s2", "s1", "s1", "s1", "s2"]
    rows = [{kind: rng.normal(size=(2 if kind == "s1" else 12, SIDE, SIDE)), "labels": [VOCABULARY[i % 4]]}
            for i, kind in enumerate(kinds)]
    rows += [{"s1": rng.normal(size=(2, SIDE, SIDE)), "labels": ["water"], "split": "train"} for _ in range(2)]
    return write_rows(tmp_path_factory.mktemp("unpaired") / "crisis", rows)


def test_open_split_keeps_the_rows_with_the_sets_media_before_the_limit(unpaired):
    notes: list[str] = []
    s1 = open_split(EvalSet(name="c1", dataset=str(unpaired), media="s1", tasks=["ndcg"]), "/", notes=notes)
    assert list(s1.frame["sample_id"]) == ["r1", "r2", "r4", "r5", "r6"]
    assert notes == ["3 of the 8 rows of split 'test' have no 's1' media and are left out"]
    s2 = open_split(EvalSet(name="c2", dataset=str(unpaired), media="s2", tasks=["ndcg"]), "/")
    assert list(s2.frame["sample_id"]) == ["r0", "r3", "r7"]
    # the limit picks evenly among the S1 rows (first and last); over the whole split it would pick r0 and r7, both S2
    limited = open_split(EvalSet(name="c1", dataset=str(unpaired), media="s1", tasks=["ndcg"], limit=2), "/")
    assert list(limited.frame["sample_id"]) == ["r1", "r6"]
    train_notes: list[str] = []
    every = open_split(EvalSet(name="all", dataset=str(unpaired), media="s1", split="train", tasks=["ndcg"]),
                       "/", notes=train_notes)
    assert list(every.frame["sample_id"]) == ["r8", "r9"] and train_notes == []  # every row has s1: no note


def test_a_split_without_the_media_is_named(unpaired):
    with pytest.raises(DataError, match=r"'optical'.*none of the 8 rows of split 'test'.*has 'image' media"):
        open_split(EvalSet(name="optical", dataset=str(unpaired), media="image", tasks=["ndcg"]), "/")


def test_unpaired_set_scores_one_sensor_and_cross_sensor_names_the_unpaired_row(unpaired, tmp_path):
    model = TwoTower()
    sets = [EvalSet(name="crisis_s1", dataset=str(unpaired), media="s1", tasks=["ndcg"], ndcg_k=3)]
    result = evaluate_model(as_model(model), sets, tmp_path / "ok", data_root="/")
    assert model.calls == Counter({2: 5})
    assert json.loads(result.details.read_text())["eval_sets"]["crisis_s1"]["rows"] == 5
    assert "3 of the 8 rows of split 'test' have no 's1' media" in result.report_md.read_text(encoding="utf-8")
    bad = [EvalSet(name="crisis_x", dataset=str(unpaired), media="s1", tasks=["cross_sensor"])]
    with pytest.raises(DataError, match=r"'crisis_x': cross_sensor needs both s1 and s2.*'r1' has no 's2'"):
        evaluate_model(as_model(TwoTower()), bad, tmp_path / "bad", data_root="/")


def test_cross_sensor_is_a_task_of_the_config():
    assert EvalSet(name="x", dataset="d", tasks=["cross_sensor"]).tasks == ["cross_sensor"]
    with pytest.raises(ValueError, match="cross_sensor"):
        EvalSet(name="x", dataset="d", tasks=["cross-sensor"])
