"""The ``train`` section: optimisation, resources, checkpoints, trainable parameters, stages and ablations."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rsvl.config.base import StrictModel
from rsvl.config.cluster import KubeRayConfig
from rsvl.config.data import DataSource
from rsvl.config.model import ModelConfig


class EbaConfig(StrictModel):
    """iEBAKER's Eliminate-Before-Align (objective ``iebaker``): drop the weakest positive pairs from the loss.

    A FIFO queue of the last ``queue_size`` positive-pair cosine similarities; at each epoch start
    τ is the ``drop_ratio`` quantile of it (the entry at ``int(drop_ratio * filled)`` in sorted
    order); from epoch ``start_epoch`` (0-based) on, a pair anchors the loss only when its
    similarity is above τ (at least the best pair always does). ``joint``: the local loss uses the
    global mask; ``split``: the local similarity has its own queue and τ.
    """

    variant: Literal["joint", "split"] = "joint"
    queue_size: int = Field(200_000, ge=1)
    drop_ratio: float = Field(0.01, ge=0.0, lt=1.0)
    start_epoch: int = Field(4, ge=0)


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
    batching: Literal["per_sensor", "mixed"] = "per_sensor"
    """Sensor models (``train.sensors``) only: ``per_sensor`` is CLOSP's text bridge, one loss per sensor's own
    batch, averaged; ``mixed`` the naive control, every sensor's pairs in one contrastive batch."""
    local_weight: float = Field(0.0, ge=0.0)
    """``iebaker`` only: weight of the local (token-by-patch) similarity loss, CE both ways (paper: 1)."""
    ker_weight: float = Field(0.0, ge=0.0)
    """``iebaker`` only: weight of the masked-keyword (KER) loss (paper: 0.5); 0: no KER head."""
    ker_layers: int = Field(2, ge=1)
    """``iebaker`` only: transformer layers of the KER head."""
    ker_vocabulary: str | None = None
    """``iebaker`` only: keyword file (one word a line, ``#`` comments); ``None``: the packaged vocabulary
    built from RSICD, RSITMD and NWPU captions (``rsvl data ker-vocabulary``)."""
    eba: EbaConfig | None = None
    """``iebaker`` only: Eliminate-Before-Align; ``None``: every pair takes part."""
    long_weight: float = Field(1.0, ge=0.0)
    """``lrsclip`` only: λ_long, the weight of the image ↔ long-caption InfoNCE (unpublished; exposed)."""
    short_weight: float = Field(1.0, ge=0.0)
    """``lrsclip`` only: λ_short, the weight of the image ↔ short-text InfoNCE, the short text being the long
    caption's first sentence; 0: long captions only (the KPS-248 ablation)."""
    short_pca_dims: int | None = Field(None, ge=1)
    """``lrsclip`` only: Long-CLIP's short-text alignment against the image features reduced to this many
    principal components of the (gathered) batch (Long-CLIP: 32); ``None``: the full features, as LRSCLIP."""


TowerMode = Literal["train", "freeze", "projection", "last_blocks"]


MODULE_SUFFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


