"""What a fit is: the identity a run name is bound to, and the check that a re-launch trains the same thing.

A fit's identity has four parts:

* ``config``: the ``paper``, ``track``, ``data``, ``model`` and ``train`` sections of the resolved
  config, without the fields a re-launch may change (:data:`RELAUNCH_MAY_CHANGE`: how the run is
  carried out, not what it trains) and without ``train.init_from``'s path. Other sections
  (``evaluate``, ``gate``, ``registry``, ``mlflow``, ...) do not decide the weights, so changing
  them never makes a finished fit look different.
* ``data``: the content fingerprint of the training dataset (:func:`data_fingerprint`), wherever it lies.
* ``inputs``: the fingerprint of the dataset that decides a fresh model's image input when that is
  another one (a progression's first stage; ``None`` otherwise).
* ``start_weights``: ``sha256:<hex>`` of ``train.init_from``'s weights (a progression's previous
  stage), or ``fresh``.

The first launch records the identity in the run folder (:data:`RUN_CONFIG_FILE`); a re-launch
(resuming checkpoints or reusing the finished fit) with any part changed is refused, naming what
changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvl.config import RunConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import FILES_FILE, MANIFEST_FILE, sha256_file
from rsvl.errors import ConfigError
from rsvl.models.io import WEIGHTS_NAME

RUN_CONFIG_FILE = "rsvl_run_config.json"
IDENTITY_SECTIONS = ("paper", "track", "data", "model", "train")
RELAUNCH_MAY_CHANGE = (
    "train.max_failures", "train.keep_checkpoints", "train.log_every", "train.checkpoint_every", "train.loader_workers"
)
FRESH = "fresh"
FINGERPRINT_PREFIX = "sha256-"
SHOWN_CHANGES = 6
PART_NAMES = {
    "data": "the training data",
    "inputs": "the data deciding the fresh model's image input",
    "start_weights": "the start weights (train.init_from, or the previous stage's model)",
}


def init_weights(init_from: str | Path) -> Path:
    """The weights file of a ``train.init_from`` folder.

    Raises:
        ConfigError: The folder holds no saved model.
    """
    weights = Path(init_from) / WEIGHTS_NAME
    if not weights.is_file():
        raise ConfigError(f"train.init_from {str(init_from)!r}: no saved model there ({WEIGHTS_NAME} is missing); "
                          "point it at a folder written by rsvl.models.save_model (a train step's model/)")
    return weights


def data_fingerprint(dataset_dir: str | Path, column: str = "image") -> str:
    """``sha256-<hex>`` of a canonical dataset's content: manifest, file table (each file's SHA-256) and band stats.

    Args:
        dataset_dir: The dataset folder.
        column: The media column whose band statistics (they set a fresh model's normalisation) count.
    """
    digest = hashlib.sha256()
    for name in (MANIFEST_FILE, FILES_FILE):
        digest.update(name.encode())
        digest.update((Path(dataset_dir) / name).read_bytes())
    stats = ManifestDataset(dataset_dir, split="train", load_media=False).band_stats.get(column)
    digest.update(json.dumps(stats, sort_keys=True).encode())
    return FINGERPRINT_PREFIX + digest.hexdigest()


def identity_config(cfg: RunConfig) -> dict[str, Any]:
    """The identity sections of ``cfg`` (JSON-ready), without relaunch fields and ``train.init_from``."""
    dumped = cfg.model_dump(mode="json")
    payload = {section: dumped[section] for section in IDENTITY_SECTIONS}
    for dotted in RELAUNCH_MAY_CHANGE + ("train.init_from",):
        section, _, key = dotted.partition(".")
        payload[section].pop(key)
    return payload


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _flat(mapping: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(mapping, dict):
        return {prefix: mapping}
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        flat.update(_flat(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return flat


def config_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: recorded -> current`` for every dotted key whose value differs (JSON values)."""
    before, after = _flat(recorded), _flat(current)
    keys = sorted(set(before) | set(after))
    return [f"{key.rstrip('.')}: {json.dumps(before.get(key))} -> {json.dumps(after.get(key))}"
            for key in keys if before.get(key) != after.get(key)]


@dataclass(frozen=True)
class FitIdentity:
    """The parts of a fit's identity (see the module docstring).

    Attributes:
        config: :func:`identity_config` of the fit's config.
        data: :func:`data_fingerprint` of the training data.
        inputs: The fingerprint of the dataset deciding a fresh model's input, when another one.
        start_weights: ``sha256:<hex>`` of the start weights, ``fresh``, or ``None`` when not known
            yet (a later stage checked before its previous stage trained: not compared).
    """

    config: dict[str, Any]
    data: str
    inputs: str | None
    start_weights: str | None

    def parts(self) -> dict[str, str | None]:
        """Each part as one string (the config by its SHA-256)."""
        return {"config": _digest(self.config), "data": self.data, "inputs": self.inputs,
                "start_weights": self.start_weights}

    def digest(self) -> str:
        """One SHA-256 over every part."""
        return _digest(self.parts())

    def changes(self, record: dict[str, Any]) -> list[str]:
        """What differs from a recorded identity (``record`` as :meth:`record` wrote it), one line per change."""
        recorded, current = record.get("parts", {}), self.parts()
        changes: list[str] = []
        if recorded.get("config") != current["config"]:
            changes += [f"config {line}" for line in config_changes(record.get("identity_config", {}), self.config)]
            changes = changes or ["the config"]
        for part, label in PART_NAMES.items():
            if part == "start_weights" and self.start_weights is None:
                continue
            if recorded.get(part) != current[part]:
                changes.append(f"{label}: {recorded.get(part)} -> {current[part]}")
        return changes

    def record(self, cfg: RunConfig) -> dict[str, Any]:
        """What the run folder keeps: digest, parts, identity config and the whole resolved config."""
        return {"identity": self.digest(), "parts": self.parts(), "identity_config": self.config,
                "config": cfg.model_dump(mode="json")}


def fit_identity(cfg: RunConfig, dataset_dir: str | Path, inputs_dir: str | Path | None = None, *,
                 start_known: bool = True) -> FitIdentity:
    """The identity of fitting ``cfg`` on ``dataset_dir``.

    Args:
        cfg: The fit's config (no ``train.stages``).
        dataset_dir: Its training data.
        inputs_dir: The dataset deciding a fresh model's image input (default ``dataset_dir``).
        start_known: ``False`` leaves ``start_weights`` unknown (``train.init_from`` not written yet).

    Raises:
        ConfigError: ``train.init_from`` holds no saved model.
    """
    column = cfg.train.image_column
    init_from = cfg.train.init_from
    inputs = None
    if not init_from and inputs_dir is not None and Path(inputs_dir).resolve() != Path(dataset_dir).resolve():
        inputs = data_fingerprint(inputs_dir, column)
    start: str | None = FRESH
    if init_from:
        start = f"sha256:{sha256_file(init_weights(init_from))}" if start_known else None
    return FitIdentity(identity_config(cfg), data_fingerprint(dataset_dir, column), inputs, start)


def identity_digest(cfg: RunConfig, dataset_dir: str | Path) -> str:
    """SHA-256 of a fit's whole identity (:func:`fit_identity`)."""
    return fit_identity(cfg, dataset_dir).digest()


def _legacy_digest(cfg: RunConfig) -> str:
    """The identity rsvl recorded before identities had parts: the whole config bar relaunch fields."""
    payload = cfg.model_dump(mode="json")
    for dotted in RELAUNCH_MAY_CHANGE:
        section, _, key = dotted.partition(".")
        payload[section].pop(key)
    if cfg.train.init_from:
        payload["train"]["init_from"] = f"sha256:{sha256_file(init_weights(cfg.train.init_from))}"
    return _digest(payload)


def _read_record(filesystem: Any, record_path: str) -> dict[str, Any] | None:
    import pyarrow.fs

    if filesystem.get_file_info(record_path).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(record_path) as stream:
        return json.loads(stream.read().decode("utf-8"))


def _write_record(filesystem: Any, run_dir: str, record: dict[str, Any]) -> None:
    filesystem.create_dir(run_dir, recursive=True)
    with filesystem.open_output_stream(f"{run_dir}/{RUN_CONFIG_FILE}") as stream:
        stream.write(json.dumps(record, indent=2).encode("utf-8"))


def _check_record(record: dict[str, Any], record_path: str, run_name: str, cfg: RunConfig,
                  identity: FitIdentity) -> None:
    """Raise when a recorded identity differs from ``identity`` (a record without parts: by the legacy digest)."""
    if "parts" not in record:
        if identity.start_weights is not None and record.get("identity") != _legacy_digest(cfg):
            raise ConfigError(f"fit {run_name!r} was started with another config (see {record_path}); re-launch it "
                              f"with that config or choose a new run name")
        return
    changes = identity.changes(record)
    if changes:
        more = [f"... {len(changes) - SHOWN_CHANGES} more"] if len(changes) > SHOWN_CHANGES else []
        raise ConfigError(
            f"fit {run_name!r} was started with another config or data (see {record_path}); changed: "
            f"{'; '.join(changes[:SHOWN_CHANGES] + more)}. Re-launch it with what it was started with (only "
            f"{', '.join(RELAUNCH_MAY_CHANGE)} may change) or choose a new run name"
        )


def check_relaunch(filesystem: Any, run_dir: str, run_name: str, cfg: RunConfig, identity: FitIdentity) -> bool:
    """Refuse re-launching ``run_name`` when its recorded identity differs from ``identity``.

    Args:
        filesystem: The storage's pyarrow file system.
        run_dir: The run folder on it.
        run_name: The fit's name (for the message).
        cfg: The fit's config (a record from before identities had parts is compared by it).
        identity: What this launch would train.

    Returns:
        Whether the run folder holds a record (the name was launched before).

    Raises:
        ConfigError: The name was launched with another identity; the message lists what changed.
    """
    record_path = f"{run_dir}/{RUN_CONFIG_FILE}"
    record = _read_record(filesystem, record_path)
    if record is not None:
        _check_record(record, record_path, run_name, cfg, identity)
    return record is not None


def claim_run(filesystem: Any, run_dir: str, run_name: str, cfg: RunConfig, identity: FitIdentity) -> None:
    """Record the identity of a new run, or check that a re-launch trains the same thing (:func:`check_relaunch`).

    A record from before identities had parts is rewritten in the current form once it matched.
    """
    record_path = f"{run_dir}/{RUN_CONFIG_FILE}"
    record = _read_record(filesystem, record_path)
    if record is not None:
        _check_record(record, record_path, run_name, cfg, identity)
        if "parts" in record:
            return
    _write_record(filesystem, run_dir, identity.record(cfg))
