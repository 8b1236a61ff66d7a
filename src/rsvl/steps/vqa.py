"""The ``vqa`` step: closed-set SAR VQA on the run's CLIP and its comparisons, per question type and set.

Questions and answers are generated from a dataset's ship boxes and sea/land mask
(:func:`rsvl.vqa.vqa_from_dataset`): ``cfg.vqa.train_split`` gives the closed answer sets, the
heads' training data and the majority answers; the test split is scored. The sets are the run
dataset (``run``: ``cfg.vqa.test_split`` scored) and each eval set ``cfg.vqa.sets`` names (its
``split`` scored), resolved as the evaluate step resolves it (:func:`rsvl.evaluate.pinned_data.pinned_dataset`;
an optional set whose source is absent is skipped with its reason). The models are the run's CLIP
(``candidate``) and the comparisons the evaluate step scores beside it
(:func:`rsvl.steps.evaluation.comparisons`: ``train.ablations`` such as ``sar_only``, and the
untuned ``base`` with ``evaluate.compare_base``); ``cfg.vqa.model`` is fitted on each CLIP for each
set. The step writes into ``out_dir``::

    llava_train.json, llava_test.json   the run set's questions in LLaVA format (what a SAR-GPT fine-tune reads)
    model/                              the candidate's VQA model on the run set (rsvl.vqa.persist; names its CLIP by weights SHA-256)
    report.md                           per-type accuracy: candidate with the baselines, then every model × set
    predictions.json                    every run-set test question with its truth and the candidate's answer
    metrics.json                        the metrics below

Metrics, all accuracies in [0, 1], for each question type of :data:`rsvl.vqa.QUESTION_TYPES` a set
asks and ``overall``: ``vqa.<set>.<model>.<type>`` for every set and model (``candidate``, the
ablations, ``base``) and for the baselines ``majority`` and ``random`` in the model's place; and
the candidate on the run set once more under the keys the gate-side summary reads, ``vqa.overall``,
``vqa.<type>``, ``vqa.majority.*`` and ``vqa.random.*``. Given the CLIP's training run id, they are
logged there with the files above under the ``vqa/`` artifact folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from rsvl.config import RunConfig
from rsvl.config.vqa import BASELINES, CANDIDATE, RUN_SET
from rsvl.errors import ConfigError, DataError
from rsvl.mlflow_store import resolve_tracking_uri, tracking_client
from rsvl.models import load_model
from rsvl.models.factory import BuiltModel
from rsvl.vqa import (
    QUESTION_TYPES,
    ClipAnswerRanker,
    ClipLinearHead,
    ClipSpatialHead,
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
SKIPPED_TAG = "vqa_skipped"
LLAVA_TRAIN, LLAVA_TEST = "llava_train.json", "llava_test.json"
MODEL_DIR, REPORT_NAME, PREDICTIONS_NAME, METRICS_NAME = "model", "report.md", "predictions.json", "metrics.json"
OVERALL = "overall"

Builder = Callable[[BuiltModel, Sequence[dict[str, Any]], Path, str], VqaModel]


def _linear_head(clip: BuiltModel, train: Sequence[dict[str, Any]], dataset_dir: Path, device: str) -> VqaModel:
    model, _, preprocess, _ = clip
    return ClipLinearHead.fit(model, preprocess, train, RecordImages(train, dataset_dir), device)


def _answer_ranker(clip: BuiltModel, train: Sequence[dict[str, Any]], dataset_dir: Path, device: str) -> VqaModel:
    model, _, preprocess, tokenizer = clip
    return ClipAnswerRanker(model, preprocess, tokenizer, answer_vocabulary(train), device)


def _spatial_head(clip: BuiltModel, train: Sequence[dict[str, Any]], dataset_dir: Path, device: str) -> VqaModel:
    model, _, preprocess, _ = clip
    return ClipSpatialHead.fit(model, preprocess, train, RecordImages(train, dataset_dir), device)


BUILDERS: dict[str, Builder] = {"linear_head": _linear_head, "spatial_head": _spatial_head,
                                "answer_ranker": _answer_ranker}
"""``cfg.vqa.model`` → builder of the model from (loaded CLIP, train records, dataset folder, device).

