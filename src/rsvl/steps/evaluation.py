"""The ``evaluate`` step: score a model on the run's pinned eval sets and record it in MLflow.

Comparison models (the train step's ablations, such as SAR-TEXT's ``sar_only``, and with
``evaluate.compare_base`` the untuned ``base`` model) are scored by the same code on the same
prepared sets; their metrics are keyed ``<name>.<eval set>.<metric>`` (``sar_only.sar_test.mR``,
``base.sar_test.CIDEr``) and logged beside the candidate's ``<eval set>.<metric>``, and the report
opens with a table of every model's metrics and the differences. The gate scores no comparisons:
it calls :func:`run_evaluation` without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rsvl.config import RunConfig
from rsvl.errors import ConfigError, ModelError
from rsvl.evaluate.config import NAME_PATTERN
from rsvl.evaluate.runner import EvalResult, ModelInput, evaluate_model
from rsvl.mlflow_store import resolve_tracking_uri
from rsvl.steps.eval_data import EvalData, prepare_eval_data

EVAL_DATA_TAG = "eval_data_version"
ARTIFACT_DIR = "evaluation"
BASE = "base"
RESERVED_NAMES = ("candidate", "champion")
"""Metric prefixes of the gate's run; a comparison model named so would be mistaken for one of its models."""
COMPARE_DIR = "compare.{name}"
"""A comparison model's report folder inside the candidate's (the dot keeps it apart from eval-set folders)."""


@dataclass(frozen=True)
class Evaluation:
    """An evaluation and the data it ran on.

    Attributes:
        result: Metrics, unavailable metrics with reasons, pictures and reports.
        data: The eval sets scored, their data versions and the skipped ones with reasons.
        compared: Comparison model name → its result on the same sets (empty without comparisons).
    """

    result: EvalResult
    data: EvalData
    compared: dict[str, EvalResult] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """``<eval set>.<metric>`` → value."""
        return self.result.metrics

    @property
    def comparison_metrics(self) -> dict[str, float]:
        """``<comparison model>.<eval set>.<metric>`` → value."""
        return {f"{name}.{key}": value
                for name, result in self.compared.items() for key, value in result.metrics.items()}


def comparison_models(train_out_dir: str | Path) -> dict[str, Path]:
    """The ablation models a train step saved, to score beside its model: ``ablations/<name>/model``.

    Args:
        train_out_dir: The train step's output folder (``model/`` and ``ablations/`` inside).

    Returns:
        Ablation name → its saved model folder, by name; empty when the run had no ablations.

    Raises:
        ModelError: An ablation folder holds no saved model (an interrupted train step).
    """
    from rsvl.models.io import CONFIG_NAME
    from rsvl.train.checkpoint import ABLATIONS_DIR, MODEL_DIR

    root = Path(train_out_dir) / ABLATIONS_DIR
    if not root.is_dir():
        return {}
    found = {}
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        model = folder / MODEL_DIR
        if not (model / CONFIG_NAME).is_file():
            raise ModelError(f"ablation {folder.name!r}: {model} holds no saved model ({CONFIG_NAME} missing)")
        found[folder.name] = model
    return found


def base_model(cfg: RunConfig) -> Any:
    """The untuned model of ``cfg.model``: the weights fine-tuning starts from.

    Torch is seeded with ``cfg.train.seed`` first, as training does before it builds the model, so
    a model without pretrained weights (``rsvl-tiny-coca`` locally) is the same random init the
    candidate was trained from.

    Returns:
        The 4-tuple of :func:`rsvl.models.build_model` (three input bands; single-band SAR
        chips reach it with the band repeated).
    """
    import torch

    from rsvl.models import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model.name, cfg.model.pretrained, image_size=cfg.model.image_size)


def _comparisons(cfg: RunConfig, compare: Mapping[str, ModelInput] | None, compare_base: bool) -> dict[str, Any]:
    models: dict[str, Any] = dict(compare or {})
    sets = {eval_set.name for eval_set in cfg.evaluate.sets}
    for name in models:
        if not re.fullmatch(NAME_PATTERN, name) or name in RESERVED_NAMES or name in sets:
            raise ConfigError(f"comparison model name {name!r} prefixes metric keys: use letters, digits, '_' and "
                              f"'-', and neither {list(RESERVED_NAMES)} nor an eval set name {sorted(sets)}")
    if compare_base:
        if BASE in models:
            raise ConfigError(f"comparison model {BASE!r} is given and compare_base adds another {BASE!r}; rename it")
        models[BASE] = base_model(cfg)
    return models


