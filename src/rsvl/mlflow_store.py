"""Where MLflow keeps things, and what happens when it is locked or down.

Shared by training, evaluation, the registry and the gate, so a local ``sqlite:///`` store always
keeps its artifacts in ``artifacts/`` beside the database (not in whatever directory a step ran
in), and a relative database path means the same file to every process that reads it.

The one retry policy for the tracking store (``docs/reliability.md``):

- an HTTP server that refuses, times out or answers 429/5xx is retried by MLflow's own session
  with exponential backoff, bounded by :data:`HTTP_RETRY_ENV` (~30 s in all instead of MLflow's
  ~4 minutes per call), so a server that restarts for a few seconds is ridden out;
- a locked sqlite store is waited out by sqlite's busy handler, which MLflow sets to
  :data:`SQLITE_BUSY_SECONDS` (it retries with growing sleeps);
- past either, :func:`tracking_client`'s calls raise :class:`~rsvl.errors.TrackingStoreUnavailable`
  naming the store, what was tried and what to check, instead of MLflow's SQL or urllib3 dump.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rsvl.errors import TrackingStoreUnavailable

SQLITE_PREFIX = "sqlite:///"
SQLITE_BUSY_SECONDS = 20  # MLflow's `PRAGMA busy_timeout = 20000` on every sqlite session

# MLflow's HTTP retries (urllib3): sleeps of 0, 2, 4, 8, 16 s (+ up to 1 s jitter each), 60 s a request
HTTP_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}

# MLflow draws a progress bar per artifact upload/download: thousands of lines in step and CI logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
for _name, _value in HTTP_RETRY_ENV.items():
    os.environ.setdefault(_name, _value)  # what a user or the cluster's manifests set wins

# what urllib3/requests say of a server that is not there, most specific first
_UNREACHABLE = [re.compile(p) for p in (r"Connection refused", r"Name or service not known", r"Read timed out",
                                        r"Connection aborted", r"too many \d+ error responses",
                                        r"Failed to establish a new connection", r"Max retries exceeded")]


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


def http_backoff_seconds(environ: dict[str, str] | None = None) -> float:
    """The seconds MLflow's HTTP retries sleep in all before giving up on an unreachable server (jitter excluded).

    urllib3 sleeps ``factor * 2 ** (n - 1)`` before the n-th retry of a run of errors, nothing before the first.
    """
    retries = int(_http_setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES", environ))
    factor = float(_http_setting("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", environ))
    return sum(factor * 2 ** (n - 1) for n in range(2, retries + 1))


def _http_setting(name: str, environ: dict[str, str] | None = None) -> str:
    """An HTTP retry setting as MLflow reads it: the environment's, else this module's default."""
    return (os.environ if environ is None else environ).get(name, HTTP_RETRY_ENV[name])


def store_unavailable(err: BaseException, tracking_uri: str) -> TrackingStoreUnavailable | None:
    """The clear error for ``err`` when it says the store is locked or unreachable; ``None`` for any other error.

    Args:
        err: What an MLflow call raised.
        tracking_uri: The store it called.
    """
    if isinstance(err, TrackingStoreUnavailable):
        return None
    text = str(err)
    if "database is locked" in text:
        path = tracking_uri[len(SQLITE_PREFIX):] if tracking_uri.startswith(SQLITE_PREFIX) else tracking_uri
        return TrackingStoreUnavailable(
            f"MLflow store {path} stayed locked past sqlite's {SQLITE_BUSY_SECONDS} s wait: another process holds a "
            "write lock on it (a second run on the same store, which `make pipeline` refuses, or an open `sqlite3` "
            "or `mlflow ui` session writing to it); let it finish or close it, then run again")
    found = next((m.group(0) for m in (p.search(text) for p in _UNREACHABLE) if m), None)
    if found or type(err).__module__.startswith(("requests.", "urllib3.")):
        cause = found or type(err).__name__
        retries = _http_setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        return TrackingStoreUnavailable(
            f"MLflow tracking server {tracking_uri} did not answer ({cause}) after {retries} retries with backoff "
            f"(~{http_backoff_seconds():.0f} s; MLFLOW_HTTP_REQUEST_MAX_RETRIES/_BACKOFF_FACTOR/_TIMEOUT set them): "
            "check that the server is up (on the cluster: kubectl -n rsvl get pods -l app.kubernetes.io/name=mlflow) and that "
            "mlflow.tracking_uri or MLFLOW_TRACKING_URI names it")
    return None


@contextmanager
def store_errors(tracking_uri: str) -> Iterator[None]:
    """Raise :func:`store_unavailable`'s clear error in place of a locked or unreachable store's raw one."""
    try:
        yield
    except Exception as err:
        clear = store_unavailable(err, tracking_uri)
        if clear is None:
            raise
        raise clear from err


@functools.cache
def _client_class() -> type:
    from mlflow import MlflowClient  # imported here: mlflow costs seconds, and most importers never call it

    class TrackingClient(MlflowClient):
        """An ``MlflowClient`` whose public calls go through :func:`store_errors`."""

        def __getattribute__(self, name: str) -> Any:
            attr = super().__getattribute__(name)
            if name.startswith("_") or not callable(attr):
                return attr
            uri = super().__getattribute__("_tracking_client").tracking_uri

            @functools.wraps(attr)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                with store_errors(uri):
                    return attr(*args, **kwargs)

            return guarded

    return TrackingClient


def tracking_client(tracking_uri: str, registry_uri: str | None = None) -> Any:
    """An ``mlflow.MlflowClient`` whose calls fail with :class:`~rsvl.errors.TrackingStoreUnavailable` (see the module doc).

    Args:
        tracking_uri: The resolved tracking URI.
        registry_uri: The registry's URI (default: the tracking URI's).

    Returns:
        The client (an ``MlflowClient`` subclass).
    """
    return _client_class()(tracking_uri=tracking_uri, registry_uri=registry_uri)
