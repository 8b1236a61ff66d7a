"""Register a saved rsvl model as an MLflow pyfunc version, once per identity, as ``candidate``.

:func:`register_model` packages the folder as a models-from-code pyfunc
(:mod:`rsvl.model_registry.pyfunc_model`), checks that it answers its own input example, logs it
as an MLflow logged model and creates a version tagged with lineage, identity and the logged
model's id (``rsvl.logged_model_id``). A version with the same identity is reused as it is. Only
the promotion gate moves ``champion`` (:func:`set_champion`). See ``docs/registry-and-serving.md``.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version as installed_version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

from rsvl.errors import ConfigError, ModelError
from rsvl.fault_points import kill_point
from rsvl.mlflow_store import experiment_id, link_artifacts, resolve_tracking_uri, tracking_client
from rsvl.model_registry.identity import (
    ARCHITECTURE_TAG,
    IDENTITY_TAG,
    WEIGHTS_TAG,
    ModelIdentity,
    model_identity,
    read_rsvl_config,
)
from rsvl.model_registry.lineage import Lineage
from rsvl.models.files import MODEL_DIR_ARTIFACT

CANDIDATE, CHAMPION = "candidate", "champion"
DEFAULT_EXPERIMENT = "rsvl-registry"
LOGGED_MODEL_NAME = "model"
MODEL_TYPE = "rsvl-embedder"
LOGGED_MODEL_TAG = "rsvl.logged_model_id"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SERVING_PACKAGES = (
    "rsvl", "mlflow", "torch", "torchvision", "open_clip_torch", "transformers",
    "safetensors", "pandas", "numpy", "pillow",
)
NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Registration:
    """The outcome of :func:`register_model`.

    Attributes:
        name: Registered model name.
        version: Model version number.
        created: False when an existing version with the same identity was reused.
        uri: ``models:/<name>/<version>``, loadable with ``mlflow.pyfunc.load_model``.
        aliases: Aliases the version holds after registering (always ``candidate``).
        identity: The identity digest stored in the ``rsvl.identity`` tag.
    """

    name: str
    version: int
    created: bool
    uri: str
    aliases: tuple[str, ...]
    identity: str


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client whose model registry is the tracking store itself (``sqlite``, a server, ...)."""
    uri = resolve_tracking_uri(tracking_uri)
    return tracking_client(uri, registry_uri=uri)


def _has_code(err: MlflowException, code: int) -> bool:
    return err.error_code == ErrorCode.Name(code)


DEFAULT_DESCRIPTION = "rsvl embedder (text/image -> L2-normalised embeddings)"


def _ensure_registered_model(client: MlflowClient, name: str, description: str | None) -> None:
    # create and tolerate 'already exists' instead of checking first, which could race
    try:
        client.create_registered_model(name, description=description or DEFAULT_DESCRIPTION)
    except MlflowException as err:
        if not _has_code(err, RESOURCE_ALREADY_EXISTS):
            raise
        if description:  # the config's text is the current one
            client.update_registered_model(name, description=description)


def find_version(client: MlflowClient, name: str, identity: str) -> int | None:
    """The oldest version of ``name`` whose ``rsvl.identity`` tag is ``identity``, if any."""
    found = client.search_model_versions(f"name = '{name}' and tags.`{IDENTITY_TAG}` = '{identity}'")
    versions = sorted(int(v.version) for v in found)
    return versions[0] if versions else None


def _pip_requirements() -> list[str]:
    requirements = []
    for package in SERVING_PACKAGES:
        try:
            requirements.append(f"{package}=={installed_version(package)}")
        # a package not installed here is simply not pinned
        except PackageNotFoundError:
            continue
    return requirements


