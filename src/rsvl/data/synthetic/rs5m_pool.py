"""A mixed pool of web-like image–text pairs for the RS5M funnel, with the ground truth of every row.

RS5M starts from general image–text pools (LAION, CC3M, ...) and keeps the remote-sensing pairs
(PAPERS.md §3). This pool imitates such a source at a small scale, with one planted kind of row
per funnel stage, so each stage has something measurable to remove:

========================  ==================================================  =====================
kind                      what the row is                                     removed by (rule)
========================  ==================================================  =====================
``rs``                    an overhead scene with a caption of it              kept
``photo``                 an everyday photo, caption without RS keyword       keyword (rs_keyword)
``corrupt``               a scene whose PNG is truncated                      decode (image_decodes)
``tiny``                  a 16 px thumbnail of a scene                        decode (image_size)
``exact_duplicate``       a scene's pixels again (same file, or the file      exact_duplicates
                          with a metadata chunk added), another caption       (exact_duplicate)
``near_duplicate``        a scene cropped, noised blockwise (JPEG-like) or    near_duplicates
                          brightened, another caption                         (near_duplicate)
``mismatched``            a scene captioned as a scene of another class       outliers (image_text_score)
``keyword_photo``         an everyday photo whose caption has an RS keyword   outliers (rs_score)
``uncaptioned``           a class-labelled overhead scene with no caption     kept (after the
                          (RS5M's RS-dataset part); every second one with     ``caption`` step)
                          a position and an acquisition time
========================  ==================================================  =====================

Overhead scenes come from :mod:`rsvl.data.synthetic.optical_scenes` with captions from
:mod:`rsvl.data.synthetic.optical_captions`, written as web alt text that names the view and the
class ("Satellite image of farmland. Three parcels of cropland ..."); photos from
:mod:`rsvl.data.synthetic.photos`. Rows are shuffled, and every copy comes after its original, so
"the first occurrence is kept" keeps the original. Sample ids (``pool_00042``) do not tell the kind.

The truth is in ``truth.json`` beside the manifest (:func:`read_truth`): per sample id its
``kind``, the ``stage`` and ``rule`` expected to remove it (``null`` for kept rows), the class the
image shows (``image_class``, ``"photo"`` for photos), the class its caption describes
(``caption_class``, ``null`` for photos), and for copies the original's id (``duplicate_of``) and
the ``variant``. Web pairs carry no ``label``.

``uncaptioned`` rows stand for RS5M's second source, remote-sensing datasets with class labels and
no captions (fMoW, BigEarthNet, MillionAID), which the ``caption`` step captions (top-cap and
ssl-cap, :mod:`rsvl.caption.rs5m`). Each has a ``label``; variant ``located`` (fMoW-like) also has
``lat``/``lon`` drawn inside a European country's box (:mod:`rsvl.data.countries`) and an ISO 8601
``timestamp``, variant ``label only`` (MillionAID-like) has neither. Their truth is "kept" as the
funnel sees them *after* the caption step: the geo-metadata sentence the step puts in front of
both captions ("a satellite image of forest ...", every row has a label) carries the keyword
"satellite" and names the class, so no stage should remove them. Run on the raw pool, the keyword
stage removes them (no caption). Nor may the raw pool be validated before the caption step: a
``captioning`` row needs a caption (rule ``caption_count``), and the caption step leaves out rows
validation quarantined, so they would never be captioned. Deterministic: the same seed writes the same bytes on every CPU
(integer random streams and exact arithmetic, as the default data).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rsvl.data.countries import country_boxes
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.data.validate import RAW_POOL_KEY
from rsvl.data.synthetic import optical_captions, optical_scenes, photos, png_bytes, sample_rng
from rsvl.data.synthetic.exact import uniform
from rsvl.data.synthetic.s1s2_patches import acquisition_time
from rsvl.errors import DataError

ADAPTER = "generate-rs5m-pool"
TRUTH_FILE = "truth.json"
EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "rs": (None, None),
    "photo": ("keyword", "rs_keyword"),
    "corrupt": ("decode", "image_decodes"),
    "tiny": ("decode", "image_size"),
    "exact_duplicate": ("exact_duplicates", "exact_duplicate"),
    "near_duplicate": ("near_duplicates", "near_duplicate"),
    "mismatched": ("outliers", "image_text_score"),
    "keyword_photo": ("outliers", "rs_score"),
    "uncaptioned": (None, None),
}
"""Each kind's expected removing stage and rule (stage names of :data:`rsvl.data.funnel.STAGES`)."""
VIEWS = ("Aerial view of {}.", "Satellite image of {}.", "Remote sensing image of {}.",
         "Bird's-eye view of {}.", "Overhead view of {}, taken by a drone.")
