"""The ``train`` step: the train plan on this machine (``train.backend: local``) or as a KubeRay RayJob (``kuberay``).

On ``kuberay`` the step copies the dataset, the resolved config and any inputs the pods cannot
read to the shared volume (``<shared_mount_path>/pipeline-runs/<run name>``), submits a RayJob
running the same ``rsvl train`` (:mod:`rsvl.cluster`), copies its output back and reads every
fit's numbers from MLflow. Every copy is checked per path (:mod:`rsvl.cluster.volume`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from rsvl.cluster.volume import copy_contents, copy_path
from rsvl.config import RunConfig, deep_merge, write_config_file
from rsvl.errors import ConfigError, TrainError
from rsvl.mlflow_store import resolve_tracking_uri, tracking_client
from rsvl.train.checkpoint import ABLATIONS_DIR, MODEL_DIR
from rsvl.train.data import TRUNCATED_PREFIX
from rsvl.train.fit import FitResult, new_run_name
from rsvl.config.plan import ablation_stages, stage_run_name
from rsvl.train.progressive import stage_dataset, stage_out_dir, train_plan
from rsvl.train.tracking import RUN_NAME_TAG

RUNS_DIR = "pipeline-runs"
log = logging.getLogger("rsvl.steps.train")


def _fit_numbers(result: FitResult) -> dict[str, float]:
    shown = {f"untrained_{k}": v for k, v in result.baseline.items()}
    shown.update({k: v for k, v in result.metrics.items() if k not in ("step", "epoch")})
    shown.update(steps=float(result.steps), fit_seconds=result.seconds)
    return shown


def summary_metrics(result: FitResult) -> dict[str, float]:
    """The numbers a run's UI shows for a train step: held-out retrieval before/after, steps, seconds.

    The last fit's are unprefixed; stages add ``stage.<stage>.<key>``, ablations
    ``ablation.<name>.<key>`` (``steps``: all its stages, the budget shared with the progression).
    """
    shown = _fit_numbers(result)
    for stage, fitted in result.stages.items():
        shown.update({f"stage.{stage}.{key}": value for key, value in _fit_numbers(fitted).items()})
    for name, fitted in result.ablations.items():
        numbers = _fit_numbers(fitted)
        numbers["steps"] = float(sum(part.steps for part in fitted.stages.values()) or fitted.steps)
        shown.update({f"ablation.{name}.{key}": value for key, value in numbers.items()})
    return shown


def fit_result_from_mlflow(cfg: RunConfig, run_name: str, model_dir: Path, seconds: float | None = None) -> FitResult:
    """Rebuild a fit's :class:`FitResult` from its MLflow run (a fit that ran elsewhere, e.g. in a RayJob).

    Args:
        cfg: The config of the fit (its ``mlflow`` section and ``train.eval_split``).
        run_name: The fit's run name.
        model_dir: Where its model now lies.
        seconds: The fit's wall time; ``None`` reads the run's ``fit_seconds``.

    Raises:
        TrainError: No MLflow run carries ``run_name``.
    """
    client = tracking_client(resolve_tracking_uri(cfg.mlflow.tracking_uri))
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
                              max_results=1) if experiment else []
    if not runs:
        raise TrainError(f"run {run_name!r} finished but left no MLflow run in experiment {cfg.mlflow.experiment!r}")
    run = runs[0]
    split = cfg.train.eval_split
    metrics = {k: v for k, v in run.data.metrics.items()
               if k == "loss" or k in COST_KEYS or k.startswith(TRUNCATED_PREFIX)
               or (split and k.startswith(f"{split}_"))}
    baseline = {}
    for key in [k for k in metrics if split and k.startswith(f"{split}_")]:
        first = min(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        # only a score logged at step 0 is the untrained baseline (a resumed run has none)
        if first.step == 0:
            baseline[key] = first.value
    steps = max((m.step for m in client.get_metric_history(run.info.run_id, "loss")), default=0)
    if seconds is None:
        seconds = float(run.data.metrics.get("fit_seconds", 0.0))
    return FitResult(run_name=run_name, mlflow_run_id=run.info.run_id, model_dir=model_dir, steps=int(steps),
                     metrics=metrics, baseline=baseline, seconds=seconds)


def plan_result_from_mlflow(cfg: RunConfig, run_name: str, out_dir: Path, seconds: float) -> FitResult:
    """Rebuild what :func:`rsvl.train.progressive.train_plan` returned from the MLflow runs of its fits.

    Args:
        cfg: The plan's config.
        run_name: The plan's run name.
        out_dir: The plan's output folder (here).
        seconds: Wall time of a plain fit (a progression's fits read theirs from MLflow).

    Raises:
        TrainError: A fit of the plan left no MLflow run.
    """
    if not cfg.train.stages:
        return fit_result_from_mlflow(cfg, run_name, out_dir / MODEL_DIR, seconds)

    def chain(stages, folder: Path, ablation: str | None = None) -> dict[str, FitResult]:
        fits = {}
        for index, stage in enumerate(stages):
            model_dir = stage_out_dir(folder, stages, index) / MODEL_DIR
            fitted = fit_result_from_mlflow(cfg, stage_run_name(run_name, stage.name, ablation), model_dir)
            fits[stage.name] = replace(fitted, stage=stage.name)
        return fits

    progression = chain(cfg.train.stages, out_dir)
    ablations = {}
    for ablation in cfg.train.ablations:
        fits = chain(ablation_stages(cfg, ablation.name), out_dir / ABLATIONS_DIR / ablation.name, ablation.name)
        ablations[ablation.name] = replace(list(fits.values())[-1], stages=fits)
    return replace(list(progression.values())[-1], stages=progression, ablations=ablations)


def _readable_by_pods(path: Path, cfg: RunConfig) -> bool:
    kuberay = cfg.train.kuberay
    mounts = [kuberay.shared_mount_path] + ([kuberay.data_mount_path] if kuberay.data_volume_claim else [])
    where = os.path.abspath(path)
    return any(where == mount or where.startswith(mount.rstrip("/") + "/") for mount in mounts)


def _inputs_for_pods(cfg: RunConfig, dataset_dir: Path, shared: Path) -> RunConfig:
    """``cfg`` with its stage datasets and ``train.init_from`` where the RayJob's pods can read them.

    Paths on the shared or data volume stay (made absolute); others are copied into the run's shared
    folder (``data/<stage dataset>``, ``evaluate/stages/<stage dataset>`` for a stage ingested from a
    source, ``init_from/``) and the config points there.

    Raises:
        DataError: A stage names a dataset that does not exist.
        ConfigError: ``train.init_from`` holds no saved model.
    """
    update: dict = {}
    # stages under data.root, and stages ingested from a source into evaluate.cache_dir
    for section, key, root, ingested in (("data", "root", cfg.data.root, False),
                                         ("evaluate", "cache_dir", cfg.evaluate.cache_dir, True)):
        named = [stage for stage in cfg.train.stages
                 if stage.dataset is not None and (stage.source is not None) == ingested]
        sources = [stage_dataset(cfg, stage, dataset_dir) for stage in named]
        if sources and not _readable_by_pods(Path(root), cfg):
            for source in sources:
                copy_path(source, shared / section / source.relative_to(root))
            update[section] = {key: str(shared / section)}
        elif sources:
            # absolute, since the pods do not run in this step's directory
            update[section] = {key: os.path.abspath(root)}
    init_from = cfg.train.init_from
    if init_from and not _readable_by_pods(Path(init_from), cfg):
        if not Path(init_from).is_dir():
            raise ConfigError(f"train.init_from {init_from!r}: no such model folder")
        copy_path(Path(init_from), shared / "init_from")
        update["train"] = {"init_from": str(shared / "init_from")}
    elif init_from:
        update["train"] = {"init_from": os.path.abspath(init_from)}
    return RunConfig.model_validate(deep_merge(cfg.model_dump(mode="json"), update)) if update else cfg


def _train_on_kuberay(cfg: RunConfig, dataset_dir: Path, out_dir: Path, run_name: str, api_client=None) -> FitResult:
    from rsvl.cluster.rayjob import build_rayjob, resolve_image
    from rsvl.cluster.submit import submit_rayjob

    kuberay = cfg.train.kuberay
    shared = Path(kuberay.shared_mount_path) / RUNS_DIR / run_name
    copy_path(dataset_dir, shared / "dataset")
    on_pods = _inputs_for_pods(cfg, dataset_dir, shared)
    config_file = write_config_file(on_pods, shared / "config.yaml")
    manifest = build_rayjob(on_pods, kuberay, run_name=run_name, config_path=str(config_file),
                            dataset=str(shared / "dataset"), out_dir=str(shared / "out"), image=resolve_image(kuberay))
    outcome = submit_rayjob(manifest, kuberay, api_client=api_client, on_status=log.info)
    copy_contents(outcome.out_dir, out_dir)
    return plan_result_from_mlflow(on_pods, run_name, out_dir, outcome.seconds)


def run_train(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path, run_name: str | None = None,
              *, api_client=None) -> FitResult:
    """Train ``cfg``'s plan (one fit, or its stages and ablations); the final model lands in ``out_dir/model``.

    Args:
        cfg: The run config (``train.backend`` says where the fit runs).
        dataset_dir: The filtered training dataset (for stages without a dataset of their own).
        out_dir: Receives ``model/`` and ``config.json`` (and ``stages/``, ``ablations/<name>/model``).
        run_name: Resume or name the run (default: a new unique name); a re-run reuses finished stages.
        api_client: ``kuberay`` only: a ``kubernetes.client.ApiClient`` (default: in-cluster or kubeconfig).

    Returns:
        The last fit's :class:`rsvl.train.FitResult` (its MLflow run is the one evaluate and register
        log into), with a progression's fits in ``stages`` and ``ablations``.

    Raises:
        TrainError: The fit (or its RayJob) failed; the message says how to resume.
        ConfigError: The config cannot run on the chosen backend.
    """
    from rsvl.steps.curation_model import start_config

    run_name = run_name or new_run_name(cfg.paper)
    cfg = start_config(cfg)  # GeoRSCLIP local: from the fitted scorer, the stand-in for pretrained CLIP
    if cfg.train.backend == "kuberay":
        result = _train_on_kuberay(cfg, Path(dataset_dir), Path(out_dir), run_name, api_client)
    else:
        result = train_plan(cfg, dataset_dir, out_dir, run_name=run_name)
    log_plan_costs(cfg, result)
    return result


COST_KEYS = ("trainable_params", "total_params", "adapter_params")
"""Parameter counts each fit reports (:func:`rsvl.train.trainable.apply_trainable`)."""


def plan_costs(result: FitResult) -> dict[str, float]:
    """What the candidate and each ablation cost: parameters trained and wall time, as comparable metrics.

    The candidate's are ``trainable_params``, ``total_params``, ``adapter_params`` of its last fit and
    ``fit_seconds`` of its whole progression; an ablation's are the same keys prefixed with its name
    (``lora.trainable_params``, ``lora.fit_seconds``), so the summary's comparison columns find them
    as they find ``lora.optical_test.mR``.

    Args:
        result: The plan's result (:func:`run_train`).

    Returns:
        The metrics; a count a fit did not report (a reused fit of an older version) is left out.
    """
    def costs(fitted: FitResult) -> dict[str, float]:
        chain = list(fitted.stages.values()) or [fitted]
        numbers = {key: fitted.metrics[key] for key in COST_KEYS if key in fitted.metrics}
        numbers["fit_seconds"] = float(sum(part.seconds for part in chain))
        return numbers

    shown = costs(result)
    for name, fitted in result.ablations.items():
        shown.update({f"{name}.{key}": value for key, value in costs(fitted).items()})
    return shown


def log_plan_costs(cfg: RunConfig, result: FitResult) -> None:
    """Log :func:`plan_costs` into the candidate's MLflow run (with train.ablations only: a plain fit has them)."""
    if not cfg.train.ablations:
        return
    import time

    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    client = tracking_client(resolve_tracking_uri(cfg.mlflow.tracking_uri))
    client.log_batch(result.mlflow_run_id, metrics=[Metric(key, value, stamp, 0)
                                                    for key, value in plan_costs(result).items()])
