"""Typed run configuration: section models, YAML layering and tracks. Depends on pydantic, OmegaConf and PyYAML only.

Feature packages import their sections from here (``rsvl.config.train``, ``rsvl.config.caption``, ...);
this package imports none of them, so ``import rsvl.config`` loads neither torch nor any feature code.
Modules: :mod:`~rsvl.config.base` (``StrictModel``), one module per section, :mod:`~rsvl.config.run`
(``RunConfig``), :mod:`~rsvl.config.loading` (layers, overrides, tracks, explain) and
:mod:`~rsvl.config.plan` (the fit names of a training plan).
"""

from rsvl.config.base import StrictModel
from rsvl.config.caption import CaptionConfig, ChatEndpoint
from rsvl.config.cluster import KubeRayConfig
from rsvl.config.curation import CaptionerConfig, CurationConfig, CurationFit, Rs5mCaptionSettings
from rsvl.config.data import CaptionRules, DataConfig, DataSource
from rsvl.config.evaluate import EvalSet, EvalSource, EvaluateConfig, load_eval_sets
from rsvl.config.gate import GateConfig
from rsvl.config.loading import (
    Layer,
    apply_overrides,
    configure_track,
    deep_merge,
    explain,
    format_explain,
    load_config,
    load_tracks,
    merge_layers,
    parse_overrides,
    track_names,
    track_overrides,
    tracks_json,
    write_config_file,
)
from rsvl.config.plan import ablation_stages, fit_run_names, stage_run_name
from rsvl.config.run import (
    UNTUNED,
    MAIN_TRACK,
    PAPERS,
    PROFILES,
    RESERVED_NAMES,
    SHARED_KEYS,
    OVERLAY_REPLACES,
    LocationConfig,
    MlflowConfig,
    ModelConfig,
    RegistryConfig,
    RunConfig,
)
from rsvl.config.train import AblationConfig, EbaConfig, ObjectiveConfig, StageConfig, TrainableConfig, TrainConfig
from rsvl.config.search import SearchConfig
from rsvl.config.vqa import VqaConfig

__all__ = [
    "UNTUNED", "MAIN_TRACK", "PAPERS", "PROFILES", "RESERVED_NAMES", "SHARED_KEYS", "OVERLAY_REPLACES",
    "AblationConfig", "EbaConfig", "CaptionConfig", "CaptionerConfig", "CurationConfig", "CurationFit", "Rs5mCaptionSettings", "CaptionRules", "ChatEndpoint", "DataConfig", "DataSource", "EvalSet", "EvalSource",
    "EvaluateConfig", "GateConfig", "KubeRayConfig", "Layer", "LocationConfig", "MlflowConfig", "ModelConfig", "ObjectiveConfig",
    "RegistryConfig", "RunConfig", "SearchConfig", "StageConfig", "StrictModel", "TrainConfig", "TrainableConfig", "VqaConfig",
    "ablation_stages", "apply_overrides", "configure_track", "deep_merge", "explain", "fit_run_names",
    "format_explain", "load_config", "load_eval_sets", "load_tracks", "merge_layers", "parse_overrides",
    "stage_run_name", "track_names", "track_overrides", "tracks_json", "write_config_file",
]
