"""Typed run configuration read from ``pipelines/<paper>/config.yaml``.

A config file holds shared ``defaults`` and one partial override per ``profiles`` entry
(``local``: laptop, no cluster; ``cluster``: Kubeflow + KubeRay on GPUs). The chosen profile is
deep-merged over the defaults, dotted ``--set`` overrides are applied last, and the result is
validated by strict, frozen pydantic models so a bad value fails before any work starts, with
the file, the profile, the field path and the rule in the message. ``tracks`` are more models
trained on the same data, each laid over the paper's sections (see :func:`load_config`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rsvl.caption.config import CaptionConfig
from rsvl.cluster.config import KubeRayConfig
from rsvl.errors import ConfigError
from rsvl.evaluate.config import EvalSet
from rsvl.strict import StrictModel
from rsvl.vqa.config import VqaConfig

class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 loader that also reads ``1e-3`` as a float (plain PyYAML reads it as text)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


PAPERS = ("sar_text", "closp", "georsclip", "iebaker", "lrsclip")
MAIN_TRACK = "main"
SHARED_KEYS = ("data", "caption", "train.dataset", "train.image_column")
"""Config keys every track of a paper shares: the pipeline trains every track on the main track's filtered data."""
TRACK_REPLACES = {"gate": None, "model": "name"}
"""Sections a track replaces instead of merging into the paper's, and the key that makes it (``None``: any value).

Promotion rules and a model's settings belong to one model: a track's ``gate`` replaces the
paper's gate, and a track's ``model`` that names an architecture replaces the paper's model
(a CoCa does not inherit the CLIP's ``image_size``)."""
PROFILES = ("local", "cluster")
BASE = "base"
"""The comparison name of the untuned model (``evaluate.compare_base``)."""
RESERVED_NAMES = ("candidate", "champion")
"""Metric prefixes of the gate's run; a comparison model named so would be mistaken for one of its models."""


class CaptionRules(StrictModel):
    """Limits a caption must meet; captions outside them are quarantined by validation."""

    min_words: int = Field(1, ge=1)
    max_words: int = Field(120, ge=1)
    max_chars: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "CaptionRules":
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is greater than max_words ({self.max_words})")
        return self


class DataConfig(StrictModel):
    """Where a run's data comes from and how strictly it is checked."""

    source: Literal["generate", "ingest"] = "generate"
    format: str | None = None
    path: str | None = None
    root: str = "data"
    seed: int = 0
    generate_scale: int = Field(1, ge=1, le=100)
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    captions: CaptionRules = CaptionRules()

    @model_validator(mode="after")
    def _ingest_needs_source(self) -> "DataConfig":
        if self.source == "ingest" and (self.format is None or self.path is None):
            raise ValueError("source 'ingest' needs both 'format' and 'path'")
        return self


class ModelConfig(StrictModel):
    """Which registered architecture to build, with which weights and input size."""

    name: str
    pretrained: str | None = None
    image_size: int | None = Field(None, gt=0)


class ObjectiveConfig(StrictModel):
    """The training loss (``rsvl.train.objectives``) and its settings.

    ``logit_scale`` is the contrastive scale (1 / temperature): the initial value when
    ``learn_logit_scale`` is true, the fixed value otherwise; ``None`` keeps the model's own.
    """

    name: str = "clip"
    learn_logit_scale: bool = True
    logit_scale: float | None = Field(None, gt=0.0, le=100.0)
    contrastive_weight: float = Field(1.0, ge=0.0)
    caption_weight: float = Field(2.0, ge=0.0)


TowerMode = Literal["train", "freeze", "projection", "last_blocks"]


class TrainableConfig(StrictModel):
    """Which parameters train: per tower all, none, only its projection, or its last blocks.

    ``adapter`` names a hook registered with ``rsvl.train.trainable.register_adapter`` (LoRA and
    similar), applied after the tower modes.
    """

    image_tower: TowerMode = "train"
    text_tower: TowerMode = "train"
    last_blocks: int = Field(1, ge=1)
    adapter: str | None = None


NAME = r"^[A-Za-z0-9_-]{1,64}$"
PLAN_NAME = r"^[A-Za-z0-9_]{1,64}$"
"""Stage and ablation names: no ``-``, because fit names join them with it (``<run>-<stage>``,
``<run>-<ablation>-<stage>``) and ``a-b`` would make two plans' fits share a name."""


