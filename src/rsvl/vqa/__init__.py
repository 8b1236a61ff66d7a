"""SAR visual question answering: LLaVA conversation files, questions from annotations, closed-set models.

PAPERS.md §1 "SAR-GPT" fine-tunes a small multimodal LLM on LLaVA-format SAR VQA. This package
writes that training format from detection boxes and land/sea masks, and evaluates any model
behind :class:`VqaModel`; offline, the models are closed-set CLIP rankers and linear heads
and heads on the image tower's embedding or feature grid
(no multimodal LLM weights are available here). :mod:`rsvl.vqa.persist` saves them as a small folder
that names its CLIP by weights SHA-256; :func:`rsvl.steps.vqa.run_vqa` is the pipeline's ``vqa`` step.

Plugging in a generative SAR-GPT-style model (on a cluster with the weights):

1. Fine-tune it on the step's ``llava_train.json`` (LLaVA conversation format, images relative to
   the dataset folder, i.e. LLaVA's ``--image_folder``).
2. Wrap it in a class with ``answer(images, questions) -> list[str]`` (:class:`VqaModel`): e.g.
   a client of an OpenAI-compatible multimodal endpoint served in the cluster, or the checkpoint
   loaded in-process; answers are compared after lower-casing and blank stripping, so a generative
   model should be prompted to answer in the closed-set form ("yes", "3", "upper left", "sea").
3. Score it with :func:`evaluate_vqa` on ``llava_test.json`` beside :class:`MajorityAnswer` and
   :func:`random_baseline` (the same per-type table), or add its name to
   :class:`rsvl.config.vqa.VqaConfig` ``model`` and a builder to :data:`rsvl.steps.vqa.BUILDERS`
   so the pipeline step builds it; it keeps its own checkpoint format (:func:`save_vqa_model`
   saves only the closed-set models).
"""

from rsvl.vqa.benchmark import benchmark_vqa
from rsvl.vqa.scoring import VqaScores, evaluate_vqa, format_report, load_images, random_baseline
from rsvl.vqa.llava import make_record, qa_pairs, read_llava, write_llava
from rsvl.vqa.models import (
    ClipAnswerRanker,
    ClipLinearHead,
    MajorityAnswer,
    VqaModel,
    answer_statement,
    answer_vocabulary,
)
from rsvl.vqa.spatial import ClipSpatialHead
from rsvl.vqa.persist import load_vqa_model, read_vqa_config, save_vqa_model
from rsvl.vqa.questions import QUESTION_TYPES, question_type, vqa_from_dataset

__all__ = [
    "QUESTION_TYPES",
    "ClipAnswerRanker",
    "ClipLinearHead",
    "ClipSpatialHead",
    "MajorityAnswer",
    "VqaModel",
    "VqaScores",
    "answer_statement",
    "answer_vocabulary",
    "benchmark_vqa",
    "evaluate_vqa",
    "format_report",
    "load_images",
    "load_vqa_model",
    "make_record",
    "qa_pairs",
    "question_type",
    "random_baseline",
    "read_llava",
    "read_vqa_config",
    "save_vqa_model",
    "vqa_from_dataset",
    "write_llava",
]