class TrainableConfig(StrictModel):
    """Which parameters train: per tower all, none, only its projection, or its last blocks.

    ``adapter`` names a hook registered with ``rsvl.train.trainable.register_adapter``, applied
    after the tower modes: ``lora`` and ``ia3`` (:mod:`rsvl.train.peft_tuning`) wrap the layers
    named by ``adapter_targets`` and freeze them; the tower modes still decide every other
    parameter (``freeze`` on both towers: only the adapter and the logit scale train).
    """

    image_tower: TowerMode = "train"
    text_tower: TowerMode = "train"
    last_blocks: int = Field(1, ge=1)
    adapter: str | None = None
    adapter_targets: list[str] | None = Field(None, min_length=1)
    """Layers the adapter wraps, as module-name suffixes (``mlp.c_fc`` matches every ``....mlp.c_fc`` of
    both towers; ``attn`` an ``nn.MultiheadAttention``, LoRA only); ``None``: the adapter's defaults."""
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0.0)
    """LoRA's update is ``(lora_alpha / lora_rank) * B @ A``."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    ia3_feedforward: list[str] | None = Field(None, min_length=1)
    """IA3 only: the targets whose input (not output) IA3 scales, as suffixes; ``None``: the defaults."""
    stretched_positions: Literal["train", "tower"] = "train"
    """A model whose text positions are stretched (LRSCLIP's KPS, :mod:`rsvl.models.kps`): ``train``: the
    stretched rows (all but the kept first ones) train whatever ``text_tower`` says, as LRSCLIP trains them;
    ``tower``: they follow ``text_tower``."""

    @field_validator("adapter_targets", "ia3_feedforward")
    @classmethod
    def _module_suffixes(cls, patterns: list[str] | None) -> list[str] | None:
        for pattern in patterns or ():
            if not MODULE_SUFFIX.fullmatch(pattern):
                raise ValueError(f"{pattern!r} is not a dotted module name suffix such as 'mlp.c_fc' "
                                 "(letters, digits and '_' between dots; no wildcards)")
        return patterns


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
    source: DataSource | None = None
    """Ingested into ``evaluate.cache_dir/stages/<dataset>`` by the ingest step, again when its files change
    (RSSCN7 as SAR-RS-CLIP's optical stage); rows with a class label and no captions get captions from it."""
    epochs: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    lr: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _source_needs_a_folder(self) -> "StageConfig":
        if self.source is not None and self.dataset is None:
            raise ValueError(f"stage {self.name!r}: a 'source' needs a 'dataset' folder name to ingest it into")
        return self

    @field_validator("dataset")
    @classmethod
    def _under_data_root(cls, dataset: str | None) -> str | None:
        if dataset is not None and (dataset.startswith(("/", "\\")) or ".." in PurePosixPath(dataset).parts):
            raise ValueError(f"stage dataset {dataset!r} must be a relative path under data.root "
                             "(no leading '/', no '..' component)")
        return dataset


class AblationConfig(StrictModel):
    """A control run (``train.ablations``): only the named stages, from the same starting weights,
    with the whole progression's step budget (steps shared in proportion to the stages' own) or,
    with ``budget: stages``, each stage's own steps.

    SAR-RS-CLIP's "SAR only" run is ``{name: sar_only, stages: [sar]}``. Its model is scored on the
    same eval sets as the candidate and reported beside it.
    """

    name: str = Field(pattern=PLAN_NAME)
    stages: list[str] = Field(min_length=1)
    budget: Literal["progression", "stages"] = "progression"
    """``progression``: the whole progression's steps, shared among the named stages (equal compute);
    ``stages``: each named stage keeps the steps it did in the progression (the same schedule, from
    the start weights instead of the earlier stages': what the earlier stages add)."""
    objective: ObjectiveConfig | None = None
    """The ablation's fits train with this objective instead of ``train.objective`` (CLOSP's naive
    control: ``{name: closp, batching: mixed}``); ``None`` keeps the run's."""
    trainable: TrainableConfig | None = None
    """The ablation's fits train these parameters instead of ``train.trainable`` (GeoRSCLIP's
    parameter-efficient runs: ``{adapter: lora}``); ``None`` keeps the run's."""
    lr: float | None = Field(None, gt=0.0)
    """The ablation's peak learning rate instead of the stages' (adapters usually take a larger one)."""
    model: ModelConfig | None = None
    """The ablation's fits build this model instead of ``model`` (LRSCLIP's 77-token baseline beside the
    stretched 248-token model); ``None`` keeps the run's. Only a chain's first fit builds one; later stages
    start from the previous stage's weights."""


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
    sensors: list[Literal["s1", "s2"]] = []
    """A sensor model (CLOSP): one image tower per listed media column, each trained on the rows that have it,
    one batch per sensor each step (``rsvl.models.multisensor``); replaces ``image_column``. Empty: one tower."""
    random_rotation: float = Field(0.0, ge=0.0, le=360.0)
    """Rotate each training image by an angle drawn from [0, this] degrees (GeoRSCLIP: 360); 0: no rotation.
    Added to the random 90-100% crop and the flips every training preprocessing does."""
    schedule: Literal["cosine", "onecycle"] = "cosine"
    """``cosine``: linear warmup over ``warmup_steps`` then cosine decay; ``onecycle``: PyTorch's OneCycleLR
    (cosine up from lr/25 over ``pct_start`` of the steps, then down to lr/25e4), CLOSP's schedule."""
    pct_start: float = Field(0.1, gt=0.0, lt=1.0)
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
        if len(set(self.sensors)) != len(self.sensors):
            raise ValueError(f"train.sensors repeat: {self.sensors}")
        if self.sensors and self.random_rotation:
            raise ValueError("train.random_rotation applies to one-tower models; a sensor model (train.sensors) "
                             "preprocesses each sensor itself")
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
