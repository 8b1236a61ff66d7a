"""The data steps of a pipeline: ``ingest`` (the run's dataset, versioned), ``caption`` and ``filter``.

Each writes a complete canonical dataset into its output folder (a KFP ``Dataset`` artifact), so a
step never edits its input and every artifact can be inspected on its own.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rsvl.config import RunConfig
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import DEFAULT_SETS
from rsvl.data.store import META_FILE
from rsvl.errors import DataError
from rsvl.data.versioning import dataset_version


@dataclass(frozen=True)
class DataOutcome:
    """A data step's result.

    Attributes:
        dataset_dir: The dataset the step wrote.
        version: Data version of the step's source (DVC md5 or content fingerprint).
        rows: Rows in the written dataset (the rows its readers yield).
        summary: One Markdown paragraph for the run's UI.
        rows_quarantined: Quarantined records of the written dataset, each source record or
            manifest row once, over all stages (:func:`rsvl.data.filtering.row_counts`).
        funnel: The filter step's funnel counts, and precision and recall against a pool's ground
            truth, as flat ``funnel.*`` metrics (:func:`rsvl.data.funnel.metrics_of`); empty
            without a funnel.
    """

    dataset_dir: Path
    version: str
    rows: int
    summary: str
    rows_quarantined: int = 0
    funnel: dict[str, float] = field(default_factory=dict)


def _copy(source: Path, out_dir: Path) -> Path:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(source, out_dir)
    return out_dir


def _rows(dataset_dir: Path) -> int:
    return len(ManifestDataset(dataset_dir, load_media=False))


def ensure_default_data(cfg: RunConfig) -> Path:
    """The embedded default data under ``data.root/default``; missing sets are written as ``make data`` does.

    Progressive stages and pinned eval sets read it; written sets match ``data.dvc`` byte for byte,
    and sets already there are never touched.

    Args:
        cfg: The run config (``data.root``, ``data.seed``, ``data.generate_scale``, the caption rules).

    Returns:
        The ``default`` folder.
    """
    from rsvl.data.generate import generate_default
    from rsvl.data.validate import validate_tree
    from rsvl.processes import available_cpus

    root = Path(cfg.data.root)
    default = root / "default"
    missing = [name for name in DEFAULT_SETS if not (default / name / META_FILE).is_file()]
    if not missing:
        return default
    default.mkdir(parents=True, exist_ok=True)
    # generate_default writes every set: build them beside `default` and rename only the missing
    # ones into place, so other processes (the folder may be a shared volume) see a whole set or none
    scratch = Path(tempfile.mkdtemp(prefix=".default-", dir=root))
    try:
        # the sets are independent: written, then validated, several at a time on the step's CPUs
        generate_default(scratch / "sets", seed=cfg.data.seed, scale=cfg.data.generate_scale)
        validate_tree(scratch / "sets", rules=cfg.data.captions, max_bad_fraction=cfg.data.max_bad_fraction,
                      processes=available_cpus())
        for name in missing:
            target = default / name
            if target.exists() and not (target / META_FILE).is_file():  # debris of an interrupted write
                target.rename(scratch / f"incomplete-{name}")
            try:
                (scratch / "sets" / name).rename(target)
            except OSError:
                if not (target / META_FILE).is_file():  # else another process won the race with a complete set
                    raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return default


def ensure_stage_data(cfg: RunConfig) -> list[Path]:
    """Ingest every progressive stage's ``source`` into the cache (``evaluate.cache_dir/stages/<dataset>``).

    The cache, not ``data.root``, holds it: a folder under ``data.root`` would change the DVC
    version of the default data. Rows with a class label and no captions get captions from it
    (:mod:`rsvl.data.scene_captions`), and the set is validated as the default data is. A copy made
    from the same source files and code is reused; a changed source is ingested again.

    Args:
        cfg: The run config (``train.stages``, ``evaluate.cache_dir``, the caption rules).

    Returns:
        The stage datasets, in stage order.

    Raises:
        DataError: A stage's source is absent.
    """
    from rsvl.data.adapters import ingest
    from rsvl.data.scene_captions import add_label_captions
    from rsvl.data.validate import validate_dataset
    from rsvl.evaluate.pinned_data import cached_dataset, source_record
    from rsvl.config.plan import stage_dataset  # not rsvl.train: this step does not import torch

    places = []
    for stage in cfg.train.stages:
        if stage.source is None:
            continue
        source = Path(stage.source.path)
        if not source.exists():
            raise DataError(f"train.stages {stage.name!r}: source {source} is absent (format {stage.source.format}); "
                            f"put the data there or drop the stage's source")
        record = source_record(stage.source.format, source)

        def build(out: Path, stage=stage, source=source) -> None:
            ingest(stage.source.format, source, out, name=Path(stage.dataset).name)
            add_label_captions(out)
            validate_dataset(out, rules=cfg.data.captions, max_bad_fraction=cfg.data.max_bad_fraction).raise_if_failed()

        places.append(cached_dataset(stage_dataset(cfg, stage, None, must_exist=False), record, build))
    return places


def run_ingest(cfg: RunConfig, out_dir: str | Path, expected_version: str = "") -> DataOutcome:
    """Produce the run's training dataset in ``out_dir``, after :func:`ensure_default_data`.

    ``data.source: generate`` copies ``train.dataset`` out of ``data.root``; ``ingest`` converts
    ``data.format`` at ``data.path`` into the canonical format.

    Args:
        cfg: The run config.
        out_dir: The output dataset folder.
        expected_version: When not empty, the data version the run must read (a UI parameter).

    Returns:
        The :class:`DataOutcome`.

    Raises:
        DataError: The source is missing, differs from its DVC version, or is not ``expected_version``.
    """
    from rsvl.data.adapters import ingest

    out = Path(out_dir)
    # progressive stages and pinned eval sets read the default data whatever the run's own source
    ensure_default_data(cfg)
    ensure_stage_data(cfg)
    if cfg.data.source == "generate":
        source = Path(cfg.data.root) / cfg.train.dataset
        if not (source / META_FILE).is_file():
            generated = ", ".join(f"default/{name}" for name in DEFAULT_SETS)
            raise DataError(f"{source}: train.dataset is not a dataset under data.root (the generated default "
                            f"datasets are {generated})")
        # version the source before copying, so it is the DVC md5 of the tracked folder
        version = dataset_version(source)
        _copy(source, out)
        origin = f"`{source}` (embedded default data)"
    else:
        if out.exists():
            shutil.rmtree(out)
        ingest(cfg.data.format, cfg.data.path, out, name=Path(cfg.data.path).name)
        version = dataset_version(out)
        origin = f"`{cfg.data.path}` (format {cfg.data.format})"
    if expected_version and expected_version != version:
        raise DataError(f"ingest: the data at {origin} is version {version}, the run asked for {expected_version}")
    rows = _rows(out)
    return DataOutcome(out, version, rows, f"Ingested {rows} rows from {origin}; data version `{version}`.")


def run_caption(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path) -> DataOutcome:
    """Caption the rows that have no captions yet; captioned rows pass through.

    With ``curation.captions`` set (RS5M), rows without captions get ``[top-cap, ssl-cap]`` from
    the configured captioner and the data steps' scorer (:func:`_rs5m_captions`); otherwise
    SAR-Narrator captions them (``caption`` section). The source's quarantine table is carried
    over, so rows set aside earlier stay listed.

    Args:
        cfg: The run config (``caption`` section, or ``curation``).
        dataset_dir: The ingested dataset.
        out_dir: The captioned dataset folder.

    Returns:
        The :class:`DataOutcome`; its summary counts captions per route and rejections per rule
        (SAR-Narrator), or captioned rows, equal top/ssl pairs and geo sentences with an example (RS5M).
    """
    from rsvl.caption import caption_dataset
    from rsvl.data.store import QuarantineRecord, read_quarantine, write_quarantine

    if cfg.curation is not None and cfg.curation.captions is not None:
        summary = _rs5m_captions(cfg, Path(dataset_dir), Path(out_dir))
    else:
        summary = caption_dataset(dataset_dir, out_dir, cfg.caption).summary()
    carried = [QuarantineRecord(**row) for row in read_quarantine(dataset_dir).to_dict("records")]
    if carried:
        write_quarantine(Path(out_dir), carried, append=True)
    out = Path(out_dir)
    return DataOutcome(out, dataset_version(out), _rows(out), summary)


def _rs5m_captions(cfg: RunConfig, dataset_dir: Path, out_dir: Path) -> str:
    """RS5M captions for the rows without captions (:mod:`rsvl.caption.rs5m_dataset`); the summary paragraph.

    The scorer (:func:`rsvl.steps.curation_model.load_curation_model`, fitted or reused) and the
    captioner are built only when some row needs captions.
    """
    from rsvl.caption.captioners import build_captioner
    from rsvl.caption.rs5m_dataset import Rs5mModels, caption_rs5m_dataset
    from rsvl.steps.curation_model import load_curation_model

    def models() -> Rs5mModels:
        scorer = load_curation_model(cfg)
        captioner, preprocess = build_captioner(cfg, scorer)
        return Rs5mModels(captioner, preprocess, scorer.model, scorer.preprocess, scorer.tokenizer)

    report = caption_rs5m_dataset(dataset_dir, out_dir, cfg.curation.captions, models,
                                  captioner_name=cfg.curation.captioner.name)
    return report.summary()


def run_filter(cfg: RunConfig, dataset_dir: str | Path, out_dir: str | Path) -> DataOutcome:
    """Run the funnel when configured, then check every row with the great-expectations suites; keep the good ones.

    Without ``curation.funnel`` it writes a filtered copy (:func:`rsvl.data.filtering.filter_dataset`).
    With it, the funnel (:func:`_funnel`) first writes its kept rows into ``out_dir``, and the
    suites then validate and filter that dataset in place (:func:`rsvl.data.filtering.filter_in_place`):
    the output lists only rows that passed both, and its quarantine table holds every removed row
    with its stage (``funnel.<stage>`` or ``validate``), rule and reason. ``dataset_dir`` is untouched.

    Args:
        cfg: The run config (caption rules, ``data.max_bad_fraction``, ``curation.funnel``).
        dataset_dir: The captioned dataset.
        out_dir: The filtered dataset folder.

    Returns:
        The :class:`DataOutcome`: ``rows`` kept, ``rows_quarantined`` (all stages), a summary (with
        the funnel's table) and the funnel's metrics.

    Raises:
        ValidationFailed: More than ``data.max_bad_fraction`` of the rows (of the funnel's kept
            rows, with a funnel) are bad.
    """
    from rsvl.data.filtering import filter_dataset, filter_in_place, row_counts

    funnel_cfg = cfg.curation.funnel if cfg.curation is not None else None
    funnel_text, funnel = "", {}
    if funnel_cfg is None:
        report, filtered = filter_dataset(dataset_dir, out_dir, rules=cfg.data.captions,
                                          max_bad_fraction=cfg.data.max_bad_fraction)
    else:
        funnel_text, funnel = _funnel(cfg, Path(dataset_dir), Path(out_dir))
        report, filtered = filter_in_place(out_dir, rules=cfg.data.captions, max_bad_fraction=cfg.data.max_bad_fraction)
    out = Path(out_dir)
    counts = row_counts(out)
    stages = ", ".join(f"{stage}: {n}" for stage, n in counts.by_stage.items()) or "none"
    summary = (f"{report.summary()}\n\nFiltered: {filtered.summary()}. The filtered dataset has "
               f"{counts.kept} rows; {counts.quarantined} records quarantined in all ({stages}).")
    if funnel_text:
        summary = f"{funnel_text}\n\nValidation of the kept rows: {summary}"
    return DataOutcome(out, dataset_version(out), counts.kept, summary, counts.quarantined, funnel)


def _funnel(cfg: RunConfig, dataset_dir: Path, out_dir: Path) -> tuple[str, dict[str, float]]:
    """Run ``curation.funnel`` on ``dataset_dir`` into ``out_dir`` with the data steps' scorer.

    The scorer is the run's model (:func:`rsvl.steps.curation_model.load_curation_model`, fitted
    or reused); its cosine, zero-shot "is remote sensing" score and image embeddings drive the
    outlier and (method ``embedding``) near-duplicate stages (:class:`rsvl.data.funnel_scorers.ClipScorers`).
    The ``funnel`` entry of the output's ``dataset.json`` gains the scorer and, when the source
    names a ground-truth file, each stage's precision and recall (:mod:`rsvl.data.funnel_truth`).

    Returns:
        The summary paragraph and table, and the funnel's metrics.
    """
    import json

    from rsvl.data.funnel import metrics_of, run_funnel
    from rsvl.data.funnel_scorers import ClipScorers
    from rsvl.data.funnel_truth import funnel_table, funnel_truth
    from rsvl.data.store import read_meta
    from rsvl.steps.curation_model import load_curation_model

    funnel_cfg = cfg.curation.funnel
    scorer = load_curation_model(cfg)
    scorers = ClipScorers(scorer.model, scorer.preprocess, scorer.tokenizer, batch_size=funnel_cfg.batch_size)
    report = run_funnel(dataset_dir, out_dir, funnel_cfg, **scorers.funnel_kwargs(funnel_cfg))
    entry = report.to_dict()
    # the model and the fit's run name, not the fitted folder's path: dataset.json's bytes are its version
    entry["scorer"] = {"model": cfg.model.name, "pretrained": cfg.model.pretrained, "fit_run": scorer.fit_run_name}
    truth = funnel_truth(dataset_dir, out_dir)
    if truth is not None:
        entry["truth"] = truth.to_dict()
    meta = read_meta(out_dir)
    meta["funnel"] = entry
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    text = (f"**Funnel** (scorer `{cfg.model.name}`"
            + (f", fitted in run `{scorer.fit_run_name}`" if scorer.fit_run_name else "") + f"): {report.summary()}"
            + f"\n\n{funnel_table(entry)}")
    return text, metrics_of(entry)
