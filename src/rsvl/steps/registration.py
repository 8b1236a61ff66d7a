"""The ``register`` step: the trained model becomes a registry version (alias ``candidate``) with its lineage."""

from __future__ import annotations

from pathlib import Path

from rsvl.config import RunConfig
from rsvl.registry import Lineage, Registration, register_model
from rsvl.steps.eval_data import EvalData, dataset_version
from rsvl.train.tracking import git_commit


def lineage_of(cfg: RunConfig, train_data: str | Path, eval_data: EvalData, pipeline_run_id: str) -> Lineage:
    """Where a model came from: code commit, train and eval data versions, pipeline run, config digest, paper.

    Args:
        cfg: The run config the model was trained with.
        train_data: The training dataset directory.
        eval_data: The eval sets it was scored on.
        pipeline_run_id: The pipeline (or MLflow) run that produced it.
    """
    return Lineage(
        git_commit=git_commit()[0], train_data_md5=dataset_version(train_data), eval_data_md5=eval_data.version(),
        pipeline_run_id=pipeline_run_id, config_hash=cfg.digest(), paper=cfg.paper,
    )


def run_register(
    cfg: RunConfig,
    model_dir: str | Path,
    lineage: Lineage,
    *,
    mlflow_run_id: str | None = None,
) -> Registration:
    """Register ``model_dir`` as ``cfg.registry.model_name`` (reusing an identical version) with alias ``candidate``.

    Args:
        cfg: The run config (registered name, tracking store).
        model_dir: The saved model folder.
        lineage: Its provenance (see :func:`lineage_of`).
        mlflow_run_id: The training run; the logged model is attached to it.

    Returns:
        The :class:`rsvl.registry.Registration`.
    """
    return register_model(model_dir, cfg.registry.model_name, lineage, cfg.mlflow.tracking_uri, run_id=mlflow_run_id)
