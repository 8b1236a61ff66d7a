"""Evaluate one model on a list of eval sets: metrics, pictures and one Markdown + HTML report.

Each eval set (:class:`rsvl.config.evaluate.EvalSet`) names a canonical dataset split, the media
column the image tower reads and its tasks. Only the split's rows that have that media are scored
(an ``s1`` set on an unpaired S1/S2 dataset scores its S1 rows; the report notes how many were left out):

* ``retrieval``: the seven recall numbers of each protocol (:mod:`rsvl.evaluate.retrieval`: identical
  captions merged, and under ``std_`` each caption its own answer), a recall@K curve (merged) and a
  grid of the top-5 images of a few captions; with the set's ``sar_k`` also the SAR re-ranked cosine
  matrix (``sar_*``, :mod:`rsvl.evaluate.rerank`), with its ``fusion`` iEBAKER's fused global + local
  matrix (``fused_*``, :mod:`rsvl.evaluate.local_similarity`) and its re-ranking (``fused_sar_*``);
* ``zero_shot``: GeoRSCLIP-template zero-shot accuracy, per-class accuracy and a confusion matrix
  (:mod:`rsvl.evaluate.zero_shot`); classes are the labels of the whole dataset, all splits;
* ``ndcg``: nDCG@k of label queries with graded label-overlap relevance (:mod:`rsvl.evaluate.ndcg`);
  multi-label when the split has ``labels``, class-level on ``label`` otherwise; and per label,
  ``ndcg_class.<label>``, the mean nDCG@k of the queries holding that label (how GeoCLOSP and CLOSP
  are compared on location-dependent classes such as flooded area);
* ``cross_sensor``: S1→S2 and S2→S1 retrieval of paired patches, each row's other-sensor patch its
  one right answer (:mod:`rsvl.evaluate.cross_sensor`); every row needs both ``s1`` and ``s2``,
  whatever the set's ``media`` (which the other tasks read: text→S1 for ``s1``, text→S2 for ``s2``);
* ``captioning``: captions written by a CoCa model scored by BLEU/ROUGE-L/CIDEr (+ METEOR/SPICE
  where they run) and a table of generated captions beside the references;
* ``localisation``: AIR-SLT semantic localisation (GeoRSCLIP): every row's heat map of its first
  caption over its image, scored against its 0/1 ``mask`` (:mod:`rsvl.evaluate.localisation`,
  rows read by :mod:`rsvl.evaluate.localisation_set`): the means of ``Rsu``, ``Ras``, ``Rda`` and
  ``Rmi`` over the rows, ``Rmi_class.<label>`` per row ``label``, a table of every row's values
  and one heat-map overlay per row (``<set>/localisation/localisation_<sample>.png``).

Metric keys are ``<eval set>.<metric>``: ``optical_test.mR``, ``optical_test.i2t_r1``, ``optical_test.std_mR``,
``rsscn7.zs_top1``, ``rsscn7.zs_mean_class``, ``rsscn7.zs_class.parking_lot``,
``s1s2_test.ndcg_at_1000``, ``s1s2_test.ndcg_class.flooded_area``, ``s1s2_test.s1_to_s2_r1``,
``s1s2_test.cross_mR``, ``sar_test.CIDEr``, ``seloc.Rmi``, ``seloc.Rmi_class.parking_lot``. Metrics
that could not be computed appear under the same key in ``unavailable`` with the reason, never as 0.
Images are embedded once per eval set and media column and shared by its tasks. Metrics of other
models scored on the same sets (``compared``) are shown in a table beside the candidate's at the top
of the report. Single-band SAR chips reach a three-band (RGB) tower with the band repeated (the
model's preprocessing does it).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import read_manifest
from rsvl.errors import DataError, ModelError
from rsvl.evaluate.captioning import caption_metrics, generate_captions, is_captioner
from rsvl.evaluate.cross_sensor import cross_sensor_ranks
from rsvl.config.evaluate import EvalSet
from rsvl.evaluate.embedding import (
    EMBED_BATCH,
    captions_of,
    embed_images,
    embed_images_with_tokens,
    embed_texts,
    embed_texts_with_tokens,
    with_location,
)
from rsvl.evaluate.localisation import DEFAULT_MEDIAN, DEFAULT_STEPS, localisation_report
from rsvl.evaluate.localisation_metrics import METRIC_NAMES as LOCALISATION_METRICS
from rsvl.evaluate.localisation_set import check_rows as check_localisation_rows
from rsvl.evaluate.localisation_set import load_scene, means_by_label
from rsvl.evaluate.ndcg import label_means, label_queries, ndcg_at_k
from rsvl.evaluate.report import (
    Comparison,
    RetrievedImages,
    Section,
    Table,
    display_image,
    plot_confusion,
    plot_recall_curves,
    plot_retrieval_grid,
    save_thumbnail,
    write_reports,
)
from rsvl.evaluate.local_similarity import fused_protocol_metrics
from rsvl.evaluate.rerank import sar_protocol_metrics
from rsvl.evaluate.retrieval import caption_key, protocol_ranks, recall_curve
from rsvl.evaluate.zero_shot import class_vectors, classify

CURVE_MAX_K = 50
QUERY_EXAMPLES = 4
TOP_SHOWN = 5
CAPTION_EXAMPLES = 8
DETAILS_FILE = "evaluation.json"
CROSS_MEDIA = ("s1", "s2")
"""The media pair cross_sensor scores: S1 queries against S2 patches and back."""

ModelInput = str | Path | tuple


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate_model` produced.

    Attributes:
        metrics: ``<eval set>.<metric>`` → value (MLflow-safe keys).
        unavailable: ``<eval set>.<metric>`` → why it was not computed.
        pictures: ``<eval set>.<picture>`` → PNG path.
        report_md: The Markdown report (links the PNGs).
        report_html: The standalone HTML report (PNGs embedded).
        details: JSON with curves, confusion matrices, per-query nDCG and generated captions.
    """

    metrics: dict[str, float]
    unavailable: dict[str, str]
    pictures: dict[str, Path]
    report_md: Path
    report_html: Path
    details: Path


