"""The ``train`` step: a fit on this machine (``train.backend: local``) or as a KubeRay RayJob (``kuberay``)."""

from __future__ import annotations

from pathlib import Path

from rsvl.config import RunConfig
from rsvl.errors import ConfigError
from rsvl.train.fit import FitResult, fit


def summary_metrics(result: FitResult) -> dict[str, float]:
    """The numbers a run's UI shows for a fit: held-out retrieval before/after, steps, seconds."""
    shown = {f"untrained_{k}": v for k, v in result.baseline.items()}
    shown.update({k: v for k, v in result.metrics.items() if k not in ("step", "epoch")})
    shown.update(steps=float(result.steps), fit_seconds=result.seconds)
    return shown


def run_train(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path, run_name: str | None = None) -> FitResult:
    """Fit ``cfg.model`` on ``dataset_dir``; the model lands in ``out_dir/model``.

    Args:
        cfg: The run config.
        dataset_dir: The filtered training dataset.
        out_dir: Receives ``model/`` and ``config.json``.
        run_name: Resume or name the run (default: a new unique name).

    Returns:
        The :class:`rsvl.train.FitResult`.
    """
    if cfg.train.backend == "kuberay":
        raise ConfigError(
            "train.backend kuberay: the pipeline's train step does not submit RayJobs yet (the builder and "
            "submitter are rsvl.cluster.build_rayjob / submit_rayjob); run with train.backend=local"
        )
    return fit(cfg, dataset_dir, out_dir, run_name=run_name)
