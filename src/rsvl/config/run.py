"""The resolved configuration of one run: every section of one paper, profile and track."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rsvl.config.base import StrictModel
from rsvl.config.caption import CaptionConfig
from rsvl.config.curation import CurationConfig
from rsvl.config.data import DataConfig
from rsvl.config.evaluate import EvaluateConfig
from rsvl.config.gate import GateConfig
from rsvl.config.model import LocationConfig, ModelConfig
from rsvl.config.train import NAME, TrainConfig
from rsvl.config.search import SearchConfig
from rsvl.config.vqa import BASELINES as VQA_BASELINES, CANDIDATE as VQA_CANDIDATE, VqaConfig

PAPERS = ("sar_text", "closp", "georsclip", "iebaker", "lrsclip")
MAIN_TRACK = "main"
SHARED_KEYS = ("data", "caption", "curation", "train.dataset", "train.image_column", "train.sensors")
"""Config keys every track of a paper shares: the pipeline trains every track on the main track's filtered data."""
OVERLAY_REPLACES = {"gate": None, "model": "name"}
"""Sections an overlay replaces instead of merging into, and the key that makes it (``None``: any value).

Promotion rules and a model's settings belong to one model: when a paper file sets ``gate``
(in its defaults or the loaded profile) it replaces the base file's gate, and when it names
``model.name`` it replaces the base's model section (no inherited ``image_size``); a track
does the same over its paper's sections."""
PROFILES = ("local", "cluster")
UNTUNED = "base"
"""The comparison name, and metric prefix, of the untuned start model (``evaluate.compare_base``)."""
RESERVED_NAMES = ("candidate", "champion")
"""Metric prefixes of the gate's run; a comparison model named so would be mistaken for one of its models."""


class MlflowConfig(StrictModel):
    """Tracking server and experiment of a run."""

    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    experiment: str = "rsvl"

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, uri: str) -> str:
        """Refuse ``user:password@`` in the URI: it would reach MLflow params, logs and compiled pipelines."""
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@", uri):
            raise ValueError("tracking_uri holds a password (user:password@host); credentials come only from the "
                             "environment (MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN, "
                             "set from a Kubernetes Secret on the cluster)")
        return uri


class RegistryConfig(StrictModel):
    """The register step: the registry name the paper's model is published under."""

    model_name: str = Field("rsvl-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    description: str | None = Field(None, min_length=1, max_length=5000)
    """The registered model's description in the registry (what it returns, how to use it); ``None``: the
    generic embedder's."""


class RunConfig(StrictModel):
    """A fully resolved configuration for one paper under one profile."""

    paper: Literal["sar_text", "closp", "georsclip", "iebaker", "lrsclip"]
    profile: Literal["local", "cluster"]
    track: str = Field(MAIN_TRACK, pattern=NAME)
    data: DataConfig = DataConfig()
    caption: CaptionConfig = CaptionConfig()
    curation: CurationConfig | None = None
    """RS5M data construction in the caption and filter steps (GeoRSCLIP); ``None``: none."""
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    gate: GateConfig | None = None
    registry: RegistryConfig = RegistryConfig()
    mlflow: MlflowConfig = MlflowConfig()
    vqa: VqaConfig | None = None
    search: SearchConfig | None = None
    """Rebuild the archive search index after a promotion (the DAG's ``index`` step); ``None``: no such step."""

    @model_validator(mode="after")
    def _cluster_data_under_mounts(self) -> "RunConfig":
        """On the cluster, ``data.root`` and ``data.path`` may not climb out with ``..``.

        A relative path may not climb above where it starts, and an absolute path with ``..`` in it
        must end inside a mounted volume; a plain absolute path is allowed (a KubeRay run from a
        laptop copies its local data root to the volume).
        """
        if self.profile != "cluster":
            return self
        kuberay = self.train.kuberay
        mounts = [kuberay.data_mount_path, kuberay.shared_mount_path]
        for name in ("root", "path"):
            value = getattr(self.data, name)
            if value is None:
                continue
            if ".." not in value.replace("\\", "/").split("/"):
                continue
            normal = posixpath.normpath(value)
            inside = (any(normal == mount or normal.startswith(mount + "/") for mount in mounts)
                      if normal.startswith("/") else normal != ".." and not normal.startswith("../"))
            if not inside:
                raise ValueError(f"data.{name} {value!r} leaves the mounted volumes {mounts}: on the cluster "
                                 "profile a data path must stay under a mount path (absolute, or relative "
                                 "without '..' out)")
        return self

    @model_validator(mode="after")
    def _location_needs_sensors(self) -> "RunConfig":
        if self.model.location is not None and not self.train.sensors:
            raise ValueError("model.location (GeoCLOSP's location encoder) needs a sensor model: set train.sensors")
        return self

    @model_validator(mode="after")
    def _ablations_name_comparisons(self) -> "RunConfig":
        sets = {eval_set.name for eval_set in self.evaluate.sets}
        reserved = {*RESERVED_NAMES, *((UNTUNED,) if self.evaluate.compare_base else ())}
        for ablation in self.train.ablations:
            if ablation.name in sets or ablation.name in reserved:
                raise ValueError(f"train.ablations {ablation.name!r} prefixes its metric keys as a comparison model: "
                                 f"it may be neither an eval set name {sorted(sets)} nor one of {sorted(reserved)}")
        if self.vqa is not None:
            self._check_vqa_sets()
        self._check_ladder()
        return self

    def _check_ladder(self) -> None:
        """Every ``evaluate.ladder`` step names a model this run scores and one of its eval sets."""
        models = {"candidate", *((UNTUNED,) if self.evaluate.compare_base else ()),
                  *(ablation.name for ablation in self.train.ablations)}
        sets = {eval_set.name for eval_set in self.evaluate.sets}
        for step in self.evaluate.ladder:
            if step.model not in models:
                raise ValueError(f"evaluate.ladder {step.label!r}: model {step.model!r} is not scored by this run "
                                 f"(known: {sorted(models)})")
            if step.metric.split(".")[0] not in sets:
                raise ValueError(f"evaluate.ladder {step.label!r}: metric {step.metric!r} does not start with an "
                                 f"eval set name (known: {sorted(sets)})")

    def _check_vqa_sets(self) -> None:
        """``vqa.sets`` name eval sets scored on another split than VQA fits on; no model is named like a baseline."""
        by_name = {eval_set.name: eval_set for eval_set in self.evaluate.sets}
        for name in self.vqa.sets:
            if name not in by_name:
                raise ValueError(f"vqa.sets {name!r} is no evaluate.sets entry (known: {sorted(by_name)})")
            if by_name[name].split in (None, self.vqa.train_split):
                raise ValueError(f"vqa.sets {name!r}: eval set split {by_name[name].split!r} overlaps "
                                 f"vqa.train_split {self.vqa.train_split!r}, which the heads are fitted on")
        clashes = sorted({ablation.name for ablation in self.train.ablations} & {*VQA_BASELINES, VQA_CANDIDATE})
        if clashes:
            raise ValueError(f"train.ablations {clashes} would name a VQA row like {[VQA_CANDIDATE, *VQA_BASELINES]}")

    def digest(self) -> str:
        """Return a stable SHA-256 of the resolved config (a lineage tag for registered models)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()