class StageConfig(StrictModel):
    """One stage of progressive transfer (``train.stages``): a fit that starts from the previous stage's weights.

    ``dataset`` is a dataset directory relative to ``data.root`` (the optical pairs of
    SAR-RS-CLIP's stage 1; no leading ``/`` and no ``..``, since the cluster's train step copies
    it); ``None`` is the run's own dataset (the pipeline's filtered data).

    A stage's length: with neither ``epochs`` nor ``max_steps`` set it runs as ``train`` says
    (``train.max_steps`` when set, else ``train.epochs``). Setting either replaces *both* train
    values for this stage: ``epochs`` alone runs that many epochs (``train.max_steps`` does not
    cap it), ``max_steps`` runs that many steps. So a run-wide ``train.epochs`` or
    ``train.max_steps`` (the pipeline's ``epochs`` run parameter, ``--set``) does not reach a
    stage that sets its own length: override ``train.stages`` instead. In an ablation the
    stage's share of the step budget replaces its length. ``lr`` replaces ``train.lr`` for this
    stage only.
    """

    name: str = Field(pattern=PLAN_NAME)
    dataset: str | None = Field(None, min_length=1)
    epochs: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0.0)

    @field_validator("dataset")
    @classmethod
    def _under_data_root(cls, dataset: str | None) -> str | None:
        if dataset is not None and (dataset.startswith(("/", "\\")) or ".." in PurePosixPath(dataset).parts):
            raise ValueError(f"stage dataset {dataset!r} must be a relative path under data.root "
                             "(no leading '/', no '..' component)")
        return dataset


class AblationConfig(StrictModel):
    """A control run (``train.ablations``): only the named stages, from the same starting weights,
    with the whole progression's step budget (steps shared in proportion to the stages' own).

    SAR-RS-CLIP's "SAR only" run is ``{name: sar_only, stages: [sar]}``. Its model is scored on the
    same eval sets as the candidate and reported beside it.
    """

    name: str = Field(pattern=PLAN_NAME)
    stages: list[str] = Field(min_length=1)


class TrainConfig(StrictModel):
    """Optimisation, resources, checkpointing and evaluation of the train step.

    ``batch_size`` is per worker; ``max_steps`` (when set) replaces ``epochs``. Checkpoints go to
    ``storage_path/<run name>`` every ``checkpoint_every`` steps and metrics to MLflow every
    ``log_every`` steps. ``dataset`` is the dataset directory under ``data.root``; ``image_column``
    the media column the image tower reads. ``eval_split`` is scored for retrieval before (when
    ``eval_baseline``) and after training; ``None`` skips it. ``num_workers: 0`` runs Ray Train's
    local mode: one worker inside the launching process, no Ray instance (see ``rsvl.train.fit``).
    ``backend`` says where the pipeline's train step fits: ``local`` in its own process (a laptop,
    or the step's pod), ``kuberay`` as a KubeRay RayJob on the cluster's GPU nodes.
    """

    epochs: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.1, ge=0.0)
    warmup_steps: int = Field(0, ge=0)
    num_workers: int = Field(1, ge=0)
    backend: Literal["local", "kuberay"] = "local"
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    seed: int = 0
    max_steps: int | None = Field(None, gt=0)
    grad_clip_norm: float | None = Field(1.0, gt=0.0)
    amp: bool = True
    tf32: bool = True
    loader_workers: int = Field(0, ge=0)
    log_every: int = Field(10, gt=0)
    checkpoint_every: int = Field(50, gt=0)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=-1)
    storage_path: str = ".ray_results"
    dataset: str = "default/optical"
    image_column: Literal["image", "s1", "s2"] = "image"
    eval_split: Literal["train", "val", "test"] | None = "test"
    eval_baseline: bool = True
    objective: ObjectiveConfig = ObjectiveConfig()
    trainable: TrainableConfig = TrainableConfig()
    kuberay: KubeRayConfig = KubeRayConfig()
    init_from: str | None = Field(None, min_length=1)
    """A saved model folder (``rsvl.models.save_model``) to start from instead of ``model.pretrained``."""
    stages: list[StageConfig] = []
    ablations: list[AblationConfig] = []

    @model_validator(mode="after")
    def _stages_consistent(self) -> "TrainConfig":
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"train.stages names repeat: {names}")
        controls = [ablation.name for ablation in self.ablations]
        if len(set(controls)) != len(controls):
            raise ValueError(f"train.ablations names repeat: {controls}")
        for ablation in self.ablations:
            unknown = [name for name in ablation.stages if name not in names]
            if unknown:
                raise ValueError(f"ablation {ablation.name!r} names stages {unknown} that train.stages does not define")
            if len(set(ablation.stages)) != len(ablation.stages):
                raise ValueError(f"ablation {ablation.name!r} repeats stages {ablation.stages}: each stage is one fit")
        return self


