"""The scorer of the data steps: the run's start model, built as configured or fitted once and reused.

The ``caption`` step (``ssl-cap``'s rotation scores) and the ``filter`` step (the funnel's outlier
scores) both read it (:class:`rsvl.config.curation.CurationConfig`). With ``curation.fit`` the run's
``model`` is fitted with the shared trainer (:func:`rsvl.train.fit.fit`), the run's objective and
trainable settings, on ``curation.fit.dataset``; the fit's run name is a digest of everything that
decides it (model, objective, trainable settings, fit settings, dataset version), so a second step,
or a second pipeline run, finds the finished fit and reuses its model instead of training again,
and a changed setting or dataset trains a new one. The fit is an MLflow run of the paper's
experiment, tagged ``rsvl.curation``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from rsvl.config import RunConfig
from rsvl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rsvl.train.fit import FitResult

CURATION_TAG = "rsvl.curation"
CACHE_FOLDER = "curation"
log = logging.getLogger("rsvl.curation")


@dataclass(frozen=True)
class CurationModel:
    """The scorer, ready to embed images and texts.

    Attributes:
        model: The CLIP-like model, in eval mode on CPU.
        preprocess: Its validation preprocessing.
        tokenizer: Its tokenizer.
        source: Where it came from: the fitted model folder, or ``name:pretrained``.
        fit_run_name: Run name of the fit (``None`` when used as built).
    """

    model: nn.Module
    preprocess: Any
    tokenizer: Any
    source: str
    fit_run_name: str | None = None


def _require(cfg: RunConfig):
    if cfg.curation is None:
        raise ConfigError(f"{cfg.paper} ({cfg.profile}): the data steps need a curation model, but the config has "
                          f"no 'curation' section")
    return cfg.curation


def fit_config(cfg: RunConfig) -> RunConfig:
    """The plain-fit config that fits the scorer (``curation.fit`` on the run's ``model``).

    Args:
        cfg: The run config (its ``curation.fit`` is set).

    Returns:
        A config of one fit with the run's model, objective and trainable settings (no adapter):
        no stages, ablations, VQA or curation.
    """
    curation = _require(cfg)
    if curation.fit is None:
        raise ConfigError("curation.fit is not set: the scorer is used as built")
    fit = curation.fit
    values = cfg.model_dump(mode="json")
    values.update(curation=None, vqa=None, gate=None)
    values["train"].update(
        dataset=fit.dataset, epochs=fit.epochs, batch_size=fit.batch_size, lr=fit.lr, warmup_steps=fit.warmup_steps,
        seed=fit.seed, max_steps=None, init_from=None, stages=[], ablations=[], sensors=[], image_column="image",
        schedule="cosine", eval_split=None, eval_baseline=False)
    values["train"]["trainable"]["adapter"] = None
    return RunConfig.model_validate(values)


def fit_run_name(cfg: RunConfig) -> str:
    """The fit's run name: ``<paper>-curation-<digest>`` of the model, the fit settings and the data version.

    Raises:
        DataError: The fit's dataset is not under ``data.root``.
    """
    from rsvl.data.versioning import dataset_version

    curation = _require(cfg)
    dataset = Path(cfg.data.root) / curation.fit.dataset
    if not dataset.is_dir():
        raise DataError(f"curation.fit.dataset {curation.fit.dataset!r}: {dataset} is not a dataset under data.root")
    train = cfg.train
    identity = {"model": cfg.model.model_dump(mode="json"), "fit": curation.fit.model_dump(mode="json"),
                "objective": train.objective.model_dump(mode="json"), "data": dataset_version(dataset),
                "trainable": train.trainable.model_dump(mode="json", exclude={"adapter"})}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.paper.replace('_', '-')}-curation-{digest}"


def fitted_scorer(cfg: RunConfig) -> "FitResult":
    """Fit the scorer with ``curation.fit`` (or find it fitted): its fit, ``model_dir`` the saved model.

    Raises:
        ConfigError: No ``curation.fit``.
        DataError: The fit's dataset is absent.
        TrainError: The fit failed (its message says how to resume).
    """
    from rsvl.train.fit import fit

    curation = _require(cfg)
    if curation.fit is None:
        raise ConfigError("curation.fit is not set: the scorer is used as built")
    run_name = fit_run_name(cfg)
    out_dir = Path(cfg.evaluate.cache_dir) / CACHE_FOLDER / run_name
    log.info("curation scorer: %s fitted on %s (%d epochs; reused when fitted before)", cfg.model.name,
             curation.fit.dataset, curation.fit.epochs)
    return fit(fit_config(cfg), Path(cfg.data.root) / curation.fit.dataset, out_dir, run_name,
               tags={CURATION_TAG: "true"})


def start_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``train.init_from`` at the fitted scorer when ``curation.fit.init_training`` asks for it.

    The train step starts from it and the evaluate step's ``base`` comparison is it, as in the
    cluster profile, where both are the pretrained CLIP. Any other config comes back unchanged.

    Args:
        cfg: A run config.

    Returns:
        The config training and the ``base`` comparison use.
    """
    fit = cfg.curation.fit if cfg.curation is not None else None
    if fit is None or not fit.init_training or cfg.train.init_from:
        return cfg
    train = cfg.train.model_copy(update={"init_from": str(Path(fitted_scorer(cfg).model_dir).resolve())})
    return cfg.model_copy(update={"train": train})


def load_curation_model(cfg: RunConfig) -> CurationModel:
    """The scorer of ``cfg``: its ``model`` fitted (or found fitted) with ``curation.fit``, else built as configured.

    Args:
        cfg: The run config with a ``curation`` section.

    Returns:
        The :class:`CurationModel`, in eval mode.

    Raises:
        ConfigError: No ``curation`` section.
        DataError: The fit's dataset is absent.
        TrainError: The fit failed (its message says how to resume).
    """
    from rsvl.models import build_model, load_model

    curation = _require(cfg)
    if curation.fit is None:
        model, _, preprocess, tokenizer = build_model(cfg.model.name, cfg.model.pretrained,
                                                      image_size=cfg.model.image_size)
        return CurationModel(model.eval(), preprocess, tokenizer, f"{cfg.model.name}:{cfg.model.pretrained}")
    fitted = fitted_scorer(cfg)
    model, _, preprocess, tokenizer = load_model(fitted.model_dir)
    return CurationModel(model.eval(), preprocess, tokenizer, str(fitted.model_dir), fitted.run_name)
