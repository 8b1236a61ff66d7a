"""The names of the fits a training plan makes, derived from the config alone (the RayJob builder needs them).

A plan without ``train.stages`` is one fit named after the run; with stages, each stage is a fit
``<run>-<stage>`` and each ablation's stage ``<run>-<ablation>-<stage>`` (see
:mod:`rsvl.train.progressive`). Ray Train checkpoints each fit to ``train.storage_path/<fit name>``.
"""

from __future__ import annotations

from pathlib import Path

from rsvl.config.run import RunConfig
from rsvl.config.train import StageConfig
from rsvl.errors import DataError


def stage_run_name(run_name: str, stage: str, ablation: str | None = None) -> str:
    """The run name of one stage's fit: ``<run>-<stage>``, or ``<run>-<ablation>-<stage>`` in an ablation."""
    return f"{run_name}-{ablation}-{stage}" if ablation else f"{run_name}-{stage}"


def ablation_stages(cfg: RunConfig, name: str) -> list[StageConfig]:
    """The stages of ablation ``name``, in the order the ablation lists them."""
    ablation = next(item for item in cfg.train.ablations if item.name == name)
    by_name = {stage.name: stage for stage in cfg.train.stages}
    return [by_name[stage] for stage in ablation.stages]


def fit_run_names(cfg: RunConfig, run_name: str) -> list[str]:
    """Every fit :func:`rsvl.train.progressive.train_plan` makes under ``run_name`` (each checkpoints to ``storage_path/<name>``).

    The run itself without ``train.stages``; else its stages in order, then each ablation's stages.
    """
    if not cfg.train.stages:
        return [run_name]
    names = [stage_run_name(run_name, stage.name) for stage in cfg.train.stages]
    for ablation in cfg.train.ablations:
        names += [stage_run_name(run_name, stage.name, ablation.name) for stage in ablation_stages(cfg, ablation.name)]
    return names


STAGE_SOURCES_DIR = "stages"


def stage_dataset(cfg: RunConfig, stage: StageConfig, dataset_dir: str | Path | None, *,
                  must_exist: bool = True) -> Path:
    """The dataset a stage trains and is scored on: ``data.root/stage.dataset``, or the run's own.

    A stage with a ``source`` reads the copy the ingest step made in
    ``evaluate.cache_dir/stages/<dataset>`` (:func:`rsvl.steps.data_steps.ensure_stage_data`; the
    ``stages`` folder keeps it apart from the eval sets' copies).

    Args:
        cfg: The plan's config.
        stage: The stage.
        dataset_dir: The run's dataset (a stage without ``dataset`` trains on it).
        must_exist: Raise when the folder is missing.

    Raises:
        DataError: The stage names a dataset folder that does not exist.
    """
    if stage.dataset is None:
        return Path(dataset_dir)
    if stage.source is not None:
        path = Path(cfg.evaluate.cache_dir) / STAGE_SOURCES_DIR / stage.dataset
        where = f"the ingest step's copy of {stage.source.path} in evaluate.cache_dir {cfg.evaluate.cache_dir!r}"
    else:
        path = Path(cfg.data.root) / stage.dataset
        where = f"stage dataset {stage.dataset!r} under data.root {cfg.data.root!r}"
    if must_exist and not path.is_dir():
        raise DataError(f"train.stages {stage.name!r}: its dataset {path} does not exist ({where})")
    return path