class MlflowConfig(StrictModel):
    """Tracking server and experiment of a run."""

    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    experiment: str = "rsvl"


class GateConfig(StrictModel):
    """Promotion thresholds; every metric named is "higher is better" (recalls, accuracies, BLEU, ...).

    ``minimums`` are absolute floors the candidate must reach. Against a champion, scored on the
    same pinned data in the same run, the candidate must beat it by more than
    ``min_improvement[m]`` on each metric listed there and may fall behind it by at most
    ``max_regression[m]`` on each metric listed there. With no champion only the minimums apply.
    A gate with no rule at all is refused: promotion always needs a reason.
    """

    minimums: dict[str, float] = {}
    min_improvement: dict[str, float] = {}
    max_regression: dict[str, float] = {}

    @model_validator(mode="after")
    def _has_rules(self) -> "GateConfig":
        if not (self.minimums or self.min_improvement):
            raise ValueError("give gate.minimums or gate.min_improvement: a gate without rules would promote anything")
        for name, table in (("min_improvement", self.min_improvement), ("max_regression", self.max_regression)):
            negative = [metric for metric, value in table.items() if value < 0]
            if negative:
                raise ValueError(f"gate.{name} must be >= 0 (got negative values for {negative})")
        return self


class EvaluateConfig(StrictModel):
    """The evaluate step: pinned eval sets and how to score them.

    ``sets`` are scored by ``rsvl evaluate`` and by the gate (candidate and champion alike).
    Sets with a ``source`` are ingested into ``cache_dir/<name>`` on first use. ``java_metrics``
    lets the caption metrics use Java's PTB tokenizer and METEOR where Java is installed.
    """

    sets: list[EvalSet] = []
    cache_dir: str = "build/eval_data"
    batch_size: int = Field(64, gt=0)
    java_metrics: bool = True
    compare_base: bool = False
    """Also score the untuned model (``model`` with its pretrained weights) and report it beside the candidate."""

    @model_validator(mode="after")
    def _distinct_names(self) -> "EvaluateConfig":
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval set names must be distinct (they prefix metric keys): {names}")
        return self


