"""The ``evaluate`` step: score a model on the run's pinned eval sets and record it in MLflow.

Comparison models (ablations, and the untuned ``base`` with ``evaluate.compare_base``) are scored
on the same prepared sets and logged as ``<name>.<eval set>.<metric>``; the gate scores none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rsvl.config import UNTUNED, RESERVED_NAMES, RunConfig
from rsvl.errors import ConfigError, ModelError
from rsvl.config.evaluate import NAME_PATTERN
from rsvl.evaluate.runner import EvalResult, ModelInput, evaluate_model
from rsvl.mlflow_store import resolve_tracking_uri, tracking_client
from rsvl.evaluate.pinned_data import EvalData, prepare_eval_data

EVAL_DATA_TAG = "eval_data_version"
ARTIFACT_DIR = "evaluation"
COMPARE_DIR = "compare.{name}"
"""A comparison model's report folder inside the candidate's (the dot keeps it apart from eval-set folders)."""


@dataclass(frozen=True)
class Evaluation:
    """An evaluation and the data it ran on.

    Attributes:
        result: Metrics, unavailable metrics with reasons, pictures and reports.
        data: The eval sets scored, their data versions and the skipped ones with reasons.
        compared: Comparison model name → its result on the same sets (empty without comparisons).
    """

    result: EvalResult
    data: EvalData
    compared: dict[str, EvalResult] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """``<eval set>.<metric>`` → value."""
        return self.result.metrics

    @property
    def comparison_metrics(self) -> dict[str, float]:
        """``<comparison model>.<eval set>.<metric>`` → value."""
        return {f"{name}.{key}": value
                for name, result in self.compared.items() for key, value in result.metrics.items()}


def comparison_models(cfg: RunConfig, train_out_dir: str | Path) -> dict[str, Path]:
    """The models the train step saved for ``cfg.train.ablations``, to score beside its model.

    Args:
        cfg: The run config whose train step wrote ``train_out_dir``.
        train_out_dir: The train step's output folder (``model/`` and ``ablations/`` inside).

    Returns:
        Ablation name → its saved model folder, in config order; empty when the config has none.

    Raises:
        ModelError: A configured ablation has no saved model (an interrupted train step), or
            ``ablations/`` holds an entry no configured ablation names (another config's output).
    """
    from rsvl.models.io import CONFIG_NAME
    from rsvl.train.checkpoint import ABLATIONS_DIR, MODEL_DIR

    root = Path(train_out_dir) / ABLATIONS_DIR
    configured = [ablation.name for ablation in cfg.train.ablations]
    strays = sorted(path.name for path in root.iterdir() if path.name not in configured) if root.is_dir() else []
    if strays:
        raise ModelError(f"{root}: {strays} are no ablations of this config (train.ablations: {configured}); "
                         "the train output was written for another config")
    found = {}
    for name in configured:
        model = root / name / MODEL_DIR
        if not (model / CONFIG_NAME).is_file():
            raise ModelError(f"ablation {name!r} of train.ablations: {model} holds no saved model ({CONFIG_NAME} "
                             "missing); the train step did not finish it")
        found[name] = model
    return found


def _recorded_spec(model: ModelInput) -> dict[str, Any]:
    """The ``rsvl`` spec of a saved model folder (read from its config, weights untouched) or a built tuple."""
    if not isinstance(model, (str, Path)):
        # a wrapped (DDP) model keeps rsvl_spec on its .module
        return getattr(getattr(model[0], "module", model[0]), "rsvl_spec", {})
    from rsvl.models.io import saved_spec

    return saved_spec(model)


def base_model(cfg: RunConfig, candidate: ModelInput) -> Any:
    """The model the candidate's fine-tuning started from, which ``base`` scores beside it.

    Built as training builds its start model (see ``docs/evaluation-and-gate.md``); a sensor model
    (CLOSP) is rebuilt tower by tower from the bands and input scaling its spec records.

    Args:
        cfg: The run config the candidate was trained with.
        candidate: The fine-tuned model (saved folder or built tuple).

    Returns:
        The 4-tuple of :func:`rsvl.models.build_model` / :func:`rsvl.models.load_model`.

    Raises:
        ConfigError: ``train.init_from`` holds no saved model, or the candidate is not a fine-tuned ``cfg.model``.
        ModelError: The candidate's config cannot be read.
    """
    import torch

    from rsvl.models import build_model, load_model
    from rsvl.steps.curation_model import start_config
    from rsvl.train.fit import init_weights

    cfg = start_config(cfg)
    if cfg.train.init_from:
        # called for its check only; it raises ConfigError when init_from holds no saved model
        init_weights(cfg.train.init_from)
        return load_model(cfg.train.init_from)
    spec = _recorded_spec(candidate)
    if spec.get("architecture") != cfg.model.name:
        raise ConfigError(f"compare_base: the candidate is a {spec.get('architecture')!r} model, not a fine-tuned "
                          f"model.name {cfg.model.name!r}; its base cannot be rebuilt from this config")
    # seed as training does, so a model without pretrained weights gets the same random init
    if spec.get("sensors"):  # a sensor model (CLOSP): every tower from its recorded bands and input scaling
        from rsvl.models.multisensor import build_sensor_model

        inputs = {sensor: (int(tower["in_bands"]), _recorded_stats(tower)) for sensor, tower in spec["sensors"].items()}
        location = cfg.model.location.model_dump() if cfg.model.location else None
        torch.manual_seed(cfg.train.seed)
        return build_sensor_model(cfg.model.name, cfg.model.pretrained, inputs, image_size=cfg.model.image_size,
                                  location=location)
    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model.name, cfg.model.pretrained, int(spec["in_bands"]), _recorded_stats(spec),
                       image_size=cfg.model.image_size)


def _recorded_stats(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``band_stats`` a recorded tower was built with: its bands and normalisation (``None``: RGB)."""
    bands = spec.get("bands")
    return None if bands is None else {"bands": bands, **spec["normalisation"]}


def comparisons(cfg: RunConfig, candidate: ModelInput, compare: Mapping[str, ModelInput] | None,
                compare_base: bool) -> dict[str, Any]:
    """The comparison models to score beside ``candidate``: ``compare``, then ``base`` with ``compare_base``.

    Args:
        cfg: The run config the candidate was trained with.
        candidate: The fine-tuned model (saved folder or built tuple).
        compare: Other models, name → saved folder or built tuple (usually :func:`comparison_models`).
        compare_base: Add :func:`base_model` of the candidate as ``base``.

    Returns:
        Name → saved folder or built tuple, in that order.

    Raises:
        ConfigError: A name that cannot prefix metric keys, or a given ``base`` beside ``compare_base``.
    """
    models: dict[str, Any] = dict(compare or {})
    sets = {eval_set.name for eval_set in cfg.evaluate.sets}
    for name in models:
        if not re.fullmatch(NAME_PATTERN, name) or name in RESERVED_NAMES or name in sets:
            raise ConfigError(f"comparison model name {name!r} prefixes metric keys: use letters, digits, '_' and "
                              f"'-', and neither {list(RESERVED_NAMES)} nor an eval set name {sorted(sets)}")
    if compare_base:
        if UNTUNED in models:
            raise ConfigError(f"comparison model {UNTUNED!r} is given and compare_base adds another {UNTUNED!r}; rename it")
        models[UNTUNED] = base_model(cfg, candidate)
    return models


def log_evaluation(tracking_uri: str, run_id: str, evaluation: Evaluation, prefix: str = "",
                   artifact_dir: str = ARTIFACT_DIR, fingerprint: str | None = None) -> None:
    """Log an evaluation into an MLflow run: metrics (comparisons' too), data versions, reports, pictures.

    Args:
        tracking_uri: The tracking store.
        run_id: The run to log into.
        evaluation: What :func:`run_evaluation` returned.
        prefix: Put before every metric key (the gate logs ``candidate.`` and ``champion.``).
        artifact_dir: Artifact folder for the report, the details JSON and the pictures.
        fingerprint: Tag the run with it (:data:`rsvl.steps.recorded_scores.FINGERPRINT_TAG`), so
            the gate may reuse these scores; only with the default ``prefix`` and ``artifact_dir``.
    """
    from mlflow.entities import Metric, RunTag

    client = tracking_client(resolve_tracking_uri(tracking_uri))
    values = {**evaluation.metrics, **evaluation.comparison_metrics}
    metrics = [Metric(f"{prefix}{key}", float(value), 0, 0) for key, value in values.items()]
    tags = [RunTag(f"{EVAL_DATA_TAG}.{name}", version) for name, version in evaluation.data.versions.items()]
    # MLflow refuses tag values past its length limit (5000 characters on older stores)
    tags += [RunTag(f"eval_skipped.{name}", reason[:5000]) for name, reason in evaluation.data.skipped.items()]
    tags += [RunTag(EVAL_DATA_TAG, evaluation.data.version()[:5000])]
    if fingerprint is not None:
        if prefix or artifact_dir != ARTIFACT_DIR:
            raise ValueError("a fingerprint marks the evaluation logged unprefixed under "
                             f"{ARTIFACT_DIR!r}; the gate reads the scores from there")
        from rsvl.steps.recorded_scores import FINGERPRINT_TAG

        tags.append(RunTag(FINGERPRINT_TAG, fingerprint))
    # log_batch takes at most 1000 metrics per call
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start:start + 500])
    client.log_batch(run_id, tags=tags)
    client.log_artifacts(run_id, str(evaluation.result.report_md.parent), artifact_path=artifact_dir)