A generative model plugs in with a builder here (and its name in :class:`rsvl.config.vqa.VqaConfig`);
if it has a ``save(folder)`` method the step calls it for ``model/``.
"""


@dataclass(frozen=True)
class VqaSet:
    """One dataset VQA is fitted and scored on.

    Attributes:
        name: ``run`` or the eval set's name (the ``<set>`` of the metric keys).
        dataset: The dataset directory.
        train: The records of ``cfg.vqa.train_split`` (closed answer sets, heads, majority answers).
        test: The records scored.
        splits: ``(fitted on, scored on)``.
    """

    name: str
    dataset: Path
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    splits: tuple[str, str]


@dataclass(frozen=True)
class VqaOutcome:
    """What the ``vqa`` step produced.

    Attributes:
        kind: The configured model (``cfg.vqa.model``).
        scores: ``{kind, "majority", "random"}`` scores of the candidate on the run set, in that order.
        metrics: ``vqa.*`` accuracies (see the module docstring).
        out_dir: The step's folder.
        clip_weights_sha256: SHA-256 of the CLIP's weights file the model was built on.
        table: ``{set: {model or baseline: scores}}``: sets ``run`` first, then ``cfg.vqa.sets``
            in order; rows ``candidate``, the comparisons, ``majority``, ``random``.
        skipped: Set name → why it was not scored (an optional eval set whose source is absent).
    """

    kind: str
    scores: dict[str, VqaScores]
    metrics: dict[str, float]
    out_dir: Path
    clip_weights_sha256: str
    table: dict[str, dict[str, VqaScores]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

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


def vqa_metrics(kind_scores: VqaScores, baselines: dict[str, VqaScores],
                table: dict[str, dict[str, VqaScores]] | None = None) -> dict[str, float]:
    """The step's metrics (see the module docstring).

    Args:
        kind_scores: The candidate on the run set: ``vqa.overall`` and ``vqa.<type>``.
        baselines: Baselines on the run set: ``vqa.<baseline>.overall|<type>``.
        table: ``{set: {row: scores}}``: ``vqa.<set>.<row>.overall|<type>``.
    """
    metrics = {f"{METRIC_PREFIX}.{OVERALL}": kind_scores.overall}
    metrics.update({f"{METRIC_PREFIX}.{kind}": value for kind, value in kind_scores.per_type.items()})
    for name, scores in baselines.items():
        metrics[f"{METRIC_PREFIX}.{name}.{OVERALL}"] = scores.overall
        metrics.update({f"{METRIC_PREFIX}.{name}.{kind}": value for kind, value in scores.per_type.items()})
    for set_name, rows in (table or {}).items():
        for row, scores in rows.items():
            metrics[f"{METRIC_PREFIX}.{set_name}.{row}.{OVERALL}"] = scores.overall
            metrics.update({f"{METRIC_PREFIX}.{set_name}.{row}.{kind}": value
                            for kind, value in scores.per_type.items()})
    return metrics


def table_types(table: dict[str, dict[str, VqaScores]]) -> list[str]:
    """The question types any set asks, in :data:`rsvl.vqa.QUESTION_TYPES` order (others after, sorted)."""
    present = {kind for rows in table.values() for scores in rows.values() for kind in scores.support}
    return [kind for kind in QUESTION_TYPES if kind in present] + sorted(present - set(QUESTION_TYPES))


def format_table(table: dict[str, dict[str, VqaScores]], labels: dict[str, str] | None = None,
                 skipped: dict[str, str] | None = None) -> list[str]:
    """The Markdown table of every model × set: accuracy per question type and overall, in percent.

    Args:
        table: ``{set: {row: scores}}`` (rows: models, then the baselines).
        labels: Row name → its label in the table (default: the name).
        skipped: Set name → why it has no rows (listed under the table).

    Returns:
        The lines: per set a ``questions`` row (the support) then one row per model or baseline;
        ``-`` where a set asks no question of that type.
    """
    kinds = table_types(table)
    lines = ["| set | model | " + " | ".join(kinds) + f" | {OVERALL} |", "|---|---|" + "---:|" * (len(kinds) + 1)]
    for set_name, rows in table.items():
        support = next(iter(rows.values())).support
        lines.append(f"| {set_name} | *questions* | " + " | ".join(str(support.get(kind, "-")) for kind in kinds)
                     + f" | {sum(support.values())} |")
        for row, scores in rows.items():
            cells = [f"{100 * scores.per_type[kind]:.1f}" if kind in scores.per_type else "-" for kind in kinds]
            lines.append(f"| {set_name} | {(labels or {}).get(row, row)} | " + " | ".join(cells)
                         + f" | {100 * scores.overall:.1f} |")
    lines += [f"- set `{name}` skipped: {reason}" for name, reason in (skipped or {}).items()]
    return lines


def format_markdown(kind: str, scores: dict[str, VqaScores], context: dict[str, str],
                    table: dict[str, dict[str, VqaScores]] | None = None, labels: dict[str, str] | None = None,
                    skipped: dict[str, str] | None = None) -> str:
    """The step's Markdown report: what was asked of which model, accuracy per question type, every model × set.

    Args:
        kind: The configured model's name (the first entry of ``scores``).
        scores: ``{kind, "majority", "random"}`` of the candidate on the run set.
        context: Lines of the header (``dataset``, ``clip`` ...), shown as a bullet list.
        table: ``{set: {row: scores}}`` for the models × sets table (:func:`format_table`); none: no table.
        labels: Row labels of that table.
        skipped: Sets not scored, with the reason.

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
    if table:
        lines += ["", f"## Every model on every set ({kind}, %)", "",
                  f"`{kind}` fitted on each CLIP for each set (on the set's train split), scored on the set's "
                  "test split beside the majority answer and the expected accuracy of a random answer.", ""]
        lines += format_table(table, labels, skipped)
    return "\n".join(lines) + "\n"


