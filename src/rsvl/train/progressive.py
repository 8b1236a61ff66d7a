"""Progressive transfer (``train.stages``) and its control runs (``train.ablations``), one fit per stage.

:func:`train_plan` runs the stages in order (SAR-RS-CLIP: optical pairs, then SAR pairs), each a
:func:`rsvl.train.fit` of its own starting from the previous stage's model; each ablation then
trains only its named stages with the progression's step budget. Every fit's name and identity is
checked first (:func:`check_plan`), and finished fits are reused. MLflow runs are tagged
:data:`STAGE_TAG`, :data:`PROGRESSION_TAG` and :data:`ABLATION_TAG`. Output folder layout and
details: ``docs/training.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from rsvl.config import RunConfig, StageConfig, deep_merge
from rsvl.data.dataset import ManifestDataset
from rsvl.errors import ConfigError, DataError
from rsvl.train.checkpoint import ABLATIONS_DIR
from rsvl.train.data import image_inputs, saved_in_bands, tower_bands_after
from rsvl.train.fit import (
    CONFIG_ARTIFACT,
    FitResult,
    absolute_init_from,
    check_fit_setup,
    check_run_name,
    fit,
    new_run_name,
    ray_session,
    run_folder,
    storage_uri,
)
from rsvl.train.identity import check_relaunch, fit_identity, init_weights
from rsvl.config.plan import STAGE_SOURCES_DIR, ablation_stages, stage_dataset, stage_run_name  # noqa: F401

STAGES_DIR = "stages"
STAGE_TAG = "rsvl.stage"
PROGRESSION_TAG = "rsvl.progression"
ABLATION_TAG = "rsvl.ablation"
PENDING_START = "<previous stage's model>"
"""``train.init_from`` of a later stage's config checked before its previous stage trained (never read)."""


@dataclass(frozen=True)
class PlannedFit:
    """One fit of a plan, as known before any fit trains.

    Attributes:
        name: Its run name (``<run>-<stage>`` or ``<run>-<ablation>-<stage>``).
        cfg: Its config (:func:`stage_config`).
        dataset: Its training data.
        start_known: Whether its start weights are known yet (a chain's first fit).
    """

    name: str
    cfg: RunConfig
    dataset: Path
    start_known: bool


def stage_out_dir(folder: Path, stages: Sequence[StageConfig], index: int) -> Path:
    """Where fit ``index`` of a chain of stages writes: the last into ``folder``, earlier ones under ``stages/``."""
    return folder if index == len(stages) - 1 else folder / STAGES_DIR / stages[index].name