@dataclass
class _Outcome:
    metrics: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    pictures: dict[str, Path] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Context:
    model: nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Any
    eval_set: EvalSet
    dataset: ManifestDataset
    out_dir: Path
    device: str | torch.device
    batch_size: int
    num_workers: int
    java_metrics: bool = True
    embedded: dict[str, torch.Tensor] = field(default_factory=dict)
    image_tokens: torch.Tensor | None = None

    def embeddings(self, media: str) -> torch.Tensor:
        """The rows' ``media`` embeddings, computed once per media column and shared by the tasks.

        With ``fusion`` on the set, the set's own media is embedded with its patch tokens in the same pass
        (kept in ``image_tokens``).
        """
        if media not in self.embedded:
            if self.eval_set.fusion is not None and media == self.eval_set.media:
                images, self.image_tokens = embed_images_with_tokens(
                    self.model, self.preprocess, self.dataset, media, self.batch_size, self.device, self.num_workers)
            else:
                images = embed_images(self.model, self.preprocess, self.dataset, media, self.batch_size, self.device,
                                      self.num_workers)
            weight = self.eval_set.location_weight
            self.embedded[media] = images if weight is None else with_location(self.model, images, self.dataset,
                                                                                weight, self.device)
        return self.embedded[media]

    @property
    def image_embeddings(self) -> torch.Tensor:
        return self.embeddings(self.eval_set.media)

    @cached_property
    def band_names(self) -> list[str] | None:
        meta = self.dataset.meta
        for key in ("band_names", "bands"):
            names = meta.get(key)
            if isinstance(names, dict) and isinstance(names.get(self.eval_set.media), list):
                return names[self.eval_set.media]
        return None

    def picture(self, row: int) -> np.ndarray:
        return display_image(self.dataset[row][self.eval_set.media], self.band_names)

    def record(self, row: int) -> dict[str, Any]:
        return self.dataset.record(row)


