"""MLflow bookkeeping of a fit: one run per run name, provenance tags, metrics from rank 0.

The driver opens the run (or reopens it when a run of the same name is re-launched) with the
flattened resolved config as params and the provenance as tags: ``data_version`` (DVC md5 tag
of the dataset, or ``untracked``), ``git_commit`` (with ``git_dirty``), ``rsvl.run_name``,
``rsvl.config_digest``; a new run also gets the dataset's row counts and its funnel's counts
(:func:`log_dataset_counts`). Rank 0 logs metrics into it by run id (:class:`MetricLogger`); the driver
logs the final model and config as artifacts and closes it.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from rsvl.config import RunConfig
from rsvl.data.versioning import data_version
from rsvl.errors import DataError
from rsvl.mlflow_store import experiment_id, link_artifacts, resolve_tracking_uri, tracking_client

UNTRACKED = "untracked"
UNKNOWN = "unknown"
RUN_NAME_TAG = "rsvl.run_name"
DIGEST_TAG = "rsvl.config_digest"
GIT_COMMIT_ENV = "RSVL_GIT_COMMIT"
PARAM_BATCH = 100


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested mapping to ``{"train.lr": "5e-05", ...}`` (values as text, ``None`` as ``null``)."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = "null" if value is None else str(value)
    return flat


def git_commit(path: str | Path | None = None) -> tuple[str, bool]:
    """Return ``(commit, dirty)`` of the checkout holding ``path`` (default: this package).

    Outside a git checkout the commit is ``$RSVL_GIT_COMMIT`` (set in container images) or
    ``unknown``, and ``dirty`` is False.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(GIT_COMMIT_ENV, UNKNOWN), False
    return commit, bool(status.strip())


def data_version_tag(dataset_dir: str | Path) -> str:
    """The DVC data version tag of a dataset directory, or ``untracked`` when DVC does not cover it."""
    try:
        return data_version(dataset_dir).tag()
    except DataError:
        return UNTRACKED


def open_run(tracking_uri: str, cfg: RunConfig, run_name: str, tags: Mapping[str, str]) -> tuple[str, bool]:
    """Create the MLflow run of ``run_name``, or reopen it when it exists (a re-launch).

    Args:
        tracking_uri: Resolved tracking URI.
        cfg: The resolved config; logged flattened as params on creation.
        run_name: The unique run name.
        tags: Provenance tags, set on creation and on reopening.

    Returns:
        ``(run_id, reopened)``.
    """
    from mlflow.entities import Param, RunTag

    client = tracking_client(tracking_uri)
    experiment = experiment_id(client, tracking_uri, cfg.mlflow.experiment)
    found = client.search_runs([experiment], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'", max_results=1)
    all_tags = {**tags, RUN_NAME_TAG: run_name, DIGEST_TAG: cfg.digest()}
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        return run_id, True
    run = client.create_run(experiment, run_name=run_name, tags=all_tags)
    params = [Param(k, v) for k, v in flatten(cfg.model_dump(mode="json")).items()]
    for start in range(0, len(params), PARAM_BATCH):
        client.log_batch(run.info.run_id, params=params[start:start + PARAM_BATCH])
    return run.info.run_id, False


def close_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Set the final status of a run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    tracking_client(tracking_uri).set_terminated(run_id, status=status)


def log_outputs(
    tracking_uri: str, run_id: str, model_dir: Path, config_file: Path, metrics: Mapping[str, float]
) -> None:
    """Log the final model folder (artifact ``model/``), the config file and driver-side metrics."""
    client = tracking_client(tracking_uri)
    if not link_artifacts(client.get_run(run_id).info.artifact_uri, model_dir, "model"):
        client.log_artifacts(run_id, str(model_dir), artifact_path="model")
    client.log_artifact(run_id, str(config_file))
    MetricLogger(tracking_uri, run_id).log(metrics, step=0)


class MetricLogger:
    """Logs metric dicts to one MLflow run; does nothing without a run id.

    Args:
        tracking_uri: Resolved tracking URI.
        run_id: The run, or ``None`` to log nothing.
    """

    def __init__(self, tracking_uri: str | None, run_id: str | None) -> None:
        self.run_id = run_id
        self.client = None
        if run_id is not None:
            self.client = tracking_client(tracking_uri)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` in one batch."""
        if self.client is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write ``text`` as the run's artifact ``artifact_file``."""
        if self.client is not None:
            self.client.log_text(self.run_id, text, artifact_file)


def log_dataset_counts(tracking_uri: str, run_id: str, dataset_dir: str | Path) -> None:
    """Log what the trained dataset kept and set aside, and the funnel that made it, into a run.

    Params ``data.rows_kept`` and ``data.rows_quarantined`` (:func:`rsvl.data.filtering.row_counts`);
    metrics ``funnel.*`` (step 0) from the ``funnel`` entry of its ``dataset.json``
    (:func:`rsvl.data.funnel.funnel_metrics`: per-stage counts, and precision and recall against a
    pool's ground truth), none when no funnel made the dataset.

    Args:
        tracking_uri: Resolved tracking URI.
        run_id: The run (new: params cannot change once logged).
        dataset_dir: The dataset the run trains on.
    """
    from mlflow.entities import Param

    from rsvl.data.filtering import row_counts
    from rsvl.data.funnel import funnel_metrics

    counts = row_counts(dataset_dir).params()
    tracking_client(tracking_uri).log_batch(run_id, params=[Param(k, v) for k, v in counts.items()])
    MetricLogger(tracking_uri, run_id).log(funnel_metrics(dataset_dir), step=0)
