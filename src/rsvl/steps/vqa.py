"""The ``vqa`` step: closed-set SAR VQA on the run's trained CLIP, scored per question type beside baselines.

Questions and answers are generated from the run dataset's ship boxes and sea/land mask
(:func:`rsvl.vqa.vqa_from_dataset`): ``cfg.vqa.train_split`` gives the closed answer sets, the
linear head's training data and the majority answers; ``cfg.vqa.test_split`` is scored. The step
writes into ``out_dir``::

    llava_train.json, llava_test.json   the questions in LLaVA format (what a SAR-GPT fine-tune reads)
    model/                              the VQA model (rsvl.vqa.persist; names its CLIP by weights SHA-256)
    report.md                           per-type accuracy: model, majority answer, random answer
    predictions.json                    every test question with its truth and the model's answer
    metrics.json                        the metrics below

Metrics, all accuracies in [0, 1]: ``vqa.overall`` and ``vqa.<type>`` of the model,
``vqa.majority.*`` and ``vqa.random.*`` of the baselines, for each question type of
:data:`rsvl.vqa.QUESTION_TYPES` present in the test questions. Given the CLIP's training run id,
they are logged there with the files above under the ``vqa/`` artifact folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from rsvl.config import RunConfig
from rsvl.errors import ConfigError, DataError
from rsvl.mlflow_store import resolve_tracking_uri
from rsvl.models import load_model
from rsvl.models.factory import BuiltModel
from rsvl.vqa import (
    ClipAnswerRanker,
    ClipLinearHead,
    MajorityAnswer,
    VqaModel,
    VqaScores,
    answer_vocabulary,
    evaluate_vqa,
    qa_pairs,
    question_type,
    random_baseline,
    save_vqa_model,
    vqa_from_dataset,
    write_llava,
)
from rsvl.vqa.scoring import RecordImages
from rsvl.vqa.persist import clip_reference

ARTIFACT_DIR = "vqa"
METRIC_PREFIX = "vqa"
MODEL_TAG = "vqa.model"
LLAVA_TRAIN, LLAVA_TEST = "llava_train.json", "llava_test.json"
MODEL_DIR, REPORT_NAME, PREDICTIONS_NAME, METRICS_NAME = "model", "report.md", "predictions.json", "metrics.json"
BASELINES = ("majority", "random")

Builder = Callable[[BuiltModel, Sequence[dict[str, Any]], Path, str], VqaModel]


def _linear_head(clip: BuiltModel, train: Sequence[dict[str, Any]], dataset_dir: Path, device: str) -> VqaModel:
    model, _, preprocess, _ = clip
    return ClipLinearHead.fit(model, preprocess, train, RecordImages(train, dataset_dir), device)


def _answer_ranker(clip: BuiltModel, train: Sequence[dict[str, Any]], dataset_dir: Path, device: str) -> VqaModel:
    model, _, preprocess, tokenizer = clip
    return ClipAnswerRanker(model, preprocess, tokenizer, answer_vocabulary(train), device)


BUILDERS: dict[str, Builder] = {"linear_head": _linear_head, "answer_ranker": _answer_ranker}
"""``cfg.vqa.model`` → builder of the model from (loaded CLIP, train records, dataset folder, device).

A generative model plugs in with a builder here (and its name in :class:`rsvl.config.vqa.VqaConfig`);
if it has a ``save(folder)`` method the step calls it for ``model/``.
"""


@dataclass(frozen=True)
class VqaOutcome:
    """What the ``vqa`` step produced.

    Attributes:
        kind: The configured model (``cfg.vqa.model``).
        scores: ``{kind, "majority", "random"}`` scores on the test questions, in that order.
        metrics: ``vqa.*`` accuracies (see the module docstring).
        out_dir: The step's folder.
        clip_weights_sha256: SHA-256 of the CLIP's weights file the model was built on.
    """

    kind: str
    scores: dict[str, VqaScores]
    metrics: dict[str, float]
    out_dir: Path
    clip_weights_sha256: str

    @property
    def model_dir(self) -> Path:
        """The saved VQA model (:func:`rsvl.vqa.load_vqa_model` reads it)."""
        return self.out_dir / MODEL_DIR

    @property
    def report_md(self) -> Path:
        """The Markdown report."""
        return self.out_dir / REPORT_NAME

    @property
    def llava_train(self) -> Path:
        """The train split's questions in LLaVA format."""
        return self.out_dir / LLAVA_TRAIN

    @property
    def llava_test(self) -> Path:
        """The test split's questions in LLaVA format."""
        return self.out_dir / LLAVA_TEST


