"""The ``register`` step: the trained model becomes a registry version (alias ``candidate``) with its lineage."""

from __future__ import annotations

from pathlib import Path

from rsvl.config import RunConfig
from rsvl.model_registry import Lineage, Registration, register_model
from rsvl.data.versioning import dataset_version
from rsvl.evaluate.pinned_data import EvalData, prepare_eval_data
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
    train_data: str | Path,
    pipeline_run_id: str,
    *,
    mlflow_run_id: str | None = None,
) -> Registration:
    """The whole step: make the eval sets ready, derive the lineage, register the model (alias ``candidate``).

    An identical model (weights, config, data) reuses its version.

    Args:
        cfg: The run config (registered name, tracking store, eval sets).
        model_dir: The saved model folder.
        train_data: The dataset the model was trained on (its version goes into the lineage).
        pipeline_run_id: The pipeline run that produced it (``manual`` from the command line).
        mlflow_run_id: The training run; the logged model is attached to it.

    Returns:
        The :class:`rsvl.model_registry.Registration`.
    """
    lineage = lineage_of(cfg, train_data, prepare_eval_data(cfg), pipeline_run_id)
    return register_model(model_dir, cfg.registry.model_name, lineage, cfg.mlflow.tracking_uri, run_id=mlflow_run_id,
                          description=cfg.registry.description)
