"""One call that scores a saved CLIP model on a dataset's generated VQA test split, with baselines."""

from __future__ import annotations

from pathlib import Path

from rsvl.models import load_model
from rsvl.vqa.scoring import RecordImages, VqaScores, evaluate_vqa, random_baseline
from rsvl.vqa.models import ClipAnswerRanker, ClipLinearHead, MajorityAnswer, answer_vocabulary
from rsvl.vqa.questions import vqa_from_dataset


def benchmark_vqa(model_dir: str | Path, dataset_dir: str | Path, *, train_split: str = "train",
                  test_split: str = "test", device: str = "cpu") -> dict[str, VqaScores]:
    """Score the answer ranker and the linear head of a saved model against the baselines.

    Questions come from :func:`rsvl.vqa.questions.vqa_from_dataset`; the train split gives the
    closed answer sets, the heads' training data and the majority answers; the test split is scored.

    Args:
        model_dir: A folder written by :func:`rsvl.models.save_model`.
        dataset_dir: A canonical detection dataset (boxes, optionally a sea/land mask).
        train_split: Split the heads and vocabularies come from.
        test_split: Split scored.
        device: Where the model runs.

    Returns:
        ``{"answer ranker", "linear head", "majority", "random"}`` scores, in that order
        (print them with :func:`rsvl.vqa.scoring.format_report`).
    """
    model, _, preprocess, tokenizer = load_model(model_dir)
    model = model.to(device)
    train = vqa_from_dataset(dataset_dir, train_split)
    test = vqa_from_dataset(dataset_dir, test_split)
    vocabulary = answer_vocabulary(train)
    ranker = ClipAnswerRanker(model, preprocess, tokenizer, vocabulary, device)
    head = ClipLinearHead.fit(model, preprocess, train, RecordImages(train, dataset_dir), device)
    return {
        "answer ranker": evaluate_vqa(ranker, test, dataset_dir),
        "linear head": evaluate_vqa(head, test, dataset_dir),
        "majority": evaluate_vqa(MajorityAnswer(train), test, dataset_dir),
        "random": random_baseline(test, vocabulary),
    }
