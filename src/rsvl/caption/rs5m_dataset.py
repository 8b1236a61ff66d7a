"""Caption a canonical dataset the RS5M way: rows without captions get ``[top-cap, ssl-cap]``.

For the rows whose ``captions`` list is empty, :func:`caption_rs5m_dataset` runs
:func:`rsvl.caption.rs5m.rs5m_captions` (a captioner's top-k candidates, ``top-cap`` by the
generator's score, ``ssl-cap`` by rotation stability under the scorer) and writes the row's
captions as ``[top-cap, ssl-cap]``, each with the row's geo-metadata sentence in front when it has
one (:meth:`rsvl.caption.rs5m.Rs5mCaptions.caption`). Rows that have captions pass through
unchanged; media are copied so the new dataset stands alone.

"Training samples one of the two at random" needs nothing more: the trainer's
:class:`rsvl.train.data.CaptionPairs` reads a row's caption as
``captions[rng.integers(len(captions))]`` with ``rng = numpy.random.default_rng([seed, epoch,
index])``, a uniform draw over the row's captions for every ``(seed, epoch, index)``, so a row
holding ``[top-cap, ssl-cap]`` trains on each with probability one half, reproducibly across
resumes and workers. (:class:`rsvl.caption.rs5m.CaptionVariantSampler` draws the same distribution
from its own stream, for code that holds :class:`~rsvl.caption.rs5m.Rs5mCaptions` directly.) When
``top-cap`` and ``ssl-cap`` are the same text both entries are kept, so the list stays two long and
the draw stays one half each.

Beside the manifest, ``rs5m_captions.parquet`` (:data:`RS5M_FILE`) holds, per captioned image, its
candidates, their generator scores, the mean and spread of their image–text cosine over the
rotations, ``top-cap``, ``ssl-cap`` and the geo sentence (:meth:`Rs5mCaptions.as_dict`);
``dataset.json`` gets the counts under ``rs5m_captions`` (:meth:`Rs5mCaptionReport.counts`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
from torch import nn

from rsvl.caption.dataset import copy_row
from rsvl.caption.rs5m import SSL_CAP, TOP_CAP, Preprocess, Rs5mCaptions, rs5m_captions
from rsvl.caption.topk import TopKCaptioner
from rsvl.config.curation import Rs5mCaptionSettings
from rsvl.data.dataset import ManifestDataset
from rsvl.data.funnel import truth_file
from rsvl.data.store import DatasetWriter, read_manifest, read_meta

RS5M_FILE = "rs5m_captions.parquet"
"""The per-image side table, next to the manifest."""
META_KEY = "rs5m_captions"
"""Key of the counts in ``dataset.json``."""
STEP = "rs5m"
RS5M_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("candidates", pa.list_(pa.string()), nullable=False),
    pa.field("scores", pa.list_(pa.float64()), nullable=False),
    pa.field("rotation_mean", pa.list_(pa.float64()), nullable=False),
    pa.field("rotation_spread", pa.list_(pa.float64()), nullable=False),
    pa.field("spread_kind", pa.string(), nullable=False),
    pa.field(TOP_CAP, pa.string(), nullable=False),
    pa.field(SSL_CAP, pa.string(), nullable=False),
    pa.field("geo", pa.string(), nullable=False),
])
"""Columns of :data:`RS5M_FILE`: the keys of :meth:`Rs5mCaptions.as_dict`."""
_META_KEYS_SET_BY_WRITER = {"schema_version", "name", "kind", "adapter", "source", "counts"}


@dataclass(frozen=True)
class Rs5mModels:
    """What the RS5M captions need: a captioner and the scorer of the rotation test.

    Attributes:
        captioner: Writes the top-k candidates (:mod:`rsvl.caption.captioners`).
        captioner_preprocess: The preprocessing the captioner's images need.
        clip_model: The scorer (``encode_image``, ``encode_text``), in eval mode.
        clip_preprocess: Its validation preprocessing (square output).
        clip_tokenizer: Its tokenizer.
    """

    captioner: TopKCaptioner
    captioner_preprocess: Preprocess
    clip_model: nn.Module
    clip_preprocess: Preprocess
    clip_tokenizer: Callable[[list[str]], Any]


@dataclass
class Rs5mCaptionReport:
    """What :func:`caption_rs5m_dataset` did.

    Attributes:
        out_dir: The written dataset.
        rows: Rows written.
        captioned: Rows that had no captions and got ``[top-cap, ssl-cap]``.
        passed_through: Rows that had captions (unchanged).
        top_equals_ssl: Captioned rows whose ``top-cap`` and ``ssl-cap`` are the same text.
        geo_sentences: Captioned rows with a geo-metadata sentence in front.
        captioner: The captioner's registered name.
        example: The first captioned row's captions (``None`` when none was captioned).
    """

    out_dir: Path
    rows: int
    captioned: int
    passed_through: int
    top_equals_ssl: int
    geo_sentences: int
    captioner: str
    example: Rs5mCaptions | None = None

    def counts(self) -> dict[str, Any]:
        """The counts ``dataset.json`` keeps under :data:`META_KEY`."""
        return {"images_captioned": self.captioned, "top_equals_ssl": self.top_equals_ssl,
                "geo_sentences": self.geo_sentences, "passed_through": self.passed_through,
                "captioner": self.captioner, "table": RS5M_FILE}

    def summary(self) -> str:
        """One Markdown paragraph: the counts and an example."""
        if not self.captioned:
            return (f"RS5M captions (captioner `{self.captioner}`): every one of the {self.rows} rows already "
                    f"had captions; all passed through unchanged to `{self.out_dir}`.")
        text = (f"RS5M captions (captioner `{self.captioner}`): {self.captioned} of {self.rows} rows had no "
                f"captions and got two, top-cap and ssl-cap (the same text for {self.top_equals_ssl}, kept twice "
                f"so training still draws each half the time); {self.geo_sentences} of them with the geo-metadata "
                f"sentence in front; {self.passed_through} captioned rows passed through unchanged. "
                f"Candidates, scores and rotation stability per image: `{self.out_dir / RS5M_FILE}`.")
        if self.example is not None:
            example = self.example
            text += (f" Example, `{example.sample_id}` ({len(example.candidates)} candidates): "
                     f"top-cap \"{example.caption(TOP_CAP)}\"; ssl-cap \"{example.caption(SSL_CAP)}\".")
        return text


def _no_captions(captions: Any) -> bool:
    return captions is None or len(captions) == 0


def caption_rs5m_dataset(
    dataset_dir: str | Path,
    out_dir: str | Path,
    settings: Rs5mCaptionSettings,
    models: Callable[[], Rs5mModels],
    *,
    captioner_name: str,
    media: str = "image",
) -> Rs5mCaptionReport:
    """Write a copy of a dataset in which rows without captions carry ``[top-cap, ssl-cap]``.

    Rows validation quarantined are left out, as :func:`rsvl.caption.caption_dataset` does (their
    records stay with the caller). A row "without captions" has an empty ``captions`` list.

    Args:
        dataset_dir: Source dataset.
        out_dir: Destination (replaced if it exists).
        settings: ``curation.captions`` (k, beams, angles, spread, geo, batch size).
        models: Builds the captioner and scorer; called only when some row needs captions.
        captioner_name: The captioner's registered name, for the counts and summary.
        media: Media column to caption.

    Returns:
        The :class:`Rs5mCaptionReport`.

    Raises:
        DataError: A row to caption lacks ``media`` or has bad metadata.
        ModelError: The captioner wrote no caption for an image.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    meta = read_meta(dataset_dir)
    manifest = read_manifest(dataset_dir)
    pending = ManifestDataset(dataset_dir).subset([_no_captions(c) for c in manifest["captions"]])
    found: dict[str, Rs5mCaptions] = {}
    if len(pending):
        built = models()
        found = rs5m_captions(built.captioner, built.captioner_preprocess, built.clip_model, built.clip_preprocess,
                              built.clip_tokenizer, pending, media, k=settings.k, angles=settings.angles,
                              spread=settings.spread, geo=settings.geo, batch_size=settings.batch_size)
    report = Rs5mCaptionReport(
        out_dir, len(manifest), len(found), len(manifest) - len(found),
        sum(chosen.top_cap == chosen.ssl_cap for chosen in found.values()),
        sum(bool(chosen.geo) for chosen in found.values()), captioner_name,
        next(iter(found.values()), None))
    extra = {k: v for k, v in meta.items() if k not in _META_KEYS_SET_BY_WRITER}
    extra[META_KEY] = {**report.counts(), "settings": settings.model_dump(mode="json"), "from": str(dataset_dir)}
    with DatasetWriter(out_dir, name=meta["name"], kind=meta["kind"], adapter=meta.get("adapter", STEP),
                       source=meta.get("source", str(dataset_dir)), extra_meta=extra) as writer:
        for row in manifest.to_dict("records"):
            row = copy_row(writer, dataset_dir, row)
            chosen = found.get(row["sample_id"])
            if chosen is not None:
                row["captions"] = [chosen.caption(TOP_CAP), chosen.caption(SSL_CAP)]
            writer.add_row(**row)
    pq.write_table(pa.Table.from_pylist([chosen.as_dict() for chosen in found.values()], schema=RS5M_SCHEMA),
                   out_dir / RS5M_FILE)
    truth = truth_file(dataset_dir)
    if truth is not None:  # the pool's ground truth follows its rows to the funnel
        shutil.copyfile(truth, out_dir / truth.name)
    return report


def read_rs5m_captions(dataset_dir: str | Path) -> list[dict[str, Any]]:
    """Read :data:`RS5M_FILE` as a list of rows (the keys of :meth:`Rs5mCaptions.as_dict`)."""
    return pq.read_table(Path(dataset_dir) / RS5M_FILE, schema=RS5M_SCHEMA).to_pylist()


__all__ = ["META_KEY", "RS5M_FILE", "RS5M_SCHEMA", "Rs5mCaptionReport", "Rs5mModels", "caption_rs5m_dataset",
           "read_rs5m_captions"]