def log_vqa(tracking_uri: str, run_id: str, outcome: VqaOutcome) -> None:
    """Log the step's metrics, its model tag, skipped sets (``vqa_skipped.<set>`` tags) and its files (``vqa/``).

    Args:
        tracking_uri: The tracking store.
        run_id: The run to log into (the CLIP's training run).
        outcome: What :func:`run_vqa` returned.
    """
    from mlflow.entities import Metric, RunTag

    client = tracking_client(resolve_tracking_uri(tracking_uri))
    stamp = int(time.time() * 1000)
    tags = [RunTag(MODEL_TAG, outcome.kind)]
    # MLflow refuses tag values past its length limit (5000 characters on older stores)
    tags += [RunTag(f"{SKIPPED_TAG}.{name}", reason[:5000]) for name, reason in outcome.skipped.items()]
    client.log_batch(run_id, metrics=[Metric(key, float(value), stamp, 0) for key, value in outcome.metrics.items()],
                     tags=tags)
    for name in (REPORT_NAME, LLAVA_TRAIN, LLAVA_TEST, PREDICTIONS_NAME, METRICS_NAME):
        client.log_artifact(run_id, str(outcome.out_dir / name), artifact_path=ARTIFACT_DIR)
    if outcome.model_dir.is_dir():
        client.log_artifacts(run_id, str(outcome.model_dir), artifact_path=f"{ARTIFACT_DIR}/{MODEL_DIR}")


def _save(model: VqaModel | None, out_dir: Path, clip_dir: Path) -> None:
    if isinstance(model, (ClipLinearHead, ClipAnswerRanker)):
        save_vqa_model(model, out_dir, clip_dir)
    elif callable(getattr(model, "save", None)):
        model.save(out_dir)