"""Alt-text openings of the overhead scenes: each names the view (a keyword) and the class."""
PHRASES = {"forest": "a forest", "water": "water", "farmland": "farmland", "residential": "a residential area",
           "industrial": "an industrial area", "grassland": "grassland", "parking lot": "a parking lot",
           "bare land": "bare land"}
"""How the alt text names each class (the class name is always in the phrase)."""
NEAR_VARIANTS = ("crop", "noise", "brightness")
UNCAPTIONED_VARIANTS = ("located", "label only")
"""``uncaptioned`` rows alternate: with position and time, then with the class label only."""
TINY_SIDE = 16
_RS, _MISMATCH, _PHOTO, _KEYWORD_PHOTO, _CORRUPT, _TINY, _COPIES, _ORDER = 20, 21, 22, 23, 24, 25, 26, 27
_UNCAPTIONED = 28


@dataclass(frozen=True)
class PoolSpec:
    """How many rows of each kind the pool holds.

    Attributes:
        per_class: Kept overhead scenes (``rs``) per class.
        exact_duplicates: Pixel-identical copies of ``rs`` rows.
        near_duplicates: Slightly altered copies of ``rs`` rows.
        mismatched: Scenes captioned as another class.
        photos: Everyday photos with plain captions.
        keyword_photos: Everyday photos with a remote-sensing keyword in the caption.
        corrupt: Truncated PNGs.
        tiny: Thumbnails below the decode stage's minimum side.
        uncaptioned: Class-labelled scenes without captions, half of them with position and time.
    """

    per_class: int = 12
    exact_duplicates: int = 10
    near_duplicates: int = 12
    mismatched: int = 8
    photos: int = 12
    keyword_photos: int = 8
    corrupt: int = 3
    tiny: int = 2
    uncaptioned: int = 16


@dataclass
class _Entry:
    data: bytes
    width: int
    height: int
    caption: str | None  # None: an uncaptioned row
    truth: dict[str, Any]
    key: str  # a generation-time name, so copies can point at their original before ids exist
    pixels: np.ndarray | None = None  # kept for scenes that copies are made of
    captions: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # label, lat, lon, timestamp of uncaptioned rows


def alt_text(label: str, caption: str, rng: np.random.Generator) -> str:
    """Web-style alt text of an overhead scene: a view opening naming the class, then the caption.

    Args:
        label: The class the caption describes.
        caption: One generated caption (a sentence).
        rng: Picks the opening.

    Returns:
        For example ``"Satellite image of a forest. A dense forest with a dirt road running from left to right."``.
    """
    return f"{VIEWS[int(rng.integers(len(VIEWS)))].format(PHRASES.get(label, label))} {caption}"


