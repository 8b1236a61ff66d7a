"""SAR visual question answering: LLaVA conversation files, questions from annotations, closed-set models.

PAPERS.md §1 "SAR-GPT" fine-tunes a small multimodal LLM on LLaVA-format SAR VQA. This package
writes that training format from detection boxes and land/sea masks, and evaluates any model
behind :class:`VqaModel`; offline, the models are closed-set CLIP rankers and linear heads
(no multimodal LLM weights are available here).
"""

from rsvl.vqa.benchmark import benchmark_vqa
from rsvl.vqa.evaluate import VqaScores, evaluate_vqa, format_report, load_images, random_baseline
from rsvl.vqa.llava import make_record, qa_pairs, read_llava, write_llava
from rsvl.vqa.models import (
    ClipAnswerRanker,
    ClipLinearHead,
    MajorityAnswer,
    VqaModel,
    answer_statement,
    answer_vocabulary,
)
from rsvl.vqa.questions import QUESTION_TYPES, question_type, vqa_from_dataset

__all__ = [
    "QUESTION_TYPES",
    "ClipAnswerRanker",
    "ClipLinearHead",
    "MajorityAnswer",
    "VqaModel",
    "VqaScores",
    "answer_statement",
    "answer_vocabulary",
    "benchmark_vqa",
    "evaluate_vqa",
    "format_report",
    "load_images",
    "make_record",
    "qa_pairs",
    "question_type",
    "random_baseline",
    "read_llava",
    "vqa_from_dataset",
    "write_llava",
]