def metric_slug(text: str) -> str:
    """Lower-case ``text`` with every run of other characters than letters and digits made ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "_"


def dataset_path(eval_set: EvalSet, data_root: str | Path) -> Path:
    """The eval set's dataset directory: ``dataset`` itself when absolute, else under ``data_root``.

    Raises:
        DataError: The set names no dataset directory (only a source: prepare it first, see
            :func:`rsvl.evaluate.pinned_data.prepare_eval_data`).
    """
    if eval_set.dataset is None:
        raise DataError(f"eval set {eval_set.name!r} names only a source; ingest it first (rsvl evaluate does)")
    path = Path(eval_set.dataset)
    return path if path.is_absolute() else Path(data_root) / path


def open_split(eval_set: EvalSet, data_root: str | Path, *, notes: list[str] | None = None) -> ManifestDataset:
    """Open the eval set's split: its rows that have the set's ``media``, cut to ``limit`` when set.

    Rows without the media column are left out before ``limit`` applies, so an ``s1`` set on an
    unpaired S1/S2 dataset scores the S1 rows only.

    Args:
        eval_set: The set (dataset, split, media, limit).
        data_root: Where relative eval-set datasets live.
        notes: When given, a line saying how many rows lacked the media is appended (only when any did).

    Returns:
        The rows to score.

    Raises:
        DataError: The dataset directory is missing, the split is empty, or no row of it has the media.
    """
    root = dataset_path(eval_set, data_root)
    if not root.is_dir():
        raise DataError(f"eval set {eval_set.name!r}: dataset {root} does not exist")
    dataset = ManifestDataset(root, split=eval_set.split)
    if len(dataset) == 0:
        raise DataError(f"eval set {eval_set.name!r}: split {eval_set.split!r} of {root} is empty")
    in_split = len(dataset)
    dataset = dataset.with_media(eval_set.media)
    if len(dataset) == 0:
        raise DataError(f"eval set {eval_set.name!r}: none of the {in_split} rows of split {eval_set.split!r} of "
                        f"{root} has {eval_set.media!r} media")
    if notes is not None and len(dataset) < in_split:
        notes.append(f"{in_split - len(dataset)} of the {in_split} rows of split {eval_set.split!r} have no "
                     f"{eval_set.media!r} media and are left out")
    if eval_set.limit is not None and eval_set.limit < len(dataset):
        rows = np.unique(np.linspace(0, len(dataset) - 1, eval_set.limit).round().astype(int))
        dataset.frame = dataset.frame.iloc[rows].reset_index(drop=True)
    return dataset


def _evenly(count: int, wanted: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, count - 1, min(wanted, count)).round()})


def _reranked_metrics(ctx: _Context, images: torch.Tensor, texts: torch.Tensor, text_tokens: torch.Tensor | None,
                      owner: list[int], captions: list[str]) -> tuple[dict[str, float], list[str]]:
    """The set's ``sar_*`` and ``fused_*``/``fused_sar_*`` numbers (:mod:`rsvl.evaluate.rerank`), and a note each."""
    eval_set, metrics, notes = ctx.eval_set, {}, []
    if eval_set.sar_k is not None:
        metrics.update(sar_protocol_metrics(images, texts, owner, captions, k=eval_set.sar_k, device=ctx.device))
        notes.append(f"sar_*: the cosine matrix re-ranked by SAR (top {eval_set.sar_k}, forward + reverse rank; "
                     "rsvl.evaluate.rerank)")
    if eval_set.fusion is not None:
        weights = eval_set.fusion
        metrics.update(fused_protocol_metrics(
            images, texts, ctx.image_tokens, text_tokens, owner, captions, global_weight=weights.global_weight,
            local_weight=weights.local_weight, sar_k=eval_set.sar_k, device=ctx.device))
        notes.append(f"fused_*: {weights.global_weight:g} x cosine + {weights.local_weight:g} x local similarity "
                     "(Frobenius norm of the token-by-patch cosines)" + (", and fused_sar_* that matrix re-ranked by SAR"
                                                                         if eval_set.sar_k is not None else ""))
    return metrics, notes