def _scene(label: str, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    pixels, facts = optical_scenes.DRAWERS[label](rng)
    captions, _ = optical_captions.describe(label, facts, rng)
    return pixels, captions


def _with_text_chunk(png: bytes, text: bytes) -> bytes:
    """The PNG with a ``tEXt`` chunk after its header: other file bytes, the same pixels."""
    header_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 data bytes and CRC
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    return png[:header_end] + chunk + png[header_end:]


def _near_copy(pixels: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    """A slightly altered copy: a crop of a few pixels, blockwise JPEG-like noise, or a brightness shift."""
    values = pixels.astype(np.int64)
    if variant == "crop":
        cut = int(rng.integers(1, 3))
        dy, dx = int(rng.integers(0, cut + 1)), int(rng.integers(0, cut + 1))
        values = values[dy:values.shape[0] - cut + dy, dx:values.shape[1] - cut + dx]
    elif variant == "noise":
        height, width = values.shape[:2]
        blocks = rng.integers(-2, 3, size=((height + 7) // 8, (width + 7) // 8, 3))
        # one offset per 8x8 block, as JPEG's quantised DC terms shift whole blocks
        values = values + np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]
        values = values + rng.integers(-3, 4, size=values.shape)
    else:
        shift = int(rng.integers(12, 25)) * (1 if rng.random() < 0.5 else -1)
        values = values + shift
    return np.clip(values, 0, 255).astype(np.uint8)


def _thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    """Block-mean downsample to ``side`` px (integer sums and one division: exact)."""
    factor = pixels.shape[0] // side
    blocks = pixels[:side * factor, :side * factor].astype(np.int64).reshape(side, factor, side, factor, 3)
    return np.rint(blocks.sum(axis=(1, 3)) / (factor * factor)).astype(np.uint8)


def _truth(kind: str, image_class: str, caption_class: str | None, duplicate_of: str | None = None,
           variant: str | None = None) -> dict[str, Any]:
    stage, rule = EXPECTED[kind]
    return {"kind": kind, "stage": stage, "rule": rule, "image_class": image_class, "caption_class": caption_class,
            "duplicate_of": duplicate_of, "variant": variant}


def _scenes(seed: int, classes: Sequence[str], spec: PoolSpec) -> list[_Entry]:
    entries = []
    for class_index, label in enumerate(classes):
        for i in range(spec.per_class):
            rng = sample_rng(seed, _RS, class_index * 100_000 + i)
            pixels, captions = _scene(label, rng)
            entries.append(_Entry(png_bytes(pixels), pixels.shape[1], pixels.shape[0],
                                  alt_text(label, captions[0], rng), _truth("rs", label, label), f"rs/{label}/{i}",
                                  pixels, captions))
    return entries


def _copies(seed: int, originals: list[_Entry], spec: PoolSpec) -> list[_Entry]:
    total = spec.exact_duplicates + spec.near_duplicates
    if total > len(originals):
        raise DataError(f"rs5m pool: {total} duplicates need as many distinct scenes, only {len(originals)} "
                        "(raise per_class or lower the duplicate counts)")
    rng = sample_rng(seed, _COPIES, 0)
    picks = [originals[int(i)] for i in rng.permutation(len(originals))[:total]]
    copies = []
    for n, original in enumerate(picks):
        pixels, captions = original.pixels, original.captions
        label = original.truth["image_class"]
        if n < spec.exact_duplicates:
            variant = "same file" if n % 2 == 0 else "metadata chunk"
            data = original.data if n % 2 == 0 else _with_text_chunk(original.data, b"Comment\x00reposted copy")
            copies.append(_Entry(data, original.width, original.height, alt_text(label, captions[1], rng),
                                 _truth("exact_duplicate", label, label, original.key, variant), f"exact/{n}"))
        else:
            variant = NEAR_VARIANTS[(n - spec.exact_duplicates) % len(NEAR_VARIANTS)]
            altered = _near_copy(pixels, variant, rng)
            copies.append(_Entry(png_bytes(altered), altered.shape[1], altered.shape[0],
                                 alt_text(label, captions[2], rng),
                                 _truth("near_duplicate", label, label, original.key, variant), f"near/{n}"))
    return copies


def _mismatched(seed: int, classes: Sequence[str], count: int) -> list[_Entry]:
    if count and len(classes) < 2:
        raise DataError("rs5m pool: mismatched captions need at least two classes")
    entries = []
    for i in range(count):
        rng = sample_rng(seed, _MISMATCH, i)
        label = classes[i % len(classes)]
        others = [c for c in classes if c != label]
        other = others[int(rng.integers(len(others)))]
        pixels, _ = _scene(label, rng)
        _, captions = _scene(other, rng)  # a scene of the other class, drawn only for its caption
        entries.append(_Entry(png_bytes(pixels), pixels.shape[1], pixels.shape[0], alt_text(other, captions[0], rng),
                              _truth("mismatched", label, other), f"mismatched/{i}"))
    return entries


def _photos(seed: int, count: int, keyword: bool) -> list[_Entry]:
    subjects = list(photos.DRAWERS)
    entries = []
    for i in range(count):
        rng = sample_rng(seed, _KEYWORD_PHOTO if keyword else _PHOTO, i)
        pixels, facts = photos.DRAWERS[subjects[i % len(subjects)]](rng)
        texts = photos.keyword_captions(facts) if keyword else photos.plain_captions(facts)
        kind = "keyword_photo" if keyword else "photo"
        entries.append(_Entry(png_bytes(pixels), pixels.shape[1], pixels.shape[0], texts[int(rng.integers(len(texts)))],
                              _truth(kind, "photo", None), f"{kind}/{i}"))
    return entries


def _broken(seed: int, classes: Sequence[str], spec: PoolSpec) -> list[_Entry]:
    entries = []
    for i in range(spec.corrupt):
        rng = sample_rng(seed, _CORRUPT, i)
        label = classes[i % len(classes)]
        pixels, captions = _scene(label, rng)
        data = png_bytes(pixels)
        keep = len(data) * int(rng.integers(40, 61)) // 100  # the header survives, the pixel data is cut
        entries.append(_Entry(data[:keep], pixels.shape[1], pixels.shape[0], alt_text(label, captions[0], rng),
                              _truth("corrupt", label, label), f"corrupt/{i}"))
    for i in range(spec.tiny):
        rng = sample_rng(seed, _TINY, i)
        label = classes[i % len(classes)]
        pixels, captions = _scene(label, rng)
        small = _thumbnail(pixels, TINY_SIDE)
        entries.append(_Entry(png_bytes(small), TINY_SIDE, TINY_SIDE, alt_text(label, captions[0], rng),
                              _truth("tiny", label, label), f"tiny/{i}"))
    return entries


def _uncaptioned(seed: int, classes: Sequence[str], count: int) -> list[_Entry]:
    """Class-labelled scenes with no caption; ``located`` ones with a point in a European country and a time."""
    boxes = country_boxes()
    entries = []
    for i in range(count):
        rng = sample_rng(seed, _UNCAPTIONED, i)
        label = classes[i % len(classes)]
        pixels, _ = _scene(label, rng)  # the scene's captions are drawn and dropped: this row has none
        variant = UNCAPTIONED_VARIANTS[i % len(UNCAPTIONED_VARIANTS)]
        metadata: dict[str, Any] = {"label": label}
        if variant == "located":
            box = boxes[int(rng.integers(len(boxes)))]
            metadata.update(lat=round(uniform(rng, box.lat_min, box.lat_max), 5),
                            lon=round(uniform(rng, box.lon_min, box.lon_max), 5), timestamp=acquisition_time(rng))
        entries.append(_Entry(png_bytes(pixels), pixels.shape[1], pixels.shape[0], None,
                              _truth("uncaptioned", label, None, variant=variant), f"uncaptioned/{i}",
                              metadata=metadata))
    return entries


def _order(seed: int, singles: list[_Entry], copies: list[_Entry]) -> list[_Entry]:
    """Shuffle the single rows, then insert each copy at a random place after its original."""
    rng = sample_rng(seed, _ORDER, 0)
    ordered = [singles[int(i)] for i in rng.permutation(len(singles))]
    for copy in copies:
        after = next(n for n, entry in enumerate(ordered) if entry.key == copy.truth["duplicate_of"])
        ordered.insert(int(rng.integers(after + 1, len(ordered) + 1)), copy)
    return ordered


def write_rs5m_pool(out: str | Path, *, seed: int = 0, classes: Sequence[str] | None = None,
                    spec: PoolSpec = PoolSpec()) -> IngestReport:
    """Write the mixed pool as a canonical ``captioning`` dataset with ``truth.json`` beside it.

    Every row is ``split`` ``train`` and ``modality`` ``optical`` with one caption (``uncaptioned``
    rows: none, a ``label``, and for the ``located`` ones ``lat``, ``lon`` and ``timestamp``);
    ``width`` and ``height`` are the drawn size (for a truncated file, the size its header declares).

    Args:
        out: Dataset directory (replaced if it exists).
        seed: Random seed.
        classes: Overhead scene classes (keys of :data:`rsvl.data.synthetic.optical_scenes.DRAWERS`);
            default all eight.
        spec: Rows per kind.

    Returns:
        The writer's report.

    Raises:
        DataError: An unknown class, fewer scenes than duplicates, or mismatched rows with one class.
    """
    classes = list(classes or optical_scenes.DRAWERS)
    unknown = [c for c in classes if c not in optical_scenes.DRAWERS]
    if unknown or not classes:
        raise DataError(f"rs5m pool: unknown classes {unknown}; choose from {list(optical_scenes.DRAWERS)}")
    scenes = _scenes(seed, classes, spec)
    copies = _copies(seed, scenes, spec)
    singles = (scenes + _mismatched(seed, classes, spec.mismatched) + _photos(seed, spec.photos, keyword=False)
               + _photos(seed, spec.keyword_photos, keyword=True) + _broken(seed, classes, spec)
               + _uncaptioned(seed, classes, spec.uncaptioned))
    ordered = _order(seed, singles, copies)
    ids = {entry.key: f"pool_{n:05d}" for n, entry in enumerate(ordered)}
    truth: dict[str, dict[str, Any]] = {}
    kinds: dict[str, int] = {}
    source = f"rsvl.data.synthetic.rs5m_pool seed={seed}"
    meta = {"generator_seed": seed, "classes": classes, "truth_file": TRUTH_FILE, "pool_spec": asdict(spec),
            RAW_POOL_KEY: "bad and uncaptioned rows on purpose: the caption step captions, the funnel removes, "
                          "the filter step validates what is left"}
    with DatasetWriter(out, name="synthetic-rs5m-pool", kind="captioning", adapter=ADAPTER, source=source,
                       extra_meta=meta) as writer:
        for entry in ordered:
            sample_id = ids[entry.key]
            record = dict(entry.truth)
            if record["duplicate_of"] is not None:
                record["duplicate_of"] = ids[record["duplicate_of"]]
            truth[sample_id] = record
            kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
            writer.add_row(sample_id=sample_id, split="train", modality="optical",
                           image=writer.write_bytes(entry.data, f"{sample_id}.png"), bands=3,
                           width=entry.width, height=entry.height,
                           captions=[entry.caption] if entry.caption is not None else [], source=source,
                           **entry.metadata)
        writer.meta["kinds"] = dict(sorted(kinds.items()))
    # sorted keys and a trailing newline: the same pool gives the same bytes
    (Path(out) / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return writer.report


def read_truth(dataset_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Read a pool's ground truth (see the module docstring for the fields).

    Args:
        dataset_dir: A pool written by :func:`write_rs5m_pool`.

    Returns:
        ``{sample_id: truth}``.

    Raises:
        DataError: The pool has no ``truth.json`` or it is not valid JSON.
    """
    path = Path(dataset_dir) / TRUTH_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: the pool's ground truth is missing (written by write_rs5m_pool)") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
