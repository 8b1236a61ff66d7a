"""Scores an evaluation recorded, so the gate can reuse them instead of scoring the same model again.

The evaluate step scores the candidate on the pinned eval sets; the gate then needs the same
numbers for the same model on the same data. Scoring again costs a fresh interpreter with torch
and a full pass over every set, for numbers that cannot differ. So the evaluate step tags its
MLflow run with a fingerprint of everything the scores depend on, and the gate takes the recorded
scores back when the fingerprint it computes for a registry version (from the downloaded files,
never from a tag the version carries) is the same. Otherwise it scores the model itself.

The fingerprint is the SHA-256 of: the model's weights and saved config (file hashes), every eval
set's data version and every skipped set, the run config's ``evaluate`` section, the source of
the ``rsvl`` package (:func:`rsvl.evaluate.pinned_data.code_version`) and the versions of torch,
open_clip and numpy. Anything else changed (new data, an edited metric, another torch) means no
reuse. The metrics come from the ``evaluation.json`` artifact the same step logged next to the tag.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from rsvl.config import RunConfig
from rsvl.data.store import sha256_file
from rsvl.evaluate.pinned_data import EvalData, code_version
from rsvl.models.files import CONFIG_NAME, WEIGHTS_NAME

FINGERPRINT_TAG = "rsvl.eval.fingerprint"
"""Run tag: the fingerprint of the evaluation logged into that run."""
DETAILS_ARTIFACT = "evaluation/evaluation.json"
"""Where :func:`rsvl.steps.evaluation.log_evaluation` puts the evaluation's details (``metrics`` inside)."""
NUMERIC_PACKAGES = ("torch", "open_clip_torch", "numpy")


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def score_fingerprint(cfg: RunConfig, model_dir: str | Path, data: EvalData) -> str:
    """The fingerprint of scoring the model in ``model_dir`` on ``data`` under ``cfg.evaluate``.

    Args:
        cfg: The run config (its ``evaluate`` section is part of the fingerprint).
        model_dir: A saved rsvl model folder (weights and config are hashed).
        data: The prepared eval sets (their versions and the skipped sets).

    Returns:
        A hex SHA-256.
    """
    directory = Path(model_dir)
    parts: dict[str, Any] = {
        "weights": sha256_file(directory / WEIGHTS_NAME),
        "config": sha256_file(directory / CONFIG_NAME),
        "versions": dict(sorted(data.versions.items())),
        "skipped": sorted(data.skipped),
        "evaluate": cfg.evaluate.model_dump(mode="json"),
        "code": code_version("rsvl"),
        "packages": {name: _package_version(name) for name in NUMERIC_PACKAGES},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def recorded_metrics(client: Any, run_id: str | None, fingerprint: str) -> dict[str, float] | None:
    """The metrics an earlier evaluation logged into ``run_id``, when its fingerprint is ``fingerprint``.

    Args:
        client: An ``mlflow.MlflowClient`` of the store holding the run.
        run_id: The run a registry version came from (``None``: nothing recorded).
        fingerprint: What :func:`score_fingerprint` gives for the model and data now.

    Returns:
        ``<eval set>.<metric>`` → value as recorded, or ``None`` when the run holds no evaluation
        with that fingerprint (never evaluated, evaluated on other data, by other code, or its
        details artifact is gone).
    """
    if not run_id:
        return None
    if client.get_run(run_id).data.tags.get(FINGERPRINT_TAG) != fingerprint:
        return None
    import mlflow

    with tempfile.TemporaryDirectory(prefix="rsvl-scores-") as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=DETAILS_ARTIFACT,
                                                       dst_path=scratch, tracking_uri=client.tracking_uri)
        except Exception:  # noqa: BLE001 - a missing artifact only means: score again
            return None
        metrics = json.loads(Path(path).read_text(encoding="utf-8")).get("metrics")
    if not isinstance(metrics, dict):
        return None
    return {str(key): float(value) for key, value in metrics.items()}
