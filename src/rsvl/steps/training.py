"""The ``train`` step: a fit on this machine (``train.backend: local``) or as a KubeRay RayJob (``kuberay``).

On ``kuberay`` the step copies the dataset and the resolved config to the shared volume
(``train.kuberay.shared_mount_path/pipeline-runs/<run name>``), submits a RayJob whose head runs
the same ``rsvl train`` there (:mod:`rsvl.cluster`), follows it to the end, copies the model back
into the step's output folder and reads the fit's numbers from its MLflow run. A RayJob that fails
is deleted and the error says how to resume (same run name: the checkpoints are on the volume).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rsvl.config import RunConfig, write_config_file
from rsvl.errors import TrainError
from rsvl.mlflow_store import resolve_tracking_uri
from rsvl.train.checkpoint import MODEL_DIR
from rsvl.train.fit import CONFIG_ARTIFACT, FitResult, fit, new_run_name
from rsvl.train.tracking import RUN_NAME_TAG

RUNS_DIR = "pipeline-runs"
log = logging.getLogger("rsvl.steps.train")


def summary_metrics(result: FitResult) -> dict[str, float]:
    """The numbers a run's UI shows for a fit: held-out retrieval before/after, steps, seconds."""
    shown = {f"untrained_{k}": v for k, v in result.baseline.items()}
    shown.update({k: v for k, v in result.metrics.items() if k not in ("step", "epoch")})
    shown.update(steps=float(result.steps), fit_seconds=result.seconds)
    return shown


def fit_result_from_mlflow(cfg: RunConfig, run_name: str, model_dir: Path, seconds: float) -> FitResult:
    """Rebuild a fit's :class:`FitResult` from its MLflow run (a fit that ran elsewhere, e.g. in a RayJob).

    Raises:
        TrainError: No MLflow run carries ``run_name``.
    """
    from mlflow import MlflowClient

    client = MlflowClient(resolve_tracking_uri(cfg.mlflow.tracking_uri))
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
                              max_results=1) if experiment else []
    if not runs:
        raise TrainError(f"run {run_name!r} finished but left no MLflow run in experiment {cfg.mlflow.experiment!r}")
    run = runs[0]
    split = cfg.train.eval_split
    metrics = {k: v for k, v in run.data.metrics.items() if k == "loss" or (split and k.startswith(f"{split}_"))}
    baseline = {}
    for key in [k for k in metrics if split and k.startswith(f"{split}_")]:
        first = min(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        if first.step == 0:
            baseline[key] = first.value
    steps = max((m.step for m in client.get_metric_history(run.info.run_id, "loss")), default=0)
    return FitResult(run_name=run_name, mlflow_run_id=run.info.run_id, model_dir=model_dir, steps=int(steps),
                     metrics=metrics, baseline=baseline, seconds=seconds)


def _train_on_kuberay(cfg: RunConfig, dataset_dir: Path, out_dir: Path, run_name: str, api_client=None) -> FitResult:
    from rsvl.cluster.rayjob import build_rayjob, resolve_image
    from rsvl.cluster.submit import submit_rayjob

    kuberay = cfg.train.kuberay
    shared = Path(kuberay.shared_mount_path) / RUNS_DIR / run_name
    dataset = shared / "dataset"
    if dataset.exists():
        shutil.rmtree(dataset)
    shutil.copytree(dataset_dir, dataset)
    config_file = write_config_file(cfg, shared / "config.yaml")
    manifest = build_rayjob(cfg, kuberay, run_name=run_name, config_path=str(config_file), dataset=str(dataset),
                            out_dir=str(shared / "out"), image=resolve_image(kuberay))
    outcome = submit_rayjob(manifest, kuberay, api_client=api_client, on_status=log.info)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_DIR, CONFIG_ARTIFACT):
        source, target = Path(outcome.out_dir) / name, out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    return fit_result_from_mlflow(cfg, run_name, out_dir / MODEL_DIR, outcome.seconds)


def run_train(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path, run_name: str | None = None,
              *, api_client=None) -> FitResult:
    """Fit ``cfg.model`` on ``dataset_dir``; the model lands in ``out_dir/model``.

    Args:
        cfg: The run config (``train.backend`` says where the fit runs).
        dataset_dir: The filtered training dataset.
        out_dir: Receives ``model/`` and ``config.json``.
        run_name: Resume or name the run (default: a new unique name).
        api_client: ``kuberay`` only: a ``kubernetes.client.ApiClient`` (default: in-cluster or kubeconfig).

    Returns:
        The :class:`rsvl.train.FitResult`.

    Raises:
        TrainError: The fit (or its RayJob) failed; the message says how to resume.
        ConfigError: The config cannot run on the chosen backend.
    """
    run_name = run_name or new_run_name(cfg.paper)
    if cfg.train.backend == "kuberay":
        return _train_on_kuberay(cfg, Path(dataset_dir), Path(out_dir), run_name, api_client)
    return fit(cfg, dataset_dir, out_dir, run_name=run_name)