def _retrieval(ctx: _Context) -> _Outcome:
    captions, owner = captions_of(ctx.dataset, ctx.eval_set.media, ctx.eval_set.text)
    images = ctx.image_embeddings
    text_tokens = None
    if ctx.eval_set.fusion is not None:
        texts, text_tokens = embed_texts_with_tokens(ctx.model, ctx.tokenizer, captions, ctx.batch_size, ctx.device)
    else:
        texts = embed_texts(ctx.model, ctx.tokenizer, captions, ctx.batch_size, ctx.device)
    ranks = protocol_ranks(images, texts, owner, captions, device=ctx.device)
    curve = recall_curve(ranks.merged, min(CURVE_MAX_K, max(len(images), len(texts))))
    name = ctx.eval_set.name
    extra, extra_notes = _reranked_metrics(ctx, images, texts, text_tokens, owner, captions)
    out = _Outcome(metrics={**ranks.metrics(), **extra}, details={"recall_curve": curve}, notes=extra_notes)
    out.pictures["recall_curve"] = plot_recall_curves(curve, f"{name}: recall@K", ctx.out_dir / "recall_curve.png")
    owned: list[set[str]] = [set() for _ in range(len(images))]
    for caption, row in zip(captions, owner):
        owned[row].add(caption_key(caption))
    owners = Counter(key for keys in owned for key in keys)
    shared = sum(count > 1 for count in owners.values())
    out.notes.append(f"retrieval: {len(captions)} captions of {len(images)} images; {shared} caption texts belong to "
                     "several images (one answer in the unprefixed recall, each caption its own in std_*)")
    shown = min(TOP_SHOWN, len(images))
    normalised = nn.functional.normalize(images, dim=-1)
    examples = []
    for text_row in _evenly(len(captions), QUERY_EXAMPLES):
        query = nn.functional.normalize(texts[text_row], dim=-1)
        top = (normalised @ query).topk(shown).indices.tolist()
        examples.append(RetrievedImages(
            query=captions[text_row], images=[ctx.picture(row) for row in top],
            correct=[caption_key(captions[text_row]) in owned[row] for row in top],
            names=[str(ctx.record(row)["sample_id"]) for row in top],
        ))
    out.pictures["top5_retrievals"] = plot_retrieval_grid(
        examples, f"{name}: top-{shown} images per caption (green: an image with that caption)", ctx.out_dir / "top5_retrievals.png")
    return out


def class_names(dataset: ManifestDataset) -> list[str]:
    """The classes of a single-label dataset: its distinct ``label`` values over all splits, sorted."""
    labels = read_manifest(dataset.root)["label"]
    return sorted({str(label) for label in labels if label is not None})


def _zero_shot(ctx: _Context) -> _Outcome:
    labels = [ctx.record(row)["label"] for row in range(len(ctx.dataset))]
    missing = [str(ctx.record(row)["sample_id"]) for row, label in enumerate(labels) if label is None]
    if missing:
        raise DataError(f"eval set {ctx.eval_set.name!r}: zero-shot needs a label on every row; "
                        f"{len(missing)} have none, e.g. {missing[:3]}")
    classes = class_names(ctx.dataset)
    weights = class_vectors(ctx.model, ctx.tokenizer, classes, device=ctx.device)
    result = classify(ctx.image_embeddings, weights, labels, classes)
    out = _Outcome(details={"zero_shot": {"classes": result.classes, "confusion": result.confusion,
                                          "per_class": result.per_class}})
    out.metrics = {"zs_top1": result.top1, "zs_mean_class": result.mean_per_class}
    out.metrics.update({f"zs_class.{metric_slug(name)}": value for name, value in result.per_class.items()})
    out.pictures["confusion"] = plot_confusion(result.classes, result.confusion,
                                               f"{ctx.eval_set.name}: zero-shot top-1 {result.top1:.1f}%",
                                               ctx.out_dir / "confusion.png")
    out.notes.append(f"zero-shot: {len(classes)} classes × 105 GeoRSCLIP templates, {len(labels)} images")
    return out


def _ndcg(ctx: _Context) -> _Outcome:
    records = [ctx.record(row) for row in range(len(ctx.dataset))]
    multi_label = any(record.get("labels") for record in records)
    if multi_label:
        row_labels = [list(record.get("labels") or []) for record in records]
    else:
        row_labels = [[record["label"]] if record.get("label") else [] for record in records]
    texts, sets = label_queries(row_labels)
    if not texts:
        raise DataError(f"eval set {ctx.eval_set.name!r}: nDCG needs 'labels' or 'label' on the rows; none found")
    queries = embed_texts(ctx.model, ctx.tokenizer, texts, ctx.batch_size, ctx.device)
    k = ctx.eval_set.ndcg_k
    result = ndcg_at_k(queries, ctx.image_embeddings, sets, row_labels, k)
    out = _Outcome(metrics={f"ndcg_at_{k}": result.mean})
    per_label = label_means(sets, result.per_query)
    slugs: dict[str, list[str]] = {}
    for label in per_label:
        slugs.setdefault(metric_slug(label), []).append(label)
    for slug, labels in slugs.items():
        key = f"ndcg_class.{slug}"
        if len(labels) > 1:
            out.unavailable[key] = f"labels {labels} share this metric key; see per_label in the details"
        elif per_label[labels[0]] != per_label[labels[0]]:
            out.unavailable[key] = f"no query with label {labels[0]!r} has a relevant image"
        else:
            out.metrics[key] = per_label[labels[0]]
    out.details["ndcg"] = {"k": result.k, "multi_label": multi_label,
                           "per_query": dict(zip(texts, result.per_query)), "per_label": per_label}
    kind = "label-set" if multi_label else "class"
    out.notes.append(f"nDCG@{k}: {len(texts)} {kind} queries over {len(records)} images"
                     + (f" (k capped at {result.k} images)" if result.k < k else ""))
    return out