def ablation_budget(steps: Mapping[str, int], total: int) -> dict[str, int]:
    """Share ``total`` steps among stages in proportion to ``steps``, summing to ``total`` exactly.

    Each stage gets its floor share; the steps left over go to the largest remainders (ties to
    the earlier stage).

    Args:
        steps: Steps each stage did in the progression, in the ablation's order.
        total: The progression's total steps.
    """
    weight = sum(steps.values())
    shares = {name: total * count // weight for name, count in steps.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(steps, key=lambda name: -(total * steps[name] % weight))
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares


def ablation_steps(cfg: RunConfig, name: str, steps: Mapping[str, int]) -> dict[str, int]:
    """The steps each stage of ablation ``name`` runs, by its ``budget`` rule.

    Args:
        cfg: The plan's config.
        name: The ablation.
        steps: Steps each stage of the progression does (planned or done).

    Returns:
        Stage name → steps, for the ablation's stages.
    """
    ablation = next(item for item in cfg.train.ablations if item.name == name)
    chosen = {stage.name: steps[stage.name] for stage in ablation_stages(cfg, name)}
    return chosen if ablation.budget == "stages" else ablation_budget(chosen, sum(steps.values()))


def stage_config(cfg: RunConfig, stage: StageConfig, init_from: str | Path | None,
                 max_steps: int | None = None, ablation: str | None = None) -> RunConfig:
    """The config of one stage's fit: a plain fit (no stages) with the stage's dataset, length and rate.

    Args:
        cfg: The plan's resolved config.
        stage: The stage.
        init_from: The model folder it starts from (``None``: a fresh ``cfg.model``).
        max_steps: An ablation's share of the budget, replacing the stage's own length.
        ablation: The ablation this fit belongs to: its ``objective``, ``trainable``, ``lr`` and
            ``model``, when set, replace the run's.
    """
    train = cfg.train
    if max_steps is not None:
        epochs, steps = train.epochs, max_steps
    elif stage.epochs is not None or stage.max_steps is not None:
        epochs, steps = stage.epochs or train.epochs, stage.max_steps
    else:
        epochs, steps = train.epochs, train.max_steps
    update = {
        "epochs": epochs, "max_steps": steps, "lr": stage.lr or train.lr, "dataset": stage.dataset or train.dataset,
        "init_from": str(init_from) if init_from is not None else None, "stages": [], "ablations": [],
    }
    control = next((item for item in train.ablations if item.name == ablation), None)
    if control is not None and control.lr is not None:
        update["lr"] = control.lr
    values = deep_merge(cfg.model_dump(mode="json"), {"train": update})
    # a fit has no ablations, so no summary ladder naming them
    values["evaluate"]["ladder"] = []
    if control is not None and control.objective is not None:  # replaced whole: no EBA or KER setting leaks in
        values["train"]["objective"] = control.objective.model_dump(mode="json")
    if control is not None and control.trainable is not None:  # replaced whole: no adapter setting leaks in
        values["train"]["trainable"] = control.trainable.model_dump(mode="json")
    if control is not None and control.model is not None:  # replaced whole: the control's own architecture
        values["model"] = control.model.model_dump(mode="json")
    return RunConfig.model_validate(values)


def _chains(cfg: RunConfig) -> list[tuple[str | None, list[StageConfig]]]:
    """The plan's chains of stages: the progression (``None``), then each ablation by name."""
    return [(None, list(cfg.train.stages))] + [(item.name, ablation_stages(cfg, item.name))
                                              for item in cfg.train.ablations]


def _check_bands(cfg: RunConfig, datasets: Mapping[str, Path]) -> None:
    """Every chain's data must fit the image tower as each stage leaves it.

    The first stage's data (or ``train.init_from``) decides the tower; an RGB tower narrowed to one
    band with band statistics stays narrowed for the stages after.
    """
    column = cfg.train.image_column
    if cfg.train.sensors:  # each sensor's tower is built for, and checked against, its own rows (rsvl.train.fit)
        return
    if cfg.train.init_from:
        init_weights(cfg.train.init_from)
        start = saved_in_bands(cfg.train.init_from)
    else:
        start = image_inputs(ManifestDataset(next(iter(datasets.values())), split="train"), column)[0]
    for _, stages in _chains(cfg):
        in_bands = start
        for stage in stages:
            path = datasets[stage.name]
            in_bands = tower_bands_after(ManifestDataset(path, split="train"), column, in_bands,
                                         f"train.stages {stage.name!r} ({path}, {column!r})")


def planned_steps(cfg: RunConfig, dataset_dir: Path) -> int:
    """The optimizer steps a fit of ``cfg`` on ``dataset_dir`` does (``rsvl.train.loop``'s rule).

    Raises:
        DataError: The data holds fewer training samples than one global batch.
    """
    train = cfg.train
    split = ManifestDataset(dataset_dir, split="train", load_media=False)
    # a sensor model's epoch is as long as its sensor with the fewest rows allows (rsvl.train.data.EpochBatches)
    rows = min(len(split.with_media(sensor)) for sensor in train.sensors) if train.sensors else len(split)
    global_batch = train.batch_size * max(train.num_workers, 1)
    if rows < global_batch:
        raise DataError(f"{dataset_dir}: {rows} training samples are fewer than one global batch ({global_batch}); "
                        "lower train.batch_size")
    return train.max_steps or train.epochs * (rows // global_batch)


def planned_fits(cfg: RunConfig, datasets: Mapping[str, Path], run_name: str) -> list[PlannedFit]:
    """Every fit of the plan, in training order, with its config as far as it is known before training.

    An ablation's step budget is computed from the progression's planned steps (what it will do);
    a chain's later fits start from a model not written yet (:data:`PENDING_START`).
    """
    steps = {stage.name: planned_steps(stage_config(cfg, stage, None), datasets[stage.name])
             for stage in cfg.train.stages}
    fits: list[PlannedFit] = []
    for ablation, stages in _chains(cfg):
        budget = ablation_steps(cfg, ablation, steps) if ablation else None
        for index, stage in enumerate(stages):
            start = cfg.train.init_from if index == 0 else PENDING_START
            stage_cfg = stage_config(cfg, stage, start, budget[stage.name] if budget else None, ablation)
            fits.append(PlannedFit(stage_run_name(run_name, stage.name, ablation), stage_cfg, datasets[stage.name],
                                   index == 0))
    return fits


def check_plan(cfg: RunConfig, datasets: Mapping[str, Path], run_name: str) -> list[PlannedFit]:
    """Check every fit of the plan before the first one trains.

    Each fit needs a valid name that no other fit of the plan has, usable data, and a name either
    new or launched before with the same identity (so it resumes or is reused). A later fit's start weights are not known yet; they are checked when it starts.

    Raises:
        ConfigError: A fit name is malformed, two fits share a name, or a name was launched with
            another config or data (the message names the fit and what changed).
        DataError: A fit's data has an empty split or fewer samples than one batch.
    """
    fits = planned_fits(cfg, datasets, run_name)
    storage = storage_uri(cfg.train.storage_path)
    first = datasets[cfg.train.stages[0].name]
    seen: set[str] = set()
    for planned in fits:
        check_run_name(planned.name)
        if planned.name in seen:
            raise ConfigError(f"plan {run_name!r}: two of its fits are named {planned.name!r}; rename a stage or "
                              "an ablation")
        seen.add(planned.name)
        check_fit_setup(planned.cfg, planned.dataset)
    for planned in fits:
        identity = fit_identity(planned.cfg, planned.dataset, first, start_known=planned.start_known)
        check_relaunch(*run_folder(storage, planned.name), planned.name, planned.cfg, identity)
    return fits


def _chain(cfg: RunConfig, stages: Sequence[StageConfig], datasets: Mapping[str, Path], folder: Path,
           run_name: str, tags: Mapping[str, str], budget: Mapping[str, int] | None = None,
           ablation: str | None = None) -> dict[str, FitResult]:
    """Fit ``stages`` in order, each from the previous one's model; return the fits by stage."""
    first = datasets[cfg.train.stages[0].name]
    init_from: str | Path | None = cfg.train.init_from
    fits: dict[str, FitResult] = {}
    for index, stage in enumerate(stages):
        stage_cfg = stage_config(cfg, stage, init_from, budget[stage.name] if budget else None, ablation)
        result = fit(stage_cfg, datasets[stage.name], stage_out_dir(folder, stages, index),
                     run_name=stage_run_name(run_name, stage.name, ablation), inputs_from=first,
                     tags={**tags, STAGE_TAG: stage.name})
        fits[stage.name] = replace(result, stage=stage.name)
        init_from = result.model_dir
    return fits


def train_plan(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path, run_name: str | None = None) -> FitResult:
    """Train ``cfg``: one fit, or with ``train.stages`` the progression and then its ablations.

    Args:
        cfg: The resolved run config.
        dataset_dir: The run's dataset (a stage without ``dataset`` trains on it).
        out_dir: Receives ``model/`` and ``config.json`` (and ``stages/``, ``ablations/``).
        run_name: Resume or name the plan (default: a new unique name); re-running a name reuses
            the fits that finished.

    Returns:
        Without stages, the fit's :class:`FitResult`; with stages, the last stage's, carrying
        every stage's fit in ``stages`` and every ablation's last fit in ``ablations``.

    Every fit of the plan is checked before the first one trains (:func:`check_plan`).

    Raises:
        DataError: A stage's dataset is missing, has an empty split, or its bands do not fit the tower.
        ConfigError: A fit name is malformed, clashes, or was launched with another config or data;
            else as :func:`rsvl.train.fit` raises it.
        TrainError: As :func:`rsvl.train.fit` raises it.
    """
    if not cfg.train.stages:
        return fit(cfg, dataset_dir, out_dir, run_name=run_name)
    run_name = run_name or new_run_name(cfg.paper)
    cfg = absolute_init_from(cfg)
    out_dir = Path(out_dir).resolve()
    stages = cfg.train.stages
    datasets = {stage.name: stage_dataset(cfg, stage, dataset_dir).resolve() for stage in stages}
    _check_bands(cfg, datasets)
    check_plan(cfg, datasets, run_name)
    with ray_session(cfg):  # one Ray start-up for every stage and ablation
        return _train_checked_plan(cfg, datasets, out_dir, run_name)


def _train_checked_plan(cfg: RunConfig, datasets: Mapping[str, Path], out_dir: Path, run_name: str) -> FitResult:
    """Fit the progression, then each ablation on its share of the budget (the plan is already checked)."""
    stages = cfg.train.stages
    tags = {PROGRESSION_TAG: run_name}
    progression = _chain(cfg, stages, datasets, out_dir, run_name, tags)
    (out_dir / CONFIG_ARTIFACT).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2), encoding="utf-8")
    ablations: dict[str, FitResult] = {}
    for ablation in cfg.train.ablations:
        chosen = ablation_stages(cfg, ablation.name)
        budget = ablation_steps(cfg, ablation.name, {name: result.steps for name, result in progression.items()})
        fits = _chain(cfg, chosen, datasets, out_dir / ABLATIONS_DIR / ablation.name, run_name,
                      {**tags, ABLATION_TAG: ablation.name}, budget, ablation.name)
        ablations[ablation.name] = replace(list(fits.values())[-1], stages=fits)
    return replace(list(progression.values())[-1], stages=progression, ablations=ablations)