class RegistryConfig(StrictModel):
    """The register step: the registry name the paper's model is published under."""

    model_name: str = Field("rsvl-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunConfig(StrictModel):
    """A fully resolved configuration for one paper under one profile."""

    paper: Literal["sar_text", "closp", "georsclip", "iebaker", "lrsclip"]
    profile: Literal["local", "cluster"]
    track: str = Field(MAIN_TRACK, pattern=NAME)
    data: DataConfig = DataConfig()
    caption: CaptionConfig = CaptionConfig()
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig | None = None
    registry: RegistryConfig = RegistryConfig()
    mlflow: MlflowConfig = MlflowConfig()
    vqa: VqaConfig | None = None

    @model_validator(mode="after")
    def _ablations_name_comparisons(self) -> "RunConfig":
        sets = {eval_set.name for eval_set in self.evaluate.sets}
        reserved = {*RESERVED_NAMES, *((BASE,) if self.evaluate.compare_base else ())}
        for ablation in self.train.ablations:
            if ablation.name in sets or ablation.name in reserved:
                raise ValueError(f"train.ablations {ablation.name!r} prefixes its metric keys as a comparison model: "
                                 f"it may be neither an eval set name {sorted(sets)} nor one of {sorted(reserved)}")
        return self

    def digest(self) -> str:
        """Return a stable SHA-256 of the resolved config (a lineage tag for registered models)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested dicts merge, other values replace.

    Args:
        base: Lower-priority mapping.
        override: Higher-priority mapping.

    Returns:
        A new merged dict; neither input is modified.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["train.epochs=3", "data.seed=7"]`` into a nested dict; values are parsed as YAML.

    Args:
        items: ``dotted.key=value`` strings.

    Returns:
        A nested override mapping.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = _load_yaml(raw)
    return result


def _format_errors(err: ValidationError, where: str) -> str:
    lines = [f"{where}: {err.error_count()} invalid field(s)"]
    for detail in err.errors():
        path = ".".join(str(p) for p in detail["loc"]) or "(top level)"
        got = detail.get("input")
        shown = "" if isinstance(got, dict) else f" [got {got!r}]"
        lines.append(f"  {path}: {detail['msg']}{shown}")
    return "\n".join(lines)


_MISSING = object()


def _shared_keys(layer: dict[str, Any]) -> list[str]:
    """The :data:`SHARED_KEYS` a partial config sets (a section, or a key inside ``train``)."""
    found = []
    for key in SHARED_KEYS:
        node: Any = layer
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) and part in node else _MISSING
        if node is not _MISSING:
            found.append(key)
    return found



def track_overrides(items: list[str] | tuple[str, ...], track: str, tracks: list[str] | tuple[str, ...]) -> list[str]:
    """The overrides that apply to ``track``: plain ``key=value`` ones and ``<track>:key=value`` ones.

    Args:
        items: Overrides as given (``train.lr=1e-4``, ``captioner:train.epochs=3``).
        track: The track being configured.
        tracks: The paper's track names: a prefix naming none of them is refused (a typo such as
            ``cpationer:`` would otherwise change nothing, silently).

    Returns:
        The overrides for ``track``, prefixes removed.

    Raises:
        ConfigError: A prefix names no track of the paper, or a prefixed override touches a key
            all tracks share (:data:`SHARED_KEYS`).
    """
    chosen = []
    for item in items:
        key, sep, value = item.partition("=")
        if ":" not in key:
            chosen.append(item)
            continue
        prefix, _, dotted = key.partition(":")
        if prefix not in tracks:
            raise ConfigError(f"override {item!r} names track {prefix!r}; the paper's tracks are {list(tracks)}")
        if _shared_keys(parse_overrides([f"{dotted}{sep}{value}"])):
            raise ConfigError(f"override {item!r}: {', '.join(SHARED_KEYS)} are shared by every track; "
                              "override them without a track prefix")
        if prefix == track:
            chosen.append(f"{dotted}{sep}{value}")
    return chosen


def _read_document(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        raw = _load_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    unknown = set(raw) - {"paper", "defaults", "profiles", "tracks"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level keys {sorted(unknown)}; allowed: paper, defaults, profiles, tracks"
        )
    raw["tracks"] = _read_tracks(path, raw.get("tracks"))
    return raw


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a mapping (``None``: empty); anything else is refused naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _read_tracks(path: Path, section: Any) -> dict[str, dict[str, Any]]:
    """Check the ``tracks`` section: ``{track: {defaults, profiles: {local, cluster}}}``, all mappings.

    Returns:
        Track name → ``{"defaults": layer, "profiles": {profile: layer}}``, in file order.

    Raises:
        ConfigError: Naming the file and key: a value is not a mapping, a track is named
            ``main`` or breaks the name pattern, an entry holds other keys than ``defaults`` and
            ``profiles``, a profile is not one of :data:`PROFILES`, or a layer sets a key every
            track shares (:data:`SHARED_KEYS`).
    """
    tracks = {}
    for name, entry in _mapping(section, f"{path}: tracks").items():
        where = f"{path}: tracks.{name}"
        if name == MAIN_TRACK:
            raise ConfigError(f"{where}: {MAIN_TRACK!r} is the paper's own sections; name the track otherwise")
        if not isinstance(name, str) or not re.fullmatch(NAME, name):
            raise ConfigError(f"{where}: a track name is 1-64 letters, digits, '_' or '-'")
        entry = _mapping(entry, where)
        if set(entry) - {"defaults", "profiles"}:
            raise ConfigError(f"{where}: a track holds only 'defaults' and 'profiles', got {sorted(entry)}")
        profiles = _mapping(entry.get("profiles"), f"{where}.profiles")
        unknown = [profile for profile in profiles if profile not in PROFILES]
        if unknown:
            raise ConfigError(f"{where}.profiles: unknown profiles {unknown}; allowed: {list(PROFILES)}")
        layers = {"defaults": _mapping(entry.get("defaults"), f"{where}.defaults")}
        layers.update({f"profiles.{profile}": _mapping(layer, f"{where}.profiles.{profile}")
                       for profile, layer in profiles.items()})
        for key, layer in layers.items():
            shared = _shared_keys(layer)
            if shared:
                raise ConfigError(f"{where}.{key}: sets {shared}, which every track shares (the pipeline trains "
                                  "every track on the same filtered data); set them in the paper's sections")
        tracks[name] = {"defaults": layers["defaults"],
                        "profiles": {profile: layers[f"profiles.{profile}"] for profile in profiles}}
    return tracks


def _lay_track(paper: dict[str, Any], entry: dict[str, Any], profile: str) -> dict[str, Any]:
    """A track's config: its ``defaults`` with its profile merged over them, laid over the paper's resolved sections.

    The track's ``gate``, and its ``model`` when it names one, replace the paper's
    (:data:`TRACK_REPLACES`); every other section merges over the paper's.
    """
    own = deep_merge(entry["defaults"], entry["profiles"].get(profile, {}))
    merged = copy.deepcopy(paper)
    for section, key in TRACK_REPLACES.items():
        value = own.get(section, _MISSING)
        if value is not _MISSING and (key is None or (isinstance(value, dict) and key in value)):
            merged.pop(section, None)
    return deep_merge(merged, own)


def track_names(path: str | Path) -> list[str]:
    """The tracks a paper config defines: ``main`` (the paper's own sections) then ``tracks`` in file order."""
    raw = _read_document(Path(path))
    return [MAIN_TRACK, *raw["tracks"]]


def load_config(
    path: str | Path,
    profile: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    track: str = MAIN_TRACK,
) -> RunConfig:
    """Load, merge and validate a paper config.

    A file may define more models trained on the same data as ``tracks`` (SAR-TEXT's captioner
    beside its CLIP). A track's own config is its ``defaults`` with its profile merged over them;
    it is laid over the paper's resolved sections, where its ``gate`` (in any of its layers)
    replaces the paper's gate and its ``model``, when it sets ``model.name``, replaces the
    paper's model section: promotion rules and model settings belong to one model. Every other
    section merges. The keys every track shares (``data``, ``caption``, ``train.dataset``,
    ``train.image_column``: the pipeline trains all tracks on the main track's filtered data)
    are refused in a track. The whole ``tracks`` section is checked whichever track is loaded.

    Args:
        path: ``pipelines/<paper>/config.yaml``.
        profile: ``local`` or ``cluster``.
        overrides: Dotted ``key=value`` overrides applied last (``<track>:key=value`` for one track;
            these merge like any override, replacing nothing whole).
        track: ``main`` or a name under ``tracks``.

    Returns:
        The validated, frozen :class:`RunConfig`.

    Raises:
        ConfigError: The file is missing or not YAML, the profile or track is unknown, the
            ``tracks`` section is malformed, or a field breaks a rule; the message names the
            file, profile, field path and rule.
    """
    path = Path(path)
    raw = _read_document(path)
    profiles = _mapping(raw.get("profiles"), f"{path}: profiles")
    if profile not in PROFILES:
        raise ConfigError(f"{path}: profile {profile!r} is not one of {PROFILES}")
    if profile not in profiles:
        raise ConfigError(f"{path}: no profile {profile!r}; the file defines {sorted(profiles)}")
    merged = deep_merge(_mapping(raw.get("defaults"), f"{path}: defaults"),
                        _mapping(profiles[profile], f"{path}: profiles.{profile}"))
    names = [MAIN_TRACK, *raw["tracks"]]
    if track not in names:
        raise ConfigError(f"{path}: no track {track!r}; the file defines {names}")
    if track != MAIN_TRACK:
        merged = _lay_track(merged, raw["tracks"][track], profile)
    merged = deep_merge(merged, parse_overrides(track_overrides(overrides, track, names)))
    merged.update(paper=raw.get("paper"), profile=profile, track=track)
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as err:
        where = f"{path} (profile {profile}{'' if track == MAIN_TRACK else f', track {track}'})"
        raise ConfigError(_format_errors(err, where)) from err


def load_tracks(
    path: str | Path, profile: str = "local", overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, RunConfig]:
    """Every track of a paper config, resolved (``main`` first); see :func:`load_config`.

    Raises:
        ConfigError: As :func:`load_config`, or two tracks register under the same
            ``registry.model_name`` (they would share one registry entry and its aliases).
    """
    tracks = {track: load_config(path, profile, overrides, track) for track in track_names(path)}
    owners: dict[str, str] = {}
    for track, cfg in tracks.items():
        name = cfg.registry.model_name
        if name in owners:
            raise ConfigError(f"{path} (profile {profile}): tracks {owners[name]!r} and {track!r} both register as "
                              f"registry.model_name {name!r}; give each track its own (they would share one "
                              "registry entry, its champion and candidate)")
        owners[name] = track
    return tracks


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...],
                    tracks: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply ``dotted.key=value`` overrides to a resolved config (a pipeline run's UI parameters).

    Args:
        cfg: The resolved config.
        overrides: Overrides as for :func:`load_config`; ``<track>:`` ones apply to that track only.
        tracks: The paper's track names; a prefix naming none of them is refused.

    Returns:
        A new validated config.

    Raises:
        ConfigError: An override is malformed, names an unknown track or breaks a rule (the
            message names the field).
    """
    chosen = track_overrides(overrides, cfg.track, tracks)
    merged = deep_merge(cfg.model_dump(mode="json"), parse_overrides(chosen))
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, f"{cfg.paper} config (profile {cfg.profile}, track {cfg.track}) "
                                              f"with {list(overrides)}")) from err


def tracks_json(tracks: dict[str, RunConfig]) -> str:
    """The resolved configs of a paper's tracks as one JSON object ``{track: config}`` (a pipeline parameter)."""
    return json.dumps({name: cfg.model_dump(mode="json") for name, cfg in tracks.items()}, sort_keys=False)


def configure_track(config_json: str, track: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Pick ``track`` out of :func:`tracks_json` output and apply run-time overrides to it.

    Args:
        config_json: ``{track: config}`` as :func:`tracks_json` writes it.
        track: The track to resolve.
        overrides: As for :func:`apply_overrides`; prefixes must name one of the tracks.

    Returns:
        The track's validated config.

    Raises:
        ConfigError: Not such a JSON object, no such track, an override breaks a rule, or it
            adds or removes the ``vqa`` section (the compiled DAG's steps cannot change at run time).
    """
    try:
        tracks = json.loads(config_json)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config_json is not JSON ({err})") from err
    if not isinstance(tracks, dict) or track not in tracks:
        known = list(tracks) if isinstance(tracks, dict) else "none"
        raise ConfigError(f"config_json has no track {track!r} (tracks: {known})")
    try:
        cfg = RunConfig.model_validate_json(json.dumps(tracks[track]))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, f"config_json track {track!r}")) from err
    resolved = apply_overrides(cfg, overrides, list(tracks))
    if (resolved.vqa is None) != (cfg.vqa is None):
        raise ConfigError(f"track {track!r}: overrides {list(overrides)} {'remove' if cfg.vqa else 'add'} the vqa "
                          "section, but the pipeline's steps were fixed when it was compiled; recompile with "
                          "the change (python -m pipelines.run --set ...) instead")
    return resolved


def write_config_file(cfg: RunConfig, path: str | Path) -> Path:
    """Write a resolved config as a ``pipelines/<paper>/config.yaml``-style file that loads back to ``cfg``.

    Everything goes under ``defaults`` with an empty profile of ``cfg.profile`` (and, for a track
    other than ``main``, an empty entry of that track), so
    ``load_config(path, cfg.profile, track=cfg.track)`` returns an equal config (a RayJob's
    ``rsvl train`` reads it).

    Args:
        cfg: The resolved config.
        path: Destination (parent folders are created).

    Returns:
        The path.
    """
    payload = cfg.model_dump(mode="json")
    track = payload.pop("track")
    document = {"paper": payload.pop("paper"), "defaults": payload, "profiles": {payload.pop("profile"): {}}}
    if track != MAIN_TRACK:
        document["tracks"] = {track: {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
