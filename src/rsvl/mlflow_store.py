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


def link_artifacts(artifact_uri: str, local_dir: str | Path, artifact_path: str | None = None) -> bool:
    """Put ``local_dir``'s files under a *local* artifact location by hard links, as ``log_artifacts`` would copy them.

    MLflow's local artifact repository copies files into a folder and records nothing else, so
    linking them there is the same result without writing the bytes again (:mod:`rsvl.file_links`).

    Args:
        artifact_uri: A run's ``artifact_uri`` or a logged model's ``artifact_location``.
        local_dir: The folder to log.
        artifact_path: Sub-folder under the location (``None``: its root).

    Returns:
        True when done; False when the location is not a local folder (the caller logs through MLflow).
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.utils.file_utils import local_file_uri_to_path

    from rsvl.file_links import link_tree

    if not isinstance(get_artifact_repository(artifact_uri), LocalArtifactRepository):
        return False
    root = Path(local_file_uri_to_path(artifact_uri))
    link_tree(local_dir, root / artifact_path if artifact_path else root)
    return True