def _cross_sensor(ctx: _Context) -> _Outcome:
    for row in range(len(ctx.dataset)):
        record = ctx.record(row)
        lacking = [media for media in CROSS_MEDIA if record.get(media) is None]
        if lacking:
            raise DataError(f"eval set {ctx.eval_set.name!r}: cross_sensor needs both {' and '.join(CROSS_MEDIA)} on "
                            f"every row; sample {record['sample_id']!r} has no {lacking[0]!r}")
    s1, s2 = (ctx.embeddings(media) for media in CROSS_MEDIA)
    ranks = cross_sensor_ranks(s1, s2, device=ctx.device)
    out = _Outcome(metrics=ranks.metrics())
    out.details["cross_sensor"] = {"pairs": len(ctx.dataset),
                                   "recall_curve": ranks.curve(min(CURVE_MAX_K, len(ctx.dataset)))}
    out.notes.append(f"cross_sensor: {len(ctx.dataset)} S1/S2 pairs, each patch's own other-sensor patch "
                     f"its one right answer among {len(ctx.dataset)}")
    return out


def _captioning(ctx: _Context) -> _Outcome:
    references = {}
    for row in range(len(ctx.dataset)):
        record = ctx.record(row)
        if not record.get("captions"):
            raise DataError(f"eval set {ctx.eval_set.name!r}: sample {record['sample_id']!r} has no reference captions")
        references[str(record["sample_id"])] = [str(c) for c in record["captions"]]
    generated = generate_captions(ctx.model, ctx.preprocess, ctx.tokenizer, ctx.dataset, ctx.eval_set.media,
                                  device=ctx.device, label=f"captioning {ctx.eval_set.name}")
    scores = caption_metrics(references, generated, use_java=ctx.java_metrics)
    out = _Outcome(metrics=dict(scores.metrics), unavailable=dict(scores.unavailable))
    out.details["captions"] = {"tokenizer": scores.tokenizer, "generated": generated}
    rows: list[list[str | Path]] = []
    for row in _evenly(len(ctx.dataset), CAPTION_EXAMPLES):
        sample_id = str(ctx.record(row)["sample_id"])
        thumbnail = save_thumbnail(ctx.picture(row), ctx.out_dir / "captions" / f"{metric_slug(sample_id)}.png")
        rows.append([thumbnail, sample_id, generated[sample_id], "\n".join(references[sample_id]),
                     f"{scores.per_sample[sample_id]['CIDEr']:.3f}"])
    out.tables.append(Table("Generated captions beside the references",
                            ["image", "sample", "generated", "references", "CIDEr"], rows))
    out.notes.append(f"captioning: {len(generated)} captions, {scores.tokenizer} tokenisation")
    return out


LOCALISATION_DIR = "localisation"
"""Sub-folder of an eval set's pictures holding its heat-map overlays."""


