"""The ``evaluate`` step: score a model on the run's pinned eval sets and record it in MLflow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvl.config import RunConfig
from rsvl.evaluate.runner import EvalResult, evaluate_model
from rsvl.mlflow_store import resolve_tracking_uri
from rsvl.steps.eval_data import EvalData, prepare_eval_data

EVAL_DATA_TAG = "eval_data_version"
ARTIFACT_DIR = "evaluation"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class Evaluation:
    """An evaluation and the data it ran on.

    Attributes:
        result: Metrics, unavailable metrics with reasons, pictures and reports.
        data: The eval sets scored, their data versions and the skipped ones with reasons.
    """

    result: EvalResult
    data: EvalData

    @property
    def metrics(self) -> dict[str, float]:
        """``<eval set>.<metric>`` → value."""
        return self.result.metrics


def log_evaluation(tracking_uri: str, run_id: str, evaluation: Evaluation, prefix: str = "",
                   artifact_dir: str = ARTIFACT_DIR) -> None:
    """Log an evaluation into an MLflow run: metrics (optionally prefixed), data versions, reports, pictures.

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
    metrics = [Metric(f"{prefix}{key}", float(value), 0, 0) for key, value in evaluation.metrics.items()]
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
) -> Evaluation:
    """Score ``model`` on ``cfg.evaluate.sets`` and, given a run id, log everything into that MLflow run.

    Args:
        cfg: The run config (eval sets, cache, Java metrics switch, tracking store).
        model: A saved model folder, or the tuple :func:`rsvl.models.build_model` returns.
        out_dir: Receives ``report.md``, ``report.html``, ``evaluation.json`` and the pictures.
        data_root: Where relative eval datasets live (default ``cfg.data.root``).
        mlflow_run_id: Log metrics, data versions and the report folder into this run.
        title: Report title.
        eval_data: Eval sets already prepared (the gate scores two models on the same ones).

    Returns:
        The :class:`Evaluation`.

    Raises:
        DataError: Eval data missing, modified or not the pinned version (see :mod:`eval_data`).
        ModelError: The model cannot be loaded or cannot do a task asked of it.
    """
    data = eval_data or prepare_eval_data(cfg, data_root)
    result = evaluate_model(
        model, data.sets, out_dir, data_root=data_root or cfg.data.root, batch_size=cfg.evaluate.batch_size,
        java_metrics=cfg.evaluate.java_metrics, title=title or f"{cfg.paper} evaluation",
    )
    evaluation = Evaluation(result, data)
    if mlflow_run_id is not None:
        log_evaluation(cfg.mlflow.tracking_uri, mlflow_run_id, evaluation)
    return evaluation
