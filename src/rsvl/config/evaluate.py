"""Typed description of what to evaluate: eval sets (a dataset split, its tasks and media column).

An eval set's ``name`` prefixes its metric keys, ``<name>.<metric>`` (``optical_test.mR``,
``rsscn7.zs_top1``), so it may hold only letters, digits, ``_`` and ``-``: the dot stays the one
separator and every key is MLflow-safe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rsvl.config.base import StrictModel
from rsvl.config.data import DataSource
from rsvl.errors import ConfigError

Task = Literal["retrieval", "zero_shot", "ndcg", "captioning", "cross_sensor", "localisation"]
TASKS: tuple[str, ...] = ("retrieval", "zero_shot", "ndcg", "captioning", "cross_sensor", "localisation")
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
STANDARD_PREFIX = "std_"
"""Before the standard-protocol recall names (``sar_test.std_mR``, see :mod:`rsvl.evaluate.retrieval`);
inside the metric name, since one more dot would read as a comparison model's part of a key."""


EvalSource = DataSource
"""Where to ingest an eval set from when its dataset is not there yet (the shared :class:`DataSource`)."""


class FusionWeights(StrictModel):
    """iEBAKER's fused retrieval score ``S = global_weight · S_global + local_weight · S_local``.

    ``S_global`` is the cosine of the pooled embeddings, ``S_local`` the Frobenius norm of the
    token-by-patch cosine matrix (:mod:`rsvl.evaluate.local_similarity`); paper: 0.6 and 0.4.
    """

    global_weight: float = Field(0.6, ge=0.0)
    local_weight: float = Field(0.4, ge=0.0)


class EvalSet(StrictModel):
    """One split of one canonical dataset and the tasks scored on it.

    Attributes:
        name: Metric-key prefix (letters, digits, ``_``, ``-``).
        dataset: Canonical dataset directory, absolute or relative to the data root; ``None``
            with a ``source``: the evaluation cache's ``<name>`` folder.
        split: Split to score (``None``: every row).
        tasks: Any of ``retrieval`` (needs captions), ``zero_shot`` (needs ``label``), ``ndcg``
            (needs ``labels`` or ``label``), ``captioning`` (needs captions and a CoCa model) and
            ``cross_sensor`` (S1↔S2 retrieval of paired patches: needs ``s1`` and ``s2`` on every row) and
            ``localisation`` (AIR-SLT semantic localisation, :mod:`rsvl.evaluate.localisation`: needs a
            0/1 ``mask`` and a caption, the query, on every row).
        media: Media column the image tower reads; only the split's rows that have it are scored.
        ndcg_k: Cut-off of nDCG (CLOSP reports nDCG@1000).
        limit: Score at most this many rows, evenly spaced over the split (smoke runs).
        dvc_version: The data version this set is pinned to: the DVC md5 of the ``.dvc`` file
            covering the dataset (``rsvl data version DIR``), or for a dataset outside DVC its
            ``sha256-`` content fingerprint. Evaluation refuses any other data.
        source: Ingest the dataset from here (format + path) when it is missing.
        optional: Skip the set, with the reason recorded, when its source is absent (real data
            that only some machines have).
        narrate: Caption every row with SAR-Narrator (the run's ``caption`` section, every row
            re-captioned) before scoring, as the paper's training data is. The copy is kept in
            ``evaluate.cache_dir/<name>-narrated-<digest>`` and reused while its source version, caption
            config, SAR-Narrator code and optical captions' SHA-256 are unchanged (a cached
            ``source`` set is ingested again when its source files or the adapter code change); the pin applies to the source data, and the set's recorded version is
            ``<source version>:narrated-<content fingerprint of the copy>``. Needed for
            ``retrieval``/``captioning`` on data without captions (HRSID's boxes).
        location_weight: Score images with their place too (GeoCLOSP at query time): every row's
            image embedding becomes ``normalize(normalize(image) + w · location)``, the location
            embedded by the model's location encoder from the row's ``lat``/``lon``
            (:func:`rsvl.evaluate.embedding.with_location`); ``None``: the image alone.
        localisation_steps: Crop sides of the ``localisation`` heat maps, pixels (``int``) or
            fractions of each image's shorter side (``float`` in (0, 1]); ``None``: the paper's
            256/512/768 px over a 3000 px image (``rsvl.evaluate.localisation.DEFAULT_STEPS``).
        localisation_median: Median-filter kernel of the heat maps, pixels or a fraction likewise;
            ``None``: the paper's 251 px over 3000 px (``rsvl.evaluate.localisation.DEFAULT_MEDIAN``).
        fusion: ``retrieval`` also scores iEBAKER's fused global + local matrix (``fused_*`` metrics);
            needs a model with token features (:mod:`rsvl.models.tokens`).
        sar_k: ``retrieval`` also scores the SAR re-ranking (:mod:`rsvl.evaluate.rerank`) of the top
            ``sar_k`` answers, of the cosine matrix (``sar_*``) and, with ``fusion``, of the fused one
            (``fused_sar_*``), on the same matrices as the plain scores.
        text: The text ``retrieval`` queries with: ``captions`` (every short caption of a row) or
            ``long_caption`` (the row's one long caption: LRSCLIP's long-text retrieval), tokenized
            at the model's own context length.
    """

    name: str = Field(pattern=NAME_PATTERN, min_length=1, max_length=100)
    dataset: str | None = Field(None, min_length=1)
    split: Literal["train", "val", "test"] | None = "test"
    tasks: list[Task] = Field(min_length=1)
    media: Literal["image", "s1", "s2"] = "image"
    ndcg_k: int = Field(1000, ge=1)
    limit: int | None = Field(None, ge=1)
    dvc_version: str | None = None
    source: EvalSource | None = None
    optional: bool = False
    narrate: bool = False
    location_weight: float | None = Field(None, ge=0.0)
    localisation_steps: list[int | float] | None = Field(None, min_length=1)
    localisation_median: int | float | None = None
    fusion: FusionWeights | None = None
    sar_k: int | None = Field(None, ge=1)
    text: Literal["captions", "long_caption"] = "captions"

    @field_validator("localisation_steps")
    @classmethod
    def _steps_are_sizes(cls, steps: list[int | float] | None) -> list[int | float] | None:
        for step in steps or []:
            _check_size(step, "localisation_steps entry")
        return steps

    @field_validator("localisation_median")
    @classmethod
    def _median_is_a_size(cls, median: int | float | None) -> int | float | None:
        if median is not None:
            _check_size(median, "localisation_median")
        return median

    @model_validator(mode="after")
    def _distinct_tasks(self) -> "EvalSet":
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks repeat: {self.tasks}")
        if self.dataset is None and self.source is None:
            raise ValueError("give a dataset directory or a source to ingest it from")
        if (self.fusion is not None or self.sar_k is not None) and "retrieval" not in self.tasks:
            raise ValueError("fusion and sar_k change how retrieval is scored: add 'retrieval' to tasks")
        return self


