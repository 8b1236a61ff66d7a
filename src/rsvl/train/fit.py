"""``fit``: one training run through Ray Train's ``TorchTrainer``, tracked in MLflow.

Workers, CPUs and GPUs come from ``train``; without a cluster a local Ray instance is started with
the CPUs the workers need, and ``num_workers: 0`` runs Ray Train's local mode in this process
(``fit`` then retries failed attempts itself, and needs a local ``storage_path``). Runs are named
``{paper}-{UTC time}-{6 hex}``; a name belongs to one fit identity (:mod:`rsvl.train.identity`),
and only :data:`RELAUNCH_MAY_CHANGE` may differ on a re-launch. A finished run leaves
:data:`RESULT_FILE`, so launching it again returns the recorded result. Details: ``docs/training.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from rsvl.config import RunConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.errors import ConfigError, DataError, TrainError
from rsvl.train.checkpoint import MODEL_DIR
from rsvl.train.data import check_bands_fit, data_bands, image_inputs, saved_in_bands, saved_sensor_bands
from rsvl.train.identity import (  # noqa: F401  (init_weights, identity_digest, RUN_CONFIG_FILE: re-exported)
    RELAUNCH_MAY_CHANGE,
    RUN_CONFIG_FILE,
    claim_run,
    fit_identity,
    identity_digest,
    init_weights,
)
from rsvl.train.loop import KILL_AT_STEP_ENV, RAISE_AT_STEP_ENV, train_loop_per_worker
from rsvl.train.objectives import build_objective
from rsvl.train.trainable import check_adapter
from rsvl.train.tracking import (
    close_run,
    data_version_tag,
    git_commit,
    log_dataset_counts,
    log_outputs,
    open_run,
    resolve_tracking_uri,
)

RESULT_FILE = "rsvl_run_result.json"
CONFIG_ARTIFACT = "config.json"
RAY_TRAIN_LOG_LEVEL = "WARNING"
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RSVL_MODELS_DIR", "RSVL_GIT_COMMIT", KILL_AT_STEP_ENV,
                 RAISE_AT_STEP_ENV)


@dataclass(frozen=True)
class FitResult:
    """What a fit produced.

    Attributes:
        run_name: The run's name (pass it again to resume or inspect).
        mlflow_run_id: The MLflow run holding params, metrics, tags and artifacts.
        model_dir: The final model (``rsvl.models.load_model`` reads it).
        steps: Optimizer steps done in total.
        metrics: Last reported metrics: ``loss`` and the held-out retrieval numbers.
        baseline: Held-out retrieval of the untrained model (empty when skipped).
        seconds: Wall time of the launch that trained it.
        checkpoint: Path of the last checkpoint (on the storage's file system).
        reused: The run had finished before; this launch trained nothing.
        stage: The progressive stage this fit trained (``None`` for a plain fit).
        stages: A progressive plan's fits, by stage, in order (the last one is this fit); empty
            for a plain fit.
        ablations: A progressive plan's control runs, by ablation name: each is its last fit,
            with its own ``stages``.
    """

    run_name: str
    mlflow_run_id: str
    model_dir: Path
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    checkpoint: str = ""
    reused: bool = False
    stage: str | None = None
    stages: dict[str, "FitResult"] = field(default_factory=dict)
    ablations: dict[str, "FitResult"] = field(default_factory=dict)


def new_run_name(paper: str) -> str:
    """A fresh, unique run name: ``{paper}-{YYYYmmdd-HHMMSS}-{6 hex}`` (UTC)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{paper}-{stamp}-{uuid.uuid4().hex[:6]}"


def storage_uri(storage_path: str) -> str:
    """``train.storage_path`` as Ray wants it: URIs unchanged, local paths absolute."""
    if "://" in storage_path:
        return storage_path
    return str(Path(storage_path).expanduser().resolve())


def absolute_init_from(cfg: RunConfig) -> RunConfig:
    """``cfg`` with a relative ``train.init_from`` made absolute (from this process's working directory).

    Ray Train's workers run in their own session folders, so a relative path would name another folder there.
    """
    init_from = cfg.train.init_from
    if not init_from or Path(init_from).is_absolute():
        return cfg
    # Ray's workers do not run in the launcher's working directory
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"init_from": str(Path(init_from).resolve())})})