def run_evaluation(
    cfg: RunConfig,
    model: Any,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    mlflow_run_id: str | None = None,
    title: str | None = None,
    eval_data: EvalData | None = None,
    compare: Mapping[str, ModelInput] | None = None,
    compare_base: bool = False,
) -> Evaluation:
    """Score ``model`` on ``cfg.evaluate.sets`` and, given a run id, log everything into that MLflow run.

    Args:
        cfg: The run config (eval sets, cache, Java metrics switch, tracking store).
        model: A saved model folder, or the tuple :func:`rsvl.models.build_model` returns.
        out_dir: Receives the reports, ``evaluation.json``, pictures and ``compare.<name>/`` folders.
        data_root: Where relative eval datasets live (default ``cfg.data.root``).
        mlflow_run_id: Log metrics, data versions and the report folder into this run.
        title: Report title.
        eval_data: Eval sets already prepared (the gate scores two models on the same ones).
        compare: Other models to score on the same sets, name → saved folder or built tuple.
        compare_base: Also score :func:`base_model` of ``model`` as ``base`` (never by the gate).

    Returns:
        The :class:`Evaluation`, comparison results in ``compared``.

    Raises:
        DataError: Eval data missing, modified or not the pinned version.
        ModelError: A model cannot be loaded or cannot do a task asked of it.
        ConfigError: A comparison name that cannot prefix metric keys.
    """
    if cfg.evaluate.java_metrics and any("captioning" in s.tasks for s in cfg.evaluate.sets):
        from rsvl.evaluate.captioning import start_meteor

        start_meteor()  # its JVM loads its tables while the data and models load and captions generate
    data = eval_data or prepare_eval_data(cfg, data_root)
    others = comparisons(cfg, model, compare, compare_base)
    heading = title or f"{cfg.paper} evaluation"
    out = Path(out_dir)
    settings = dict(data_root=data_root or cfg.data.root, batch_size=cfg.evaluate.batch_size,
                    java_metrics=cfg.evaluate.java_metrics)
    # comparisons first: the candidate's report opens with their metrics table
    compared = {name: evaluate_model(other, data.sets, out / COMPARE_DIR.format(name=name),
                                     title=f"{heading}: {name} (comparison)", **settings)
                for name, other in others.items()}
    result = evaluate_model(model, data.sets, out, title=heading,
                            compared={name: scored.metrics for name, scored in compared.items()}, **settings)
    evaluation = Evaluation(result, data, compared)
    if mlflow_run_id is not None:
        fingerprint = None
        if isinstance(model, (str, Path)):  # a saved folder: the gate may reuse these scores for its version
            from rsvl.steps.recorded_scores import score_fingerprint

            fingerprint = score_fingerprint(cfg, model, data)
        log_evaluation(cfg.mlflow.tracking_uri, mlflow_run_id, evaluation, fingerprint=fingerprint)
    return evaluation