def vqa_sets(cfg: RunConfig, dataset_dir: Path, data_root: str | Path | None = None
             ) -> tuple[list[VqaSet], dict[str, str]]:
    """The run dataset and each eval set ``cfg.vqa.sets`` names, with their questions.

    Args:
        cfg: The run config (``vqa`` and ``evaluate`` sections).
        dataset_dir: The run dataset.
        data_root: Where relative eval datasets live (default ``cfg.data.root``).

    Returns:
        ``(sets, skipped)``: the run set first; an optional eval set whose source is absent is
        skipped with its reason.

    Raises:
        DataError: A split yields no questions, the test split asks a question the train split
            never does, or an eval set's data is missing or not its pinned version.
    """
    from rsvl.evaluate.pinned_data import pinned_dataset

    settings = cfg.vqa
    wanted = [(RUN_SET, dataset_dir, settings.test_split)]
    skipped: dict[str, str] = {}
    by_name = {eval_set.name: eval_set for eval_set in cfg.evaluate.sets}
    for name in settings.sets:
        resolved = pinned_dataset(by_name[name], data_root if data_root is not None else cfg.data.root,
                                  cfg.evaluate.cache_dir)
        if isinstance(resolved, str):
            skipped[name] = resolved
        else:
            wanted.append((name, resolved[0], by_name[name].split))
    sets = []
    for name, place, test_split in wanted:
        train, test = split_questions(place, settings.train_split), split_questions(place, test_split)
        _check_answerable(train, test, place, (settings.train_split, test_split))
        sets.append(VqaSet(name, Path(place).resolve(), train, test, (settings.train_split, test_split)))
    return sets, skipped


def row_labels(cfg: RunConfig, names: Sequence[str]) -> dict[str, str]:
    """What each row of the models × sets table is: the candidate's stages, an ablation's, the untuned base."""
    from rsvl.config import UNTUNED

    stages = [stage.name for stage in cfg.train.stages]
    labels = {CANDIDATE: f"{CANDIDATE} (progressive: {' → '.join(stages)})" if len(stages) > 1 else CANDIDATE,
              UNTUNED: f"{UNTUNED} (untuned start model)", "majority": "majority answer",
              "random": "random answer (expected)"}
    labels.update({ablation.name: f"{ablation.name} ({' → '.join(ablation.stages)})"
                   for ablation in cfg.train.ablations})
    return {name: labels.get(name, name) for name in names}