def run_folder(storage: str, run_name: str) -> tuple[Any, str]:
    """The run folder on the storage's file system: ``(filesystem, path)``."""
    import pyarrow.fs

    filesystem, base = pyarrow.fs.FileSystem.from_uri(storage)
    return filesystem, f"{base.rstrip('/')}/{run_name}"


def _claim_run(storage: str, run_name: str, cfg: RunConfig, dataset_dir: Path, inputs_dir: Path) -> None:
    """Record the identity of a new run, or check a re-launch trains the same thing (:mod:`rsvl.train.identity`)."""
    filesystem, run_dir = run_folder(storage, run_name)
    claim_run(filesystem, run_dir, run_name, cfg, fit_identity(cfg, dataset_dir, inputs_dir))


def _write_result(storage: str, result: FitResult) -> None:
    """Record a finished run's result in its run folder (a re-launch returns it instead of training)."""
    filesystem, run_dir = run_folder(storage, result.run_name)
    record = {key: value for key, value in asdict(result).items()
              if key not in ("run_name", "model_dir", "reused", "stage", "stages", "ablations")}
    with filesystem.open_output_stream(f"{run_dir}/{RESULT_FILE}") as stream:
        stream.write(json.dumps(record, indent=2).encode("utf-8"))


def _finished(storage: str, run_name: str) -> tuple[dict[str, Any], Any] | None:
    """The recorded result and last checkpoint of a finished run, or ``None`` (not finished, or checkpoint gone)."""
    import pyarrow.fs
    from ray.train import Checkpoint

    filesystem, run_dir = run_folder(storage, run_name)
    record_path = f"{run_dir}/{RESULT_FILE}"
    if filesystem.get_file_info(record_path).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(record_path) as stream:
        record = json.loads(stream.read().decode("utf-8"))
    if filesystem.get_file_info(record["checkpoint"]).type != pyarrow.fs.FileType.Directory:
        logging.getLogger("rsvl.train").warning("run %s: finished, but its last checkpoint %s is gone; training it "
                                                "again", run_name, record["checkpoint"])
        return None
    return record, Checkpoint(record["checkpoint"], filesystem=filesystem)


def check_run_name(run_name: str) -> None:
    """Refuse a run (fit) name that cannot name a run folder and an MLflow run.

    Raises:
        ConfigError: The name breaks :data:`RUN_NAME_PATTERN`.
    """
    if not RUN_NAME_PATTERN.fullmatch(run_name):
        raise ConfigError(f"run name {run_name!r}: use 1-128 letters, digits, '.', '_' or '-', starting alphanumeric")


def check_fit_setup(cfg: RunConfig, dataset_dir: Path) -> None:
    """Check what a fit needs besides its start model: a known objective and adapter, rows in its splits.

    Raises:
        ConfigError: Unknown objective or adapter.
        DataError: The dataset is missing, or its ``train`` or ``train.eval_split`` split is empty.
    """
    train = cfg.train
    build_objective(train.objective)
    check_adapter(train.trainable)
    for split in ("train", train.eval_split):
        if split is not None and len(ManifestDataset(dataset_dir, split=split, load_media=False)) == 0:
            raise DataError(f"{dataset_dir}: split {split!r} is empty; train needs 'train' and train.eval_split rows")


def _check_sensor_inputs(cfg: RunConfig, dataset_dir: Path) -> None:
    """A sensor model's data: rows of every sensor in ``train`` and ``train.eval_split``, bands its saved towers take."""
    saved = saved_sensor_bands(cfg.train.init_from) if cfg.train.init_from else {}
    for sensor in cfg.train.sensors:
        for split in ("train", cfg.train.eval_split):
            if split and not len(ManifestDataset(dataset_dir, split=split, load_media=False).with_media(sensor)):
                raise DataError(f"{dataset_dir}: split {split!r} has no {sensor!r} rows; train.sensors "
                                f"{cfg.train.sensors} needs each sensor's rows in 'train' and train.eval_split")
        if saved:
            if sensor not in saved:
                raise DataError(f"train.init_from {cfg.train.init_from} has towers {sorted(saved)}, not {sensor!r}")
            bands = data_bands(ManifestDataset(dataset_dir, split="train").with_media(sensor), sensor)
            check_bands_fit(bands, saved[sensor], f"{dataset_dir} ({sensor!r})")