def split_questions(dataset_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The generated LLaVA records of one split, refusing a split that yields none.

    Raises:
        DataError: No question can be generated (no rows in the split, no boxes, no sea/land mask);
            the dataset and split are named.
    """
    records = vqa_from_dataset(dataset_dir, split)
    if not records:
        raise DataError(f"{dataset_dir}: split {split!r} yields no VQA questions; questions come from object "
                        "boxes (manifest 'boxes') and a sea/land mask declared in dataset.json 'mask_values', "
                        "and this split has rows with neither")
    return records


def _check_answerable(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]], dataset_dir: Path,
                      splits: tuple[str, str]) -> None:
    known = answer_vocabulary(train)
    unseen = sorted({question for record in test for question, _ in qa_pairs(record)} - set(known))
    if unseen:
        raise DataError(f"{dataset_dir}: split {splits[1]!r} asks {unseen}, never asked in split {splits[0]!r}; "
                        "a closed-set model only answers questions it was built on")


def vqa_metrics(kind_scores: VqaScores, baselines: dict[str, VqaScores]) -> dict[str, float]:
    """``vqa.overall``, ``vqa.<type>`` of the model and ``vqa.<baseline>.overall|<type>`` of each baseline."""
    metrics = {f"{METRIC_PREFIX}.overall": kind_scores.overall}
    metrics.update({f"{METRIC_PREFIX}.{kind}": value for kind, value in kind_scores.per_type.items()})
    for name, scores in baselines.items():
        metrics[f"{METRIC_PREFIX}.{name}.overall"] = scores.overall
        metrics.update({f"{METRIC_PREFIX}.{name}.{kind}": value for kind, value in scores.per_type.items()})
    return metrics


def format_markdown(kind: str, scores: dict[str, VqaScores], context: dict[str, str]) -> str:
    """The step's Markdown report: what was asked of which model, then accuracy per question type.

    Args:
        kind: The configured model's name (the first entry of ``scores``).
        scores: ``{kind, "majority", "random"}``.
        context: Lines of the header (``dataset``, ``clip`` ...), shown as a bullet list.

    Returns:
        The report; accuracies in percent.
    """
    ours = scores[kind]
    names = list(scores)
    header = ["type", "questions", f"model ({kind})", *names[1:]]
    lines = [f"# SAR VQA: {kind}", "",
             "Closed-set visual question answering on the trained CLIP (no generative model): questions and "
             "answers generated from the dataset's boxes and sea/land mask; exact-match accuracy, %.", ""]
    lines += [f"- {key}: {value}" for key, value in context.items()] + [""]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]

    def row(label: str, count: int, values: list[float | None]) -> str:
        cells = ["-" if value is None else f"{100 * value:.1f}" for value in values]
        return f"| {label} | {count} | " + " | ".join(cells) + " |"

    for question_kind, count in ours.support.items():
        lines.append(row(question_kind, count, [scores[name].per_type.get(question_kind) for name in names]))
    lines.append(row("**overall**", sum(ours.support.values()), [scores[name].overall for name in names]))
    return "\n".join(lines) + "\n"


def log_vqa(tracking_uri: str, run_id: str, outcome: VqaOutcome) -> None:
    """Log the step's metrics, its model tag and its files (``vqa/``) into an MLflow run.

    Args:
        tracking_uri: The tracking store.
        run_id: The run to log into (the CLIP's training run).
        outcome: What :func:`run_vqa` returned.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    stamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), stamp, 0) for key, value in outcome.metrics.items()],
                     tags=[RunTag(MODEL_TAG, outcome.kind)])
    for name in (REPORT_NAME, LLAVA_TRAIN, LLAVA_TEST, PREDICTIONS_NAME, METRICS_NAME):
        client.log_artifact(run_id, str(outcome.out_dir / name), artifact_path=ARTIFACT_DIR)
    if outcome.model_dir.is_dir():
        client.log_artifacts(run_id, str(outcome.model_dir), artifact_path=f"{ARTIFACT_DIR}/{MODEL_DIR}")