def run_vqa(cfg: RunConfig, model_dir: str | Path, dataset_dir: str | Path, out_dir: str | Path,
            mlflow_run_id: str | None = None, *, device: str | None = None,
            compare: Mapping[str, Any] | None = None, compare_base: bool = False,
            data_root: str | Path | None = None) -> VqaOutcome:
    """Generate the questions, build ``cfg.vqa.model`` on every CLIP for every set, score it beside the baselines.

    Args:
        cfg: The run config; its ``vqa`` section says which model, which splits and which eval sets.
        model_dir: The trained CLIP (a :func:`rsvl.models.save_model` folder).
        dataset_dir: The run dataset (canonical format, with boxes and optionally a sea/land mask).
        out_dir: Receives the files listed in the module docstring.
        mlflow_run_id: Log metrics and files into this run (the CLIP's training run).
        device: Where the CLIPs run (default: the GPU when there is one).
        compare: Comparison CLIPs, name → saved folder or built tuple (the evaluate step's:
            :func:`rsvl.steps.evaluation.comparison_models`).
        compare_base: Also the untuned ``base`` CLIP (:func:`rsvl.steps.evaluation.base_model`).
        data_root: Where relative eval datasets live (default ``cfg.data.root``).

    Returns:
        The :class:`VqaOutcome`.

    Raises:
        ConfigError: The config has no ``vqa`` section, or a comparison name cannot prefix metric keys.
        DataError: A split yields no questions, the test split asks questions the train split never
            does, or an eval set's data is missing or not its pinned version.
        ModelError: A CLIP cannot be loaded.
    """
    from rsvl.steps.evaluation import comparisons

    if cfg.vqa is None:
        raise ConfigError(f"config of paper {cfg.paper!r} (profile {cfg.profile!r}) has no vqa section; "
                          "add `vqa: {model: linear_head}` to run the vqa step")
    settings, out = cfg.vqa, Path(out_dir).resolve()
    clip_dir = Path(model_dir).resolve()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sets, skipped = vqa_sets(cfg, Path(dataset_dir).resolve(), data_root)
    run_set = sets[0]
    write_llava(run_set.train, out / LLAVA_TRAIN)
    write_llava(run_set.test, out / LLAVA_TEST)

    clips: dict[str, Any] = {CANDIDATE: clip_dir, **comparisons(cfg, clip_dir, compare, compare_base)}
    table: dict[str, dict[str, VqaScores]] = {vqa_set.name: {} for vqa_set in sets}
    saved_model: VqaModel | None = None
    for name, clip in clips.items():
        built = load_model(clip) if isinstance(clip, (str, Path)) else clip
        built[0].to(device)
        for vqa_set in sets:
            model = BUILDERS[settings.model](built, vqa_set.train, vqa_set.dataset, device)
            table[vqa_set.name][name] = evaluate_vqa(model, vqa_set.test, vqa_set.dataset)
            if name == CANDIDATE and vqa_set is run_set:
                saved_model = model
        del built
    for vqa_set in sets:
        table[vqa_set.name]["majority"] = evaluate_vqa(MajorityAnswer(vqa_set.train), vqa_set.test, vqa_set.dataset)
        table[vqa_set.name]["random"] = random_baseline(vqa_set.test, answer_vocabulary(vqa_set.train))
    _save(saved_model, out / MODEL_DIR, clip_dir)

    run_rows = table[RUN_SET]
    scores = {settings.model: run_rows[CANDIDATE], **{name: run_rows[name] for name in BASELINES}}
    metrics = vqa_metrics(scores[settings.model], {name: scores[name] for name in BASELINES}, table)
    clip_sha256 = clip_reference(clip_dir).weights_sha256
    context = {
        "dataset": f"`{run_set.dataset}`",
        "fitted on": f"split `{run_set.splits[0]}` ({len(run_set.train)} images, "
                     f"{sum(len(r['conversations']) // 2 for r in run_set.train)} questions)",
        "scored on": f"split `{run_set.splits[1]}` ({len(run_set.test)} images)",
        "CLIP": f"`{clip_dir}` (weights sha256 `{clip_sha256}`)",
    }
    for vqa_set in sets[1:]:
        context[f"set `{vqa_set.name}`"] = (f"`{vqa_set.dataset}`, fitted on split `{vqa_set.splits[0]}` "
                                            f"({len(vqa_set.train)} images), scored on split `{vqa_set.splits[1]}` "
                                            f"({len(vqa_set.test)} images)")
    labels = row_labels(cfg, list(run_rows))
    (out / REPORT_NAME).write_text(format_markdown(settings.model, scores, context, table, labels, skipped),
                                   encoding="utf-8")
    predictions = [{"id": record_id, "type": question_type(question), "question": question, "truth": truth,
                    "answer": answer}
                   for record_id, question, truth, answer in scores[settings.model].predictions]
    (out / PREDICTIONS_NAME).write_text(json.dumps(predictions, indent=1) + "\n", encoding="utf-8")
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    outcome = VqaOutcome(kind=settings.model, scores=scores, metrics=metrics, out_dir=out,
                         clip_weights_sha256=clip_sha256, table=table, skipped=skipped)
    if mlflow_run_id:
        log_vqa(cfg.mlflow.tracking_uri, mlflow_run_id, outcome)
    return outcome
