"""The iebaker objective and EBA's queue, against losses and thresholds computed here by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rsvl.config import ObjectiveConfig
from rsvl.models import build_model
from rsvl.models.tokens import encode_with_tokens
from rsvl.train.eba import DroppedPairs, SimilarityQueue, kept_pairs
from rsvl.train.objectives import ObjectiveContext, build_objective

CAPTIONS = ["a red roof near a road", "two planes beside the terminal", "green trees around a pond",
            "a river under a bridge", "many cars in a parking lot", "a baseball field"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, _, _, tokenizer = build_model("rsvl-tiny", None, 3, None)
    return model, tokenizer


def _batch(tokenizer, n: int = 6, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    captions = CAPTIONS[:n]
    return {"image": torch.randn(n, 3, 64, 64), "text": tokenizer(captions), "caption": captions,
            "sample_id": [f"s{i}" for i in range(n)]}


def _objective(model, tokenizer, **settings):
    cfg = ObjectiveConfig(name="iebaker", learn_logit_scale=False, logit_scale=20.0, **settings)
    objective = build_objective(cfg, ObjectiveContext(tokenizer=tokenizer))
    objective.prepare(model)
    return objective


def _reference(model, batch) -> dict:
    """Similarities from a separate inference pass: cosine (images x texts) and Loc (texts x images)."""
    model.eval()  # the tiny model has no dropout: train and eval passes agree
    out = encode_with_tokens(model, batch["image"], batch["text"])
    images, texts = F.normalize(out["image_features"], dim=-1), F.normalize(out["text_features"], dim=-1)
    t = F.normalize(out["text_tokens"], dim=-1)
    i = F.normalize(out["image_tokens"], dim=-1)
    local = torch.einsum("ald,bpd->ablp", t, i).pow(2).sum((2, 3)).sqrt()
    return {"sims": images @ texts.T, "local": local}


def _ce_sum(logits: torch.Tensor, rows: torch.Tensor) -> float:
    labels = torch.arange(logits.shape[0])[rows]
    return float(F.cross_entropy(logits[rows], labels) + F.cross_entropy(logits.T[rows], labels))


def test_plain_iebaker_is_the_summed_two_way_clip_loss(tiny):
    model, tokenizer = tiny
    batch = _batch(tokenizer)
    objective = _objective(model, tokenizer)
    objective.start_epoch(0)
    with torch.no_grad():
        out = objective(model, batch)
    ref = _reference(model, batch)
    everyone = torch.ones(6, dtype=torch.bool)
    assert float(out["loss"]) == pytest.approx(_ce_sum(20.0 * ref["sims"], everyone), rel=1e-5)
    assert float(out["logit_scale"]) == pytest.approx(20.0)
    assert not model.logit_scale.requires_grad  # the published fixed scale


def test_local_term_is_the_two_way_ce_over_the_frobenius_norm_of_token_cosines(tiny):
    model, tokenizer = tiny
    batch = _batch(tokenizer)
    objective = _objective(model, tokenizer, local_weight=0.7)
    objective.start_epoch(0)
    with torch.no_grad():
        out = objective(model, batch)
    ref = _reference(model, batch)
    everyone = torch.ones(6, dtype=torch.bool)
    local = _ce_sum(20.0 * ref["local"], everyone)
    assert float(out["local_loss"]) == pytest.approx(local, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(_ce_sum(20.0 * ref["sims"], everyone) + 0.7 * local, rel=1e-5)


def test_similarity_queue_is_fifo_and_tau_is_the_reference_codes_percentile():
    queue = SimilarityQueue(5)
    assert queue.threshold(0.2) == -math.inf  # empty: nothing to rank, nothing dropped
    queue.push(torch.tensor([0.9, 0.1, 0.5]))
    queue.push(torch.tensor([0.3, 0.7, 0.2]))
    assert queue.values.tolist() == pytest.approx([0.1, 0.5, 0.3, 0.7, 0.2])  # the oldest (0.9) fell out
    values = np.sort(np.array([0.1, 0.5, 0.3, 0.7, 0.2], dtype=np.float32))
    for ratio in (0.0, 0.2, 0.5, 0.99):
        assert queue.threshold(ratio) == pytest.approx(float(values[min(int(ratio * 5), 4)]))
    restored = SimilarityQueue(5)
    restored.load_state_dict(queue.state_dict())
    assert restored.values.tolist() == queue.values.tolist()


def test_kept_pairs_keep_at_least_the_best_pair():
    assert kept_pairs(torch.tensor([0.2, 0.6, 0.1]), 0.15).tolist() == [True, True, False]
    assert kept_pairs(torch.tensor([0.2, 0.6, 0.1]), 0.9).tolist() == [False, True, False]


def _tau(values: list[float], ratio: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(ratio * len(ordered)), len(ordered) - 1)]


@pytest.mark.parametrize("variant", ["joint", "split"])
def test_eba_drops_pairs_below_the_epoch_threshold_from_start_epoch_on(tiny, variant):
    model, tokenizer = tiny
    eba = {"variant": variant, "queue_size": 100, "drop_ratio": 0.5, "start_epoch": 1}
    objective = _objective(model, tokenizer, local_weight=1.0, eba=eba)
    first, second = _batch(tokenizer, seed=1), _batch(tokenizer, seed=2)
    with torch.no_grad():
        objective.start_epoch(0)
        out0 = objective(model, first)  # epoch 0: before start_epoch, every pair counts, the queue fills
        assert float(out0["kept"]) == 1.0 and objective.epoch_metrics(0)["eba.dropped"] == 0
        objective.start_epoch(1)
        out1 = objective(model, second)
    ref0, ref1 = _reference(model, first), _reference(model, second)
    tau = _tau(ref0["sims"].diagonal().tolist(), 0.5)
    keep = ref1["sims"].diagonal() > tau
    assert objective.queues["global"].tau == pytest.approx(tau, abs=1e-6)
    assert float(out1["kept"]) == pytest.approx(float(keep.float().mean()))
    assert float(out1["global_loss"]) == pytest.approx(_ce_sum(20.0 * ref1["sims"], keep), rel=1e-5)
    if variant == "joint":
        local_keep = keep
    else:  # the local similarity has its own queue and threshold
        local_tau = _tau(ref0["local"].diagonal().tolist(), 0.5)
        local_keep = ref1["local"].diagonal() > local_tau
        assert objective.queues["local"].tau == pytest.approx(local_tau, rel=1e-5)
    assert float(out1["local_loss"]) == pytest.approx(_ce_sum(20.0 * ref1["local"], local_keep), rel=1e-5)
    metrics = objective.epoch_metrics(1)
    assert metrics["eba.dropped"] == float((~keep).sum()) and metrics["eba.tau"] == pytest.approx(tau, abs=1e-6)
    table = objective.artifacts()["eba_dropped.csv"].splitlines()
    dropped_ids = [line.split(",")[3] for line in table[1:] if line.split(",")[2] == "global"]
    assert dropped_ids == [f"s{i}" for i in range(6) if not keep[i]]


def test_eba_state_survives_a_checkpoint(tiny):
    model, tokenizer = tiny
    eba = {"variant": "split", "queue_size": 8, "drop_ratio": 0.3, "start_epoch": 0}
    objective = _objective(model, tokenizer, local_weight=1.0, eba=eba)
    with torch.no_grad():
        objective.start_epoch(0)
        objective(model, _batch(tokenizer, seed=3))
        objective.start_epoch(1)
        objective(model, _batch(tokenizer, seed=4))
    state = objective.state_dict()
    resumed = _objective(model, tokenizer, local_weight=1.0, eba=eba)
    resumed.load_state_dict(state)
    resumed.start_epoch(1)  # resuming inside epoch 1 keeps its threshold
    assert resumed.queues["global"].tau == objective.queues["global"].tau
    with torch.no_grad():
        a, b = objective(model, _batch(tokenizer, seed=5)), resumed(model, _batch(tokenizer, seed=5))
    assert float(a["loss"]) == float(b["loss"])
    assert resumed.artifacts() == objective.artifacts()


def test_dropped_pairs_table_has_a_header_and_one_row_per_pair():
    table = DroppedPairs()
    count = table.add(epoch=4, step=9, kind="global", sample_ids=["a", "b"], captions=["x, y", "z"],
                      similarities=torch.tensor([0.1, 0.5]), keep=torch.tensor([False, True]), tau=0.2)
    assert count == 1
    lines = table.to_csv().splitlines()
    assert lines[0] == "epoch,step,kind,sample_id,caption,similarity,tau"
    assert lines[1].startswith('4,9,global,a,"x, y",0.1')


def test_ker_term_is_the_keyword_ce_of_the_head_over_the_masked_captions(tiny):
    from rsvl.data.ker_masking import IGNORE_INDEX, mask_keywords
    from rsvl.data.ker_vocabulary import default_vocabulary

    model, tokenizer = build_model("rsvl-tiny", None, 3, None)[::3]
    batch = _batch(tokenizer)
    objective = _objective(model, tokenizer, ker_weight=0.5)
    assert model.ker_head.mlp[3].out_features == len(default_vocabulary())
    objective.start_epoch(0)
    model.eval()
    with torch.no_grad():
        out = objective(model, batch)
        # reference: the masked captions' token states and the images' tokens through the head, CE where labelled
        masked, labels = mask_keywords(tokenizer, batch["caption"], default_vocabulary())
        tokens = encode_with_tokens(model, batch["image"], masked)
        scores = model.ker_head(tokens["text_tokens"], tokens["image_tokens"])
        answered = labels != IGNORE_INDEX
        expected = F.cross_entropy(scores[answered], labels[answered])
    assert int(answered.sum()) >= 6  # every caption holds a keyword ("roof", "planes", "trees", ...)
    assert float(out["ker_loss"]) == pytest.approx(float(expected), rel=1e-5)
    ref = _reference(model, batch)
    assert float(out["loss"]) == pytest.approx(_ce_sum(20.0 * ref["sims"], torch.ones(6, dtype=torch.bool))
                                               + 0.5 * float(expected), rel=1e-5)