def _check_size(value: int | float, what: str) -> None:
    """A localisation size is whole pixels (``int`` ≥ 1) or a fraction of the image side (``float`` in (0, 1])."""
    if isinstance(value, int) and value < 1:
        raise ValueError(f"{what} {value} must be at least 1 pixel")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ValueError(f"{what} {value} as a fraction of the image side must be in (0, 1]")


def load_eval_sets(path: str | Path) -> list[EvalSet]:
    """Read eval sets from YAML: a list of eval sets, or a mapping with an ``eval_sets`` list.

    Args:
        path: The YAML file.

    Returns:
        The validated eval sets.

    Raises:
        ConfigError: The file is missing, not YAML, not of that shape, or an entry breaks a rule
            (the message names the file, the entry and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: eval-set file does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    entries = raw.get("eval_sets") if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a non-empty list of eval sets (or a mapping with 'eval_sets')")
    sets = []
    for index, entry in enumerate(entries):
        try:
            sets.append(EvalSet.model_validate(entry))
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(entry)'}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"{path}: eval set #{index}: {problems}") from err
    return sets


class LadderStep(StrictModel):
    """One row of an ablation ladder (``evaluate.ladder``): a model's value of one metric.

    Attributes:
        label: What this row adds (``+ EBA joint``).
        model: ``candidate``, ``base`` (the untuned model) or an ablation's name (``train.ablations``).
        metric: ``<eval set>.<metric>`` as the candidate's are named (``optical_test.fused_mR``).
    """

    label: str = Field(min_length=1, max_length=60)
    model: str = Field(pattern=NAME_PATTERN)
    metric: str = Field(min_length=3)


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
    ladder: list[LadderStep] = []
    """An ablation ladder printed in the run's summary, one step per row, each with its gain over the row before
    (iEBAKER: base CLIP loss, + local fusion, + EBA, + KER, + SAR); empty: none."""
    location_weight: dict[str, float] = {}
    """Eval set name → its ``location_weight`` (GeoCLOSP's place at query time), laid onto the named sets: a
    mapping merges across config layers where ``sets`` (a list) would be replaced, so a track can weigh places
    on the paper's sets in every profile."""

    @model_validator(mode="before")
    @classmethod
    def _lay_location_weights(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("location_weight"):
            return data
        weights = dict(data["location_weight"])
        sets = [entry.model_dump() if isinstance(entry, EvalSet) else dict(entry) for entry in data.get("sets", [])]
        unknown = sorted(set(weights) - {entry.get("name") for entry in sets})
        if unknown:
            raise ValueError(f"evaluate.location_weight names eval sets {unknown} that evaluate.sets does not define")
        laid = [{**entry, "location_weight": weights[entry["name"]]} if entry.get("name") in weights else entry
                for entry in sets]
        return {**data, "sets": laid}

    @model_validator(mode="after")
    def _distinct_names(self) -> "EvaluateConfig":
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval set names must be distinct (they prefix metric keys): {names}")
        return self