def _check_inputs(cfg: RunConfig, dataset_dir: Path, inputs_dir: Path) -> None:
    train = cfg.train
    check_fit_setup(cfg, dataset_dir)
    if train.sensors:
        if train.init_from:
            init_weights(train.init_from)
        _check_sensor_inputs(cfg, dataset_dir)
        return
    if train.init_from:
        init_weights(train.init_from)
        in_bands = saved_in_bands(train.init_from)
    else:
        in_bands = image_inputs(ManifestDataset(inputs_dir, split="train"), train.image_column)[0]
    bands = data_bands(ManifestDataset(dataset_dir, split="train"), train.image_column)
    check_bands_fit(bands, in_bands, f"{dataset_dir} ({train.image_column!r})")


@contextmanager
def ray_session(cfg: RunConfig) -> Iterator[None]:
    """Start Ray for the ``with`` block unless it runs already or ``train.num_workers`` is 0; stop what it started.

    A plan enters it once around all its fits, so its stages and ablations share one Ray start-up.

    Args:
        cfg: The run config (``train.num_workers``, ``train.cpus_per_worker``); ``RAY_ADDRESS``
            in the environment joins that cluster instead.
    """
    import ray

    if cfg.train.num_workers == 0 or ray.is_initialized():
        yield
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        # exactly the CPUs the workers need, not every core of the machine
        ray.init(num_cpus=cfg.train.num_workers * cfg.train.cpus_per_worker, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


def _fit_in_process(trainer: Any, max_failures: int, run_name: str) -> Any:
    """Run a local-mode trainer, re-running a failed attempt (it resumes from its newest checkpoint)."""
    attempt = 0
    while True:
        try:
            return trainer.fit()
        # any failure counts as an attempt, as Ray's FailureConfig does on a cluster
        except Exception as err:
            attempt += 1
            # -1 means retry forever, as in Ray's FailureConfig
            if max_failures != -1 and attempt > max_failures:
                raise
            logging.getLogger("rsvl.train").warning(
                "run %s: attempt %d failed (%s: %s); resuming from its last checkpoint", run_name, attempt,
                type(err).__name__, err,
            )


def _trainer(cfg: RunConfig, loop_config: dict[str, Any], storage: str, run_name: str) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, ScalingConfig
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchTrainer

    train = cfg.train
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=train.num_workers, use_gpu=train.use_gpu, resources_per_worker={"CPU": train.cpus_per_worker}
        ),
        run_config=RayRunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=train.keep_checkpoints),
            worker_runtime_env={"env_vars": env},
            logging_config=LoggingConfig(log_level=RAY_TRAIN_LOG_LEVEL),
        ),
    )


def _provenance(cfg: RunConfig, dataset_dir: Path, tags: Mapping[str, str]) -> dict[str, str]:
    commit, dirty = git_commit()
    return {
        "data_version": data_version_tag(dataset_dir),
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "dataset_dir": str(dataset_dir),
        "paper": cfg.paper,
        "profile": cfg.profile,
        **tags,
    }


def _write_outputs(checkpoint: Any, cfg: RunConfig, out_dir: Path) -> tuple[Path, Path]:
    """Link (or copy) the final checkpoint's model to ``out_dir/model`` and write the resolved config beside it."""
    from rsvl.file_links import link_tree

    model_dir = out_dir / MODEL_DIR
    with checkpoint.as_directory() as directory:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        link_tree(Path(directory) / MODEL_DIR, model_dir)
    config_file = out_dir / CONFIG_ARTIFACT
    config_file.write_text(json.dumps(cfg.model_dump(mode="json"), indent=2), encoding="utf-8")
    return model_dir, config_file