def log_evaluation(tracking_uri: str, run_id: str, evaluation: Evaluation, prefix: str = "",
                   artifact_dir: str = ARTIFACT_DIR) -> None:
    """Log an evaluation into an MLflow run: metrics (optionally prefixed), data versions, reports, pictures.

    Comparison models' metrics go in beside the candidate's, as ``<name>.<eval set>.<metric>``.

    Args:
        tracking_uri: The tracking store.
        run_id: The run to log into.
        evaluation: What :func:`run_evaluation` returned.
        prefix: Put before every metric key (the gate logs ``candidate.`` and ``champion.``).
        artifact_dir: Artifact folder for the report, the details JSON and the pictures.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    values = {**evaluation.metrics, **evaluation.comparison_metrics}
    metrics = [Metric(f"{prefix}{key}", float(value), 0, 0) for key, value in values.items()]
    tags = [RunTag(f"{EVAL_DATA_TAG}.{name}", version) for name, version in evaluation.data.versions.items()]
    tags += [RunTag(f"eval_skipped.{name}", reason[:5000]) for name, reason in evaluation.data.skipped.items()]
    tags += [RunTag(EVAL_DATA_TAG, evaluation.data.version()[:5000])]
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start:start + 500])
    client.log_batch(run_id, tags=tags)
    client.log_artifacts(run_id, str(evaluation.result.report_md.parent), artifact_path=artifact_dir)


def run_evaluation(
    cfg: RunConfig,
    model: Any,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    mlflow_run_id: str | None = None,
    title: str | None = None,
    eval_data: EvalData | None = None,
    compare: Mapping[str, ModelInput] | None = None,
    compare_base: bool = False,
) -> Evaluation:
    """Score ``model`` on ``cfg.evaluate.sets`` and, given a run id, log everything into that MLflow run.

    Args:
        cfg: The run config (eval sets, cache, Java metrics switch, tracking store).
        model: A saved model folder, or the tuple :func:`rsvl.models.build_model` returns.
        out_dir: Receives ``report.md``, ``report.html``, ``evaluation.json`` and the pictures;
            each comparison model's own report goes to ``compare.<name>/`` inside it.
        data_root: Where relative eval datasets live (default ``cfg.data.root``).
        mlflow_run_id: Log metrics, data versions and the report folder into this run.
        title: Report title.
        eval_data: Eval sets already prepared (the gate scores two models on the same ones).
        compare: Other models to score on the same sets, name → saved model folder (or built
            tuple); e.g. :func:`comparison_models` of the train step's output.
        compare_base: Also score :func:`base_model` as ``base`` (the evaluate step passes
            ``cfg.evaluate.compare_base``; the gate never does).

    Returns:
        The :class:`Evaluation`, comparison results in ``compared``.

    Raises:
        DataError: Eval data missing, modified or not the pinned version (see :mod:`eval_data`).
        ModelError: A model cannot be loaded or cannot do a task asked of it.
        ConfigError: A comparison name that cannot prefix metric keys.
    """
    data = eval_data or prepare_eval_data(cfg, data_root)
    others = _comparisons(cfg, compare, compare_base)
    heading = title or f"{cfg.paper} evaluation"
    out = Path(out_dir)
    settings = dict(data_root=data_root or cfg.data.root, batch_size=cfg.evaluate.batch_size,
                    java_metrics=cfg.evaluate.java_metrics)
    compared = {name: evaluate_model(other, data.sets, out / COMPARE_DIR.format(name=name),
                                     title=f"{heading}: {name} (comparison)", **settings)
                for name, other in others.items()}
    result = evaluate_model(model, data.sets, out, title=heading,
                            compared={name: scored.metrics for name, scored in compared.items()}, **settings)
    evaluation = Evaluation(result, data, compared)
    if mlflow_run_id is not None:
        log_evaluation(cfg.mlflow.tracking_uri, mlflow_run_id, evaluation)
    return evaluation