def _localisation(ctx: _Context) -> _Outcome:
    eval_set = ctx.eval_set
    scenes = [load_scene(ctx.dataset, row, eval_set.name, eval_set.media, ctx.band_names)
              for row in range(len(ctx.dataset))]
    steps = eval_set.localisation_steps or DEFAULT_STEPS
    median = DEFAULT_MEDIAN if eval_set.localisation_median is None else eval_set.localisation_median
    try:
        report = localisation_report(ctx.model, ctx.preprocess, ctx.tokenizer, scenes, steps, median,
                                     batch_size=ctx.batch_size, device=ctx.device,
                                     out_dir=ctx.out_dir / LOCALISATION_DIR)
    except DataError as error:
        raise DataError(f"eval set {eval_set.name!r}: {error}") from error
    rows = report["scenes"]
    out = _Outcome(metrics=dict(report["metrics"]))
    per_label = means_by_label([scene.label for scene in scenes], [row["Rmi"] for row in rows])
    slugs: dict[str, list[str]] = {}
    for label in per_label:
        slugs.setdefault(metric_slug(label), []).append(label)
    for slug, labels in slugs.items():
        if len(labels) > 1:
            out.unavailable[f"Rmi_class.{slug}"] = (f"labels {labels} share this metric key; "
                                                    "see per_label_Rmi in the details")
        else:
            out.metrics[f"Rmi_class.{slug}"] = per_label[labels[0]]
    report_root = ctx.out_dir.parent
    for scene, row in zip(scenes, rows):
        figure = Path(row["figure"])
        out.pictures[f"heat_map_{metric_slug(scene.name)}"] = figure
        row["figure"] = _relative_path(figure, report_root)
        row["label"] = scene.label
    out.tables.append(Table("Semantic localisation per row (Ras: lower is better)",
                            ["sample", "label", "query", *LOCALISATION_METRICS],
                            [[row["name"], row["label"] or "", row["query"],
                              *(f"{row[key]:.3f}" for key in LOCALISATION_METRICS)] for row in rows]))
    out.details["localisation"] = {"steps": list(steps), "median": median, "per_label_Rmi": per_label,
                                   "scenes": rows}
    sizes = sorted({(tuple(row["steps_px"]), row["median_px"]) for row in rows})
    shown = "; ".join(f"crop steps {list(px)} px, median {kernel} px" for px, kernel in sizes)
    out.notes.append(f"localisation: {len(rows)} heat maps ({shown}); Rmi = 0.4·Rsu + 0.35·(1 − Ras) + 0.25·Rda")
    return out