def fit(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path, run_name: str | None = None, *,
        inputs_from: str | Path | None = None, tags: Mapping[str, str] | None = None) -> FitResult:
    """Train ``cfg.model`` (or ``train.init_from``) on ``dataset_dir`` with Ray Train; track it in MLflow.

    Args:
        cfg: The resolved run config.
        dataset_dir: A canonical dataset with ``train`` rows (and ``train.eval_split`` rows).
        out_dir: Receives ``model/`` (the final model) and ``config.json`` (the resolved config).
        run_name: Resume or name this run; ``None`` starts a new uniquely named run.
        inputs_from: The dataset whose bands decide a fresh model's image input (a progression's
            first stage); default ``dataset_dir``. Unused with ``train.init_from``.
        tags: More MLflow tags for the run (a progression's stage and plan).

    Returns:
        The :class:`FitResult`.

    Raises:
        DataError: The dataset is missing, a needed split is empty, or its bands do not fit the model.
        ConfigError: ``train.stages`` set (use :func:`rsvl.train.train_plan`), unknown objective or
            adapter, a malformed run name, a run name that belongs to another fit identity (config
            sections, data or start weights), or a ``train.init_from`` holding no saved model.
        TrainError: Training failed beyond ``train.max_failures``; the message says how to resume.
    """
    launched = time.perf_counter()
    if cfg.train.stages:
        raise ConfigError(
            f"fit trains one model, but this config has train.stages {[stage.name for stage in cfg.train.stages]}; "
            "call rsvl.train.train_plan (or rsvl.steps.training.run_train, `rsvl train`), which trains the stages "
            "in order and then train.ablations"
        )
    cfg = absolute_init_from(cfg)
    dataset_dir = Path(dataset_dir).resolve()
    inputs_dir = Path(inputs_from).resolve() if inputs_from is not None else dataset_dir
    out_dir = Path(out_dir).resolve()
    run_name = run_name or new_run_name(cfg.paper)
    check_run_name(run_name)
    _check_inputs(cfg, dataset_dir, inputs_dir)
    storage = storage_uri(cfg.train.storage_path)
    if cfg.train.num_workers == 0 and "://" in storage:
        raise ConfigError(
            f"train.num_workers 0 (Ray Train local mode) keeps checkpoints itself and needs a local "
            f"train.storage_path, not {storage!r}; use num_workers >= 1 for remote storage"
        )
    _claim_run(storage, run_name, cfg, dataset_dir, inputs_dir)
    finished = _finished(storage, run_name)
    if finished is not None:
        record, checkpoint = finished
        model_dir, _ = _write_outputs(checkpoint, cfg, out_dir)
        logging.getLogger("rsvl.train").info("run %s finished before (MLflow run %s); reusing its model", run_name,
                                             record["mlflow_run_id"])
        return FitResult(run_name=run_name, model_dir=model_dir, reused=True, **record)
    tracking_uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    run_id, reopened = open_run(tracking_uri, cfg, run_name, _provenance(cfg, dataset_dir, tags or {}))
    if not reopened:  # rows trained on and set aside (data.rows_kept, data.rows_quarantined), funnel.* counts
        log_dataset_counts(tracking_uri, run_id, dataset_dir)
    loop_config = {
        "config": cfg.model_dump(mode="json"),
        "dataset_dir": str(dataset_dir),
        "inputs_dir": str(inputs_dir),
        "tracking_uri": tracking_uri,
        "run_id": run_id,
        "run_dir": None if "://" in storage else str(Path(storage) / run_name),
        "local_mode": cfg.train.num_workers == 0,
    }
    try:
        with ray_session(cfg):
            if loop_config["local_mode"]:
                logging.getLogger("ray.train").setLevel(RAY_TRAIN_LOG_LEVEL)
            trainer = _trainer(cfg, loop_config, storage, run_name)
            if loop_config["local_mode"]:
                result = _fit_in_process(trainer, cfg.train.max_failures, run_name)
            else:
                result = trainer.fit()
        if result.checkpoint is None:
            raise TrainError(f"the run left no checkpoint in {storage}/{run_name}")
    # whatever failed, close the MLflow run as FAILED and tell how to resume
    except Exception as err:
        close_run(tracking_uri, run_id, "FAILED")
        raise TrainError(
            f"training run {run_name!r} failed ({type(err).__name__}: {err}); its checkpoints are in "
            f"{storage}/{run_name}; launch again with run name {run_name!r} to resume from the last one"
        ) from err
    model_dir, config_file = _write_outputs(result.checkpoint, cfg, out_dir)
    seconds = time.perf_counter() - launched
    log_outputs(tracking_uri, run_id, model_dir, config_file, {"fit_seconds": seconds})
    close_run(tracking_uri, run_id, "FINISHED")
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    baseline = {k.removeprefix("baseline_"): v for k, v in metrics.items() if k.startswith("baseline_")}
    final = {k: v for k, v in metrics.items() if not k.startswith("baseline_")}
    fitted = FitResult(
        run_name=run_name,
        mlflow_run_id=run_id,
        model_dir=model_dir,
        steps=int(final.get("step", 0)),
        metrics=final,
        baseline=baseline,
        seconds=seconds,
        checkpoint=result.checkpoint.path,
    )
    _write_result(storage, fitted)
    return fitted