def _check_answers_example(local_dir: Path, example: pd.DataFrame, expected: list[str]) -> None:
    """Load the packaged pyfunc as a consumer would and make it answer its input example.

    Every row of the example has every input (one row per image band count, see
    :func:`rsvl.model_registry.embedder.input_example`), so every embedding cell must be a unit vector.
    """
    from rsvl.model_registry import embedder  # torch and open_clip: only the steps that package a model pay for them

    try:
        answer = mlflow.pyfunc.load_model(str(local_dir)).predict(example)
    except Exception as err:  # noqa: BLE001 - any failure means the package is broken
        raise ModelError(f"the packaged pyfunc cannot answer its input example: {err}") from err
    if list(answer.columns) != expected:
        raise ModelError(f"the packaged pyfunc answered columns {list(answer.columns)}, its signature says {expected}")
    if len(answer) != len(example):
        raise ModelError(f"the packaged pyfunc answered {len(answer)} rows for an input example of {len(example)}")
    columns = [c for c in (embedder.TEXT_EMBEDDING, embedder.IMAGE_EMBEDDING, embedder.LOCATION_EMBEDDING)
               if c in expected]
    for column in columns:
        for row, vector in enumerate(answer[column].tolist()):
            if vector is None:
                raise ModelError(f"the packaged pyfunc gave no {column} for row {row} of its input example")
            norm = float(np.linalg.norm(vector))
            if abs(norm - 1.0) > NORM_TOLERANCE:
                raise ModelError(f"the packaged pyfunc's {column} of example row {row} has norm {norm:.4f}, not 1")


def _log_pyfunc(
    client: MlflowClient, model_dir: Path, config: dict, experiment: str, run_id: str | None, identity: ModelIdentity
) -> str:
    """Package ``model_dir`` as a pyfunc, check it, and log it; returns the logged model id."""
    from rsvl.model_registry import embedder  # torch and open_clip: only the steps that package a model pay for them

    in_bands = embedder.served_bands(config["rsvl"])
    location = embedder.serves_locations(config["rsvl"])
    # only CoCa-style configs have a multimodal (text decoder) tower: the model is a captioner
    captioner = "multimodal_cfg" in config["model_cfg"]
    signature = embedder.signature(captioner, location)
    example = embedder.input_example(in_bands, location)
    logged = client.create_logged_model(
        experiment, name=LOGGED_MODEL_NAME, source_run_id=run_id,
        tags={IDENTITY_TAG: identity.digest}, model_type=MODEL_TYPE,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="rsvl-pyfunc-") as tmp:
            local_dir = Path(tmp) / "model"
            mlflow.pyfunc.save_model(
                path=str(local_dir),
                python_model=str(PYFUNC_FILE),
                artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(),
                mlflow_model=Model(
                    artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                    run_id=run_id, model_id=logged.model_id,
                ),
            )
            _check_answers_example(local_dir, example, signature.outputs.input_names())
            if not link_artifacts(logged.artifact_location, local_dir):
                client.log_model_artifacts(logged.model_id, str(local_dir))
        if run_id is not None:
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    # BaseException, so an interrupt also marks the logged model FAILED instead of leaving it pending
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return logged.model_id


