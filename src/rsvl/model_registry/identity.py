"""What makes two registrations the same model, so re-running a pipeline adds no version.

The identity is the sha256 of: the serving format, the weights file's sha256, the saved config
(with the folder-dependent text tower paths left out), and the lineage fields that change the
model: config hash, train and eval data md5 and paper. The git commit and the pipeline run id
are left out on purpose: a re-run, or a commit that leaves the weights unchanged, registers the
same model again and must reuse its version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvl.data.store import sha256_file
from rsvl.errors import ModelError
from rsvl.models.files import CONFIG_NAME, WEIGHTS_NAME
from rsvl.model_registry.lineage import Lineage

SERVING_FORMAT = "rsvl-embedder/1"
IDENTITY_TAG = "rsvl.identity"
WEIGHTS_TAG = "rsvl.weights_sha256"
ARCHITECTURE_TAG = "rsvl.architecture"
FOLDER_DEPENDENT_TEXT_KEYS = ("hf_model_name", "hf_tokenizer_name")


@dataclass(frozen=True)
class ModelIdentity:
    """The identity digest and the parts worth tagging."""

    digest: str
    weights_sha256: str
    architecture: str


def read_rsvl_config(model_dir: Path) -> dict[str, Any]:
    """Check that ``model_dir`` is a model folder written by :func:`rsvl.models.save_model`.

    Returns:
        Its parsed ``open_clip_config.json``.

    Raises:
        ModelError: The folder, its config or its weights are missing, or the config is not
            an rsvl one (no ``rsvl`` and ``model_cfg`` sections).
    """
    rule = f"an rsvl model folder (written by rsvl.models.save_model) holds {CONFIG_NAME} and {WEIGHTS_NAME}"
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: not a directory; {rule}")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir}: {name} is missing; {rule}")
    config_path = model_dir / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{config_path}: not readable JSON ({err}); {rule}") from err
    if not isinstance(config, dict) or not isinstance(config.get("rsvl"), dict) or "model_cfg" not in config:
        raise ModelError(f"{config_path}: no 'rsvl' and 'model_cfg' sections; not an rsvl model folder")
    return config


def _portable_config(config: dict[str, Any]) -> str:
    portable = json.loads(json.dumps(config))
    text_cfg = portable.get("model_cfg", {}).get("text_cfg", {})
    for key in FOLDER_DEPENDENT_TEXT_KEYS:
        text_cfg.pop(key, None)
    return json.dumps(portable, sort_keys=True, separators=(",", ":"))


def model_identity(model_dir: str | Path, lineage: Lineage) -> ModelIdentity:
    """Compute the identity of registering ``model_dir`` with ``lineage``.

    Raises:
        ModelError: ``model_dir`` is not an rsvl model folder.
    """
    directory = Path(model_dir).resolve()
    config = read_rsvl_config(directory)
    weights_sha256 = sha256_file(directory / WEIGHTS_NAME)
    parts = {
        "format": SERVING_FORMAT,
        "weights_sha256": weights_sha256,
        "config": _portable_config(config),
        "config_hash": lineage.config_hash,
        "train_data_md5": lineage.train_data_md5,
        "eval_data_md5": lineage.eval_data_md5,
        "paper": lineage.paper,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()
    architecture = str(config["rsvl"].get("architecture") or "open_clip")
    return ModelIdentity(digest=digest, weights_sha256=weights_sha256, architecture=architecture)
