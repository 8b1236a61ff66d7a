"""Closed-set VQA models on rsvl-tiny: they run, score in range, and a trained head learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsvl.data.generate import write_sar_chips
from rsvl.errors import ModelError
from rsvl.models import build_model, load_model, save_model
from rsvl.vqa import (
    QUESTION_TYPES,
    ClipAnswerRanker,
    ClipLinearHead,
    MajorityAnswer,
    VqaModel,
    answer_statement,
    answer_vocabulary,
    benchmark_vqa,
    evaluate_vqa,
    format_report,
    load_images,
    make_record,
    qa_pairs,
    random_baseline,
    vqa_from_dataset,
)
from rsvl.vqa.scoring import RecordImages
from rsvl.vqa.models import ClipImageEncoder


@pytest.fixture(scope="module")
def sar_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vqa_models") / "sar"
    write_sar_chips(out, seed=0, count=600)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(build_model("rsvl-tiny")[0], tmp_path_factory.mktemp("vqa_tiny") / "model")


@pytest.fixture(scope="module")
def splits(sar_dir):
    return vqa_from_dataset(sar_dir, "train"), vqa_from_dataset(sar_dir, "test")


def test_untrained_ranker_answers_from_the_closed_set(tiny_dir, sar_dir, splits):
    train, test = splits
    model, _, preprocess, tokenizer = load_model(tiny_dir)
    vocabulary = answer_vocabulary(train)
    ranker = ClipAnswerRanker(model, preprocess, tokenizer, vocabulary)
    assert isinstance(ranker, VqaModel)
    scores = evaluate_vqa(ranker, test, sar_dir)
    assert 0.0 <= scores.overall <= 1.0
    assert set(scores.per_type) == set(QUESTION_TYPES)
    assert all(0.0 <= value <= 1.0 for value in scores.per_type.values())
    assert sum(scores.support.values()) == len(scores.predictions) == sum(len(r["conversations"]) // 2 for r in test)
    assert all(answer in vocabulary[question] for _, question, _, answer in scores.predictions)
    right = sum(truth == answer for _, _, truth, answer in scores.predictions)
    assert scores.overall == pytest.approx(right / len(scores.predictions))
    with pytest.raises(ModelError, match="not in the model's closed answer set"):
        ranker.answer([load_images(test[:1], sar_dir)[0]], ["What colour is the sea?"])


def test_answer_statements_read_as_captions():
    assert answer_statement("How many ships are there in the image?", "3") == "there are 3 ships in the image"
    assert answer_statement("Is there a ship in the image?", "no") == "there is no ship in the image"
    assert answer_statement("Where is the largest ship?", "upper left") == \
        "the largest ship is in the upper left of the image"
    assert answer_statement("Is the image mostly land or sea?", "sea") == "the image is mostly sea"


def test_random_baseline_is_the_expected_accuracy_of_a_uniform_guess():
    records = [make_record("a", "a.png", [("Is there a ship in the image?", "yes"),
                                          ("How many ships are there in the image?", "2")]),
               make_record("b", "b.png", [("How many ships are there in the image?", "9")])]
    vocabulary = {"Is there a ship in the image?": ["no", "yes"],
                  "How many ships are there in the image?": ["0", "1", "2", "3"]}
    scores = random_baseline(records, vocabulary)
    assert scores.per_type == {"count": pytest.approx((1 / 4 + 0) / 2), "presence": pytest.approx(1 / 2)}
    assert scores.overall == pytest.approx((1 / 2 + 1 / 4 + 0) / 3)


def test_linear_head_on_frozen_embeddings_beats_the_majority_answer(tiny_dir, sar_dir, splits):
    train, test = splits
    results = benchmark_vqa(tiny_dir, sar_dir)
    print("\n" + format_report(results))
    assert list(results) == ["answer ranker", "linear head", "majority", "random"]
    assert results["majority"].predictions == evaluate_vqa(MajorityAnswer(train), test, sar_dir).predictions
    learned, majority = results["linear head"], results["majority"]
    assert set(learned.per_type) == set(QUESTION_TYPES)
    # Open sea vs coast is visible (land is bright) even to an untrained tower's features.
    assert learned.per_type["land"] > majority.per_type["land"] + 0.1
    assert learned.overall > majority.overall


def test_record_images_read_only_the_slice_asked_for(sar_dir, splits, monkeypatch):
    train, _ = splits
    lazy = RecordImages(train, sar_dir)
    assert len(lazy) == len(train)
    read = []
    monkeypatch.setattr("rsvl.vqa.scoring.load_raster", lambda path: read.append(path) or torch.zeros(1, 8, 8))
    assert len(lazy[5:8]) == 3 and len(read) == 3
    assert lazy[-1].shape == (1, 8, 8) and read[-1] == sar_dir / train[-1]["image"]


def test_embedding_and_fitting_in_slices_of_one_match_one_batch(tiny_dir, sar_dir, splits):
    """The step embeds a train split slice by slice; the slice size changes neither embeddings nor answers."""
    train, test = splits
    train = train[:40]
    model, _, preprocess, _ = load_model(tiny_dir)
    whole, single = ClipImageEncoder(model, preprocess), ClipImageEncoder(model, preprocess, batch_size=1)
    images = load_images(train, sar_dir)
    reference = whole.embed(images)
    by_one = single.embed_sequence(RecordImages(train, sar_dir))
    assert by_one.shape == reference.shape
    assert torch.allclose(by_one, reference, atol=1e-5)
    assert torch.allclose(whole.embed_sequence(RecordImages(train, sar_dir)), reference, atol=1e-6)

    fitted = ClipLinearHead.fit(model, preprocess, train, RecordImages(train, sar_dir))
    sliced = ClipLinearHead.from_embeddings(single, train, by_one)
    assert set(fitted.heads) == set(sliced.heads)
    for question, (classes, head) in fitted.heads.items():
        other_classes, other = sliced.heads[question]
        assert classes == other_classes and (head is None) == (other is None)
        if head is not None:
            assert torch.allclose(head.weight, other.weight, atol=1e-3)
    kept = [r for r in test if all(q in fitted.vocabulary for q, _ in qa_pairs(r))]
    assert evaluate_vqa(fitted, kept, sar_dir).predictions == evaluate_vqa(sliced, kept, sar_dir).predictions