def _relative_path(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


TASK_RUNNERS: dict[str, Callable[[_Context], _Outcome]] = {
    "retrieval": _retrieval,
    "zero_shot": _zero_shot,
    "ndcg": _ndcg,
    "captioning": _captioning,
    "cross_sensor": _cross_sensor,
    "localisation": _localisation,
}


def _unpack(model: ModelInput, device: str | torch.device) -> tuple[nn.Module, Any, Any]:
    if isinstance(model, (str, Path)):
        from rsvl.models import load_model

        from rsvl.models.layout import use_channels_last

        net, _, preprocess, tokenizer = load_model(model)
        net = net.to(device)
        use_channels_last(net)  # a loaded folder is this function's own copy
        return net, preprocess, tokenizer
    if isinstance(model, tuple) and len(model) == 4:
        net, _, preprocess, tokenizer = model
        return getattr(net, "module", net), preprocess, tokenizer
    raise ModelError("model must be a saved model folder or the (model, preprocess_train, preprocess_val, "
                     f"tokenizer) tuple of build_model/load_model, not {type(model).__name__}")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def evaluate_model(
    model: ModelInput,
    eval_sets: Sequence[EvalSet | dict[str, Any]],
    out_dir: str | Path,
    *,
    data_root: str | Path = "data",
    device: str | torch.device = "cpu",
    batch_size: int = EMBED_BATCH,
    num_workers: int = 0,
    java_metrics: bool = True,
    title: str = "rsvl evaluation",
    compared: Mapping[str, Mapping[str, float]] | None = None,
) -> EvalResult:
    """Score a model on every eval set and write the pictures, the reports and a details JSON.

    Everything is checked before any embedding work: eval-set names are distinct, datasets exist,
    a ``captioning`` task has a CoCa model to run, and every row of a ``localisation`` set has a
    mask and a query.

    Args:
        model: A saved model folder (loaded with :func:`rsvl.models.load_model` and moved to
            ``device``) or the 4-tuple :func:`rsvl.models.build_model` returns (its model must
            already be on ``device``; its train/eval mode is restored afterwards).
        eval_sets: :class:`EvalSet` objects or dicts validated into them.
        out_dir: Folder for ``report.md``, ``report.html``, ``evaluation.json`` and one
            sub-folder of pictures per eval set.
        data_root: Where relative eval-set datasets live.
        device: Where the model runs and score blocks are computed.
        batch_size: Images or texts per forward pass.
        num_workers: DataLoader workers decoding images.
        java_metrics: Use the Java caption tools (PTB tokenizer, METEOR, SPICE) where they run;
            False skips the JVM (quick runs): Python tokenisation, METEOR/SPICE reported unavailable.
        title: Report title.
        compared: Other models' ``<eval set>.<metric>`` values on the same sets, by model name
            (an ablation, the untuned base model): shown beside this model's metrics, with the
            difference, at the top of the report, and kept in the details JSON.

    Returns:
        The metrics, the unavailable metrics with reasons, and the paths of pictures and reports.

    Raises:
        ModelError: The model cannot be loaded, or captioning is asked of a model without ``generate``.
        DataError: A dataset is missing, a split empty, or rows lack what a task needs.
    """
    sets = [s if isinstance(s, EvalSet) else EvalSet.model_validate(s) for s in eval_sets]
    if not sets:
        raise DataError("evaluate_model needs at least one eval set")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise DataError(f"eval set names must be distinct (they prefix metric keys): {names}")
    net, preprocess, tokenizer = _unpack(model, device)
    for eval_set in sets:
        if eval_set.location_weight is not None and getattr(net, "location", None) is None:
            raise ModelError(f"eval set {eval_set.name!r} sets location_weight, but {type(net).__name__} has no "
                             "location encoder (only GeoCLOSP models have one)")
        if "captioning" in eval_set.tasks and not is_captioner(net):
            raise ModelError(f"eval set {eval_set.name!r} asks for captioning, but {type(net).__name__} has no "
                             "generate(); only CoCa models caption. Remove 'captioning' from its tasks.")
        if not dataset_path(eval_set, data_root).is_dir():
            raise DataError(f"eval set {eval_set.name!r}: dataset {dataset_path(eval_set, data_root)} does not exist")
        if "localisation" in eval_set.tasks:
            check_localisation_rows(open_split(eval_set, data_root), eval_set.name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result_metrics: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    pictures: dict[str, Path] = {}
    sections: list[Section] = []
    details: dict[str, Any] = {}
    was_training = net.training
    net.eval()
    try:
        for eval_set in sets:
            split_notes: list[str] = []
            ctx = _Context(net, preprocess, tokenizer, eval_set, open_split(eval_set, data_root, notes=split_notes),
                           out / eval_set.name, device, batch_size, num_workers, java_metrics)
            section = Section(title=f"{eval_set.name}: {eval_set.dataset} [{eval_set.split or 'all'}], "
                                    f"media {eval_set.media}, {len(ctx.dataset)} rows", metrics={})
            section.notes += split_notes
            if eval_set.dvc_version:
                section.notes.append(f"data version (DVC): {eval_set.dvc_version}")
            set_details: dict[str, Any] = {"dataset": str(dataset_path(eval_set, data_root)),
                                           "split": eval_set.split, "rows": len(ctx.dataset),
                                           "dvc_version": eval_set.dvc_version}
            for task in eval_set.tasks:
                outcome = TASK_RUNNERS[task](ctx)
                prefixed = {f"{eval_set.name}.{key}": value for key, value in outcome.metrics.items()}
                result_metrics.update(prefixed)
                section.metrics.update(prefixed)
                missing = {f"{eval_set.name}.{key}": reason for key, reason in outcome.unavailable.items()}
                unavailable.update(missing)
                section.unavailable.update(missing)
                for key, path in outcome.pictures.items():
                    pictures[f"{eval_set.name}.{key}"] = path
                    section.figures.append((key.replace("_", " "), path))
                section.tables += outcome.tables
                section.notes += outcome.notes
                set_details.update(outcome.details)
            sections.append(section)
            details[eval_set.name] = set_details
    finally:
        net.train(was_training)
    others = {name: dict(values) for name, values in (compared or {}).items()}
    comparison = Comparison(result_metrics, others) if others else None
    report_md, report_html = write_reports(title, sections, out, comparison)
    details_path = out / DETAILS_FILE
    payload = {"metrics": result_metrics, "unavailable": unavailable, "eval_sets": details, "compared": others}
    details_path.write_text(json.dumps(_json_safe(payload), indent=2), encoding="utf-8")
    return EvalResult(metrics=result_metrics, unavailable=unavailable, pictures=pictures,
                      report_md=report_md, report_html=report_html, details=details_path)