def _save(model: VqaModel, out_dir: Path, clip_dir: Path) -> None:
    if isinstance(model, (ClipLinearHead, ClipAnswerRanker)):
        save_vqa_model(model, out_dir, clip_dir)
    elif callable(getattr(model, "save", None)):
        model.save(out_dir)


def run_vqa(cfg: RunConfig, model_dir: str | Path, dataset_dir: str | Path, out_dir: str | Path,
            mlflow_run_id: str | None = None, *, device: str | None = None) -> VqaOutcome:
    """Generate the questions, build ``cfg.vqa.model`` on the CLIP, score it beside the baselines, record it.

    Args:
        cfg: The run config; its ``vqa`` section says which model and which splits.
        model_dir: The trained CLIP (a :func:`rsvl.models.save_model` folder).
        dataset_dir: The run dataset (canonical format, with boxes and optionally a sea/land mask).
        out_dir: Receives the files listed in the module docstring.
        mlflow_run_id: Log metrics and files into this run (the CLIP's training run).
        device: Where the CLIP runs (default: the GPU when there is one).

    Returns:
        The :class:`VqaOutcome`.

    Raises:
        ConfigError: The config has no ``vqa`` section.
        DataError: A split yields no questions, or the test split asks questions the train split never does.
        ModelError: The CLIP cannot be loaded.
    """
    if cfg.vqa is None:
        raise ConfigError(f"config of paper {cfg.paper!r} (profile {cfg.profile!r}) has no vqa section; "
                          "add `vqa: {model: linear_head}` to run the vqa step")
    settings, dataset, out = cfg.vqa, Path(dataset_dir).resolve(), Path(out_dir).resolve()
    clip_dir = Path(model_dir).resolve()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    train = split_questions(dataset, settings.train_split)
    test = split_questions(dataset, settings.test_split)
    _check_answerable(train, test, dataset, (settings.train_split, settings.test_split))
    write_llava(train, out / LLAVA_TRAIN)
    write_llava(test, out / LLAVA_TEST)

    clip = load_model(clip_dir)
    clip[0].to(device)
    model = BUILDERS[settings.model](clip, train, dataset, device)
    scores = {
        settings.model: evaluate_vqa(model, test, dataset),
        "majority": evaluate_vqa(MajorityAnswer(train), test, dataset),
        "random": random_baseline(test, answer_vocabulary(train)),
    }
    _save(model, out / MODEL_DIR, clip_dir)

    metrics = vqa_metrics(scores[settings.model], {name: scores[name] for name in BASELINES})
    clip_sha256 = clip_reference(clip_dir).weights_sha256
    context = {
        "dataset": f"`{dataset}`",
        "fitted on": f"split `{settings.train_split}` ({len(train)} images, "
                     f"{sum(len(r['conversations']) // 2 for r in train)} questions)",
        "scored on": f"split `{settings.test_split}` ({len(test)} images)",
        "CLIP": f"`{clip_dir}` (weights sha256 `{clip_sha256}`)",
    }
    (out / REPORT_NAME).write_text(format_markdown(settings.model, scores, context), encoding="utf-8")
    predictions = [{"id": record_id, "type": question_type(question), "question": question, "truth": truth,
                    "answer": answer}
                   for record_id, question, truth, answer in scores[settings.model].predictions]
    (out / PREDICTIONS_NAME).write_text(json.dumps(predictions, indent=1) + "\n", encoding="utf-8")
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    outcome = VqaOutcome(kind=settings.model, scores=scores, metrics=metrics, out_dir=out,
                         clip_weights_sha256=clip_sha256)
    if mlflow_run_id:
        log_vqa(cfg.mlflow.tracking_uri, mlflow_run_id, outcome)
    return outcome