def register_model(
    model_dir: str | Path,
    name: str,
    lineage: Lineage,
    tracking_uri: str,
    run_id: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    description: str | None = None,
) -> Registration:
    """Register ``model_dir`` under ``name`` (or reuse its version) and make it the ``candidate``.

    Args:
        model_dir: Folder written by :func:`rsvl.models.save_model`.
        name: Registered model name (letters, digits, ``.``, ``_``, ``-``).
        lineage: Provenance, stored as model version tags.
        tracking_uri: MLflow tracking store, also used as the registry (``sqlite:///...`` made absolute).
        run_id: MLflow run that produced the model (the logged model joins it and its experiment).
        experiment: Experiment holding logged models that have no run.
        description: The registered model's description (how to use it); ``None``: the generic embedder's.

    Returns:
        The :class:`Registration`; ``created`` is False when an identical model's version was reused.

    Raises:
        ConfigError: ``name`` breaks the naming rule.
        ModelError: ``model_dir`` is not an rsvl model folder, or its pyfunc fails its input example.
        mlflow.exceptions.MlflowException: The tracking store or ``run_id`` cannot be reached.
    """
    if not NAME_RULE.match(name):
        raise ConfigError(f"registered model name {name!r} must match {NAME_RULE.pattern}")
    directory = Path(model_dir).resolve()
    config = read_rsvl_config(directory)
    identity = model_identity(directory, lineage)
    uri = resolve_tracking_uri(tracking_uri)
    client = registry_client(uri)
    _ensure_registered_model(client, name, description)
    version = find_version(client, name, identity.digest)
    created = version is None
    if version is None:
        experiment_of_model = client.get_run(run_id).info.experiment_id if run_id else experiment_id(client, uri, experiment)
        model_id = _log_pyfunc(client, directory, config, experiment_of_model, run_id, identity)
        kill_point("register.after_log_model")
        tags = {
            **lineage.tags(),
            IDENTITY_TAG: identity.digest,
            WEIGHTS_TAG: identity.weights_sha256,
            ARCHITECTURE_TAG: identity.architecture,
            LOGGED_MODEL_TAG: model_id,
        }
        source = client.get_logged_model(model_id).artifact_location
        created_version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
        version = int(created_version.version)
        kill_point("register.after_create_version")  # a version is made with its tags in one call, so it is whole
    client.set_registered_model_alias(name, CANDIDATE, str(version))
    aliases = tuple(sorted(client.get_model_version(name, str(version)).aliases))
    return Registration(name, version, created, f"models:/{name}/{version}", aliases, identity.digest)


def set_champion(client: MlflowClient, name: str, version: int | str) -> None:
    """Point the ``champion`` alias of ``name`` at ``version`` (the promotion gate's job only).

    Args:
        client: Client of the registry (see :func:`registry_client`).
        name: Registered model name.
        version: The version that passed the gate.

    Raises:
        ModelError: The version does not exist.
    """
    try:
        client.get_model_version(name, str(version))
    except MlflowException as err:
        if _has_code(err, RESOURCE_DOES_NOT_EXIST):
            raise ModelError(f"registered model {name!r} has no version {version}; cannot make it champion") from err
        raise
    kill_point("promote.before_alias")
    client.set_registered_model_alias(name, CHAMPION, str(version))


def get_champion(name: str, client: MlflowClient | None = None) -> int | None:
    """The version ``champion`` points at, or None when there is none (or no such model yet).

    Args:
        name: Registered model name.
        client: Registry client; default: one on ``MLFLOW_TRACKING_URI``.
    """
    client = client or registry_client(mlflow.get_tracking_uri())
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as err:
        if _has_code(err, RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    return int(aliases[CHAMPION]) if CHAMPION in aliases else None


def download_model_dir(client: MlflowClient, name: str, version: int | str, dst: str | Path) -> Path:
    """Fetch the rsvl model folder packaged in a registered version (to score it again, e.g. the champion).

    Args:
        client: Registry client (see :func:`registry_client`).
        name: Registered model name.
        version: Its version.
        dst: Folder to download into (created).

    Returns:
        The saved rsvl model folder inside ``dst`` (``rsvl.models.load_model`` reads it).

    Raises:
        ModelError: The version does not exist or does not package an rsvl model folder.
    """
    try:
        source = client.get_model_version(name, str(version)).source
    except MlflowException as err:
        if _has_code(err, RESOURCE_DOES_NOT_EXIST):
            raise ModelError(f"registered model {name!r} has no version {version}") from err
        raise
    Path(dst).mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst),
                                                     tracking_uri=client.tracking_uri))
    flavor = Model.load(str(local)).flavors.get("python_function", {})
    packaged = flavor.get("artifacts", {}).get(MODEL_DIR_ARTIFACT, {}).get("path")
    if packaged is None or not (local / packaged).is_dir():
        raise ModelError(f"{name} version {version} ({source}) packages no {MODEL_DIR_ARTIFACT!r} folder")
    return local / packaged
