"""Where MLflow keeps things: tracking URIs made portable, experiments created with their artifact root.

Shared by training, evaluation, the registry and the gate, so a local ``sqlite:///`` store always
keeps its artifacts in ``artifacts/`` beside the database (not in whatever directory a step ran
in), and a relative database path means the same file to every process that reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SQLITE_PREFIX = "sqlite:///"

# MLflow draws a progress bar per artifact upload/download: thousands of lines in step and CI logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///`` URI absolute (workers and consumers may run elsewhere); create its folder."""
    if not uri.startswith(SQLITE_PREFIX):
        return uri
    path = Path(uri[len(SQLITE_PREFIX):]).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{path}"


def experiment_id(client: Any, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created when missing (sqlite stores: artifacts beside the database).

    Args:
        client: An ``mlflow.MlflowClient`` on ``tracking_uri``.
        tracking_uri: The resolved tracking URI.
        name: Experiment name.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith(SQLITE_PREFIX):
        location = (Path(tracking_uri[len(SQLITE_PREFIX):]).parent / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)
