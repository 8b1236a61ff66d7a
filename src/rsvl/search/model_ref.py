"""Which model an archive index is built with: a registry URI or a saved folder, and its weights hash.

An index is tied to the model that embedded it: its manifest names the registered model and
version (when it came from the registry) and the SHA-256 of the weights file, and a service
refuses to answer queries with any other weights (their embeddings live in another space).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from rsvl.data.store import sha256_file
from rsvl.errors import ConfigError, ModelError
from rsvl.models.io import WEIGHTS_NAME

MODELS_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9._-]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$")


@dataclass(frozen=True)
class ModelRef:
    """The model behind an index.

    Attributes:
        uri: What the user named (``models:/sar_rs_clip@champion`` or a folder path).
        name: Registered model name (``None`` for a folder).
        version: Registered version the URI resolved to (``None`` for a folder).
        weights_sha256: SHA-256 of the saved weights file.
    """

    uri: str
    name: str | None
    version: int | None
    weights_sha256: str

    def to_dict(self) -> dict:
        """The manifest entry."""
        return asdict(self)


def resolve_model(uri: str, tracking_uri: str | None = None, cache_dir: str | Path | None = None) -> tuple[Path, ModelRef]:
    """Find the saved rsvl model folder that ``uri`` names, downloading a registry version.

    Args:
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a saved model folder.
        tracking_uri: The MLflow registry (default: ``MLFLOW_TRACKING_URI``).
        cache_dir: Where a registry version is downloaded (default: a new temporary folder).

    Returns:
        ``(model folder, ModelRef)``.

    Raises:
        ConfigError: A ``models:/`` URI that is not in one of the two forms.
        ModelError: The folder has no weights file, or the registry has no such version or alias.
    """
    if uri.startswith("models:/"):
        match = MODELS_URI.match(uri)
        if match is None:
            raise ConfigError(f"model URI {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
        import mlflow
        from mlflow.exceptions import MlflowException

        from rsvl.model_registry.register import download_model_dir, registry_client
        from rsvl.mlflow_store import resolve_tracking_uri

        client = registry_client(resolve_tracking_uri(tracking_uri) if tracking_uri else mlflow.get_tracking_uri())
        name = match["name"]
        try:
            version = int(match["version"] or client.get_model_version_by_alias(name, match["alias"]).version)
        except MlflowException as err:
            raise ModelError(f"{uri}: no such registered model alias ({err.message})") from err
        target = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="rsvl-index-model-"))
        folder = download_model_dir(client, name, version, target / f"{name}-v{version}")
        return folder, ModelRef(uri, name, version, _weights_sha256(folder))
    folder = Path(uri)
    return folder, ModelRef(str(folder), None, None, _weights_sha256(folder))


def _weights_sha256(folder: Path) -> str:
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{folder}: no {WEIGHTS_NAME}; not a saved rsvl model folder")
    return sha256_file(weights)
