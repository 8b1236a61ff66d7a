"""The embedded default dataset: procedural optical, SAR, S1/S2 and crisis sets written in canonical form.

``generate_default`` lets every pipeline run on a machine with no data. It needs only NumPy,
finishes in seconds at ``scale=1``, and is deterministic on any machine: the same seed writes the
same bytes on every CPU (with or without AVX-512, x86 or ARM), so ``data.dvc`` names the default
data version everywhere. That holds by construction, not by luck:

* every random draw comes from an integer stream (PCG64; normals and speckle are built from
  integer uniforms), never from NumPy's float samplers that call ``exp``/``log``;
* everything that reaches a file is computed with IEEE ``+ - * /`` and ``sqrt`` (correctly
  rounded, so SIMD and scalar kernels agree), fixed-order sums or ``math.fsum``, and polynomial
  ``log``/``exp``/``sin``/``cos`` built from those (:mod:`rsvl.data.synthetic.exact`); shapes
  are rasterised by pixel-centre tests (:mod:`rsvl.data.synthetic.raster`) instead of Pillow's
  drawing and resampling code;
* PNGs are written with stored (uncompressed) deflate blocks and Parquet tables uncompressed,
  because compressors' output depends on the zlib/snappy build and its CPU-specific hashing.

``tests/data/test_generate_any_cpu.py`` checks the md5 under three NumPy/torch dispatch levels. The
images are drawn so that classes, ships and land covers are learnable, not noise (see
:mod:`rsvl.data.synthetic`).

Layout under ``out``:

* ``optical/``: ``captioning`` set of RGB scenes, eight land-cover classes and the ``harbour`` and
  ``open sea`` ship scenes, five captions and a long caption per image; splits stratified by class.
* ``sar/``: ``detection`` set of 8-bit SAR chips with ship boxes, A2C/SA2C captions and a
  land/sea mask (0 sea, 1 land) per chip, and each chip's co-registered optical twin
  (``media/<id>_optical.png``) with its captions in :data:`OPTICAL_TWINS_FILE`.
* ``s1s2/``: ``multisensor`` set of paired S1 (VV, VH dB) and S2 (12 bands, reflectance × 10000)
  arrays with multi-labels, ``". "``-joined label captions, location and time; the train split's
  per-band mean/std are stored in ``dataset.json`` under ``band_stats`` (the BigEarthNet adapter's
  layout: ``{"split": "train", "s1": {"bands", "mean", "std", "pixels"}, "s2": {...}}``).
  ``bands``/``width``/``height`` describe ``s2``, as for BigEarthNet.
* ``crisis/``: ``multisensor`` set of *unpaired* single-sensor scenes in the CrisisLandMark layout
  (:mod:`rsvl.data.synthetic.crisis_patches`): ``sar`` rows hold only ``s1``, ``multispectral``
  rows only ``s2``, and the two sensors show different places. Labels are CrisisLandMark classes,
  land cover plus flood, fire and earthquake events that occur only inside the zones listed in
  ``dataset.json`` (``zones``); ``class_shares`` gives each scene's pixel share per class, and
  ``band_stats`` the train split's statistics in the ``s1s2/`` layout.
* ``rs5m/``: RS5M's mixed web pool (:mod:`rsvl.data.synthetic.rs5m_pool`): overhead scenes and
  everyday photos, exact and near copies, mismatched captions, corrupt files and uncaptioned
  labelled scenes, with the ground truth of every row in ``truth.json``; a raw pool, left out of
  validation (:func:`rsvl.data.validate.raw_pools`): GeoRSCLIP's caption and filter steps clean it.
* ``localisation/``: 384 px scenes with target regions at known places, a 0/1 ``mask`` each and
  the query naming the target as caption (:mod:`rsvl.data.synthetic.localisation_scenes`), for
  semantic localisation (Rsu, Ras, Rda, Rmi).
"""

from __future__ import annotations

import json
from pathlib import Path

from rsvl.data.band_stats import BandStats
from rsvl.data.labels import labels_to_text
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.data.synthetic import assign_splits, png_bytes, sample_rng
from rsvl.data.synthetic import crisis_patches, harbour, optical_captions, optical_scenes, s1s2_patches, sar_chips
from rsvl.data.synthetic.localisation_scenes import write_localisation_dataset
from rsvl.data.synthetic.rs5m_pool import PoolSpec, write_rs5m_pool

ADAPTER = "generate-default"
DEFAULT_SETS = ("optical", "sar", "s1s2", "crisis", "rs5m", "localisation")  # the folders generate_default writes, in its order
OPTICAL_PER_CLASS = 50
SHIP_SCENES = {"harbour": True, "open sea": False}
"""Optical classes drawn from harbour layouts (the value: coastal or not), as the SAR chips are."""
SHIP_SCENES_PER_CLASS = 150
"""Three times a land-cover class: ships are what the SAR stage is scored on."""
SAR_CHIPS = 150
S1S2_PATCHES = 200
CRISIS_PER_SENSOR = 240
"""Scenes per sensor of the CrisisLandMark-like set (S1 and S2 alike, drawn independently)."""
LOCALISATION_SCENES = 12
"""Large scenes with known target masks (semantic localisation), two per target kind."""
CRISIS_MODALITIES = {"s1": "sar", "s2": "multispectral"}
"""Row modality of each sensor, as the CrisisLandMark adapter writes it."""
OPTICAL_TWINS_FILE = "optical_captions.json"
"""In ``sar/``: captions of each chip's co-registered optical twin, ``{sample_id: [captions]}``."""
TWIN_CAPTIONS = 2
_OPTICAL, _SAR, _S1S2, _SPLITS, _TWINS = 1, 2, 3, 9, 4
_CRISIS = {"s1": 5, "s2": 6}  # one stream per sensor: S1 and S2 scenes never share draws


def optical_rows(scale: int = 1) -> dict[str, int]:
    """Rows per class of the optical set at ``scale``: land-cover scenes, then ship scenes."""
    return {**{label: OPTICAL_PER_CLASS * scale for label in optical_scenes.DRAWERS},
            **{label: SHIP_SCENES_PER_CLASS * scale for label in SHIP_SCENES}}


def _ship_scene(coastal: bool):
    def draw(rng):
        return harbour.render_optical(rng, harbour.draw_layout(rng, coastal))
    return draw


def _source(seed: int) -> str:
    return f"rsvl.data.generate seed={seed}"


def write_optical_scenes(out: str | Path, *, seed: int = 0, per_class: int = OPTICAL_PER_CLASS,
                         ship_scenes_per_class: int = 0) -> IngestReport:
    """Write the optical captioning set (RGB PNG scenes with class labels and captions).

    Eight land-cover classes are 96 px scenes; the ``harbour`` and ``open sea`` classes are
    128 px harbour layouts (:mod:`rsvl.data.synthetic.harbour`), the ships, quays and coasts the
    SAR chips show, drawn independently of the chips.

    Args:
        out: Dataset directory (replaced if it exists).
        seed: Random seed.
        per_class: Images per land-cover class.
        ship_scenes_per_class: Images per ship-scene class; 0 (the default) writes land-cover classes only.

    Returns:
        The writer's report.
    """
    drawers = {**{label: (draw, optical_scenes.SIZE, per_class) for label, draw in optical_scenes.DRAWERS.items()},
               **{label: (_ship_scene(coastal), harbour.SIZE, ship_scenes_per_class)
                  for label, coastal in SHIP_SCENES.items() if ship_scenes_per_class}}
    meta = {"classes": list(drawers), "image_size": {label: size for label, (_, size, _) in drawers.items()},
            "generator_seed": seed}
    with DatasetWriter(out, name="synthetic-optical", kind="captioning", adapter=ADAPTER,
                       source=_source(seed), extra_meta=meta) as writer:
        for class_index, (label, (draw, size, count)) in enumerate(drawers.items()):
            splits = assign_splits(count, sample_rng(seed, _SPLITS, _OPTICAL * 100 + class_index))
            for i, split in enumerate(splits):
                rng = sample_rng(seed, _OPTICAL, class_index * 1_000_000 + i)
                pixels, facts = draw(rng)
                captions, long_caption = optical_captions.describe(label, facts, rng)
                sample_id = f"{label.replace(' ', '_')}_{i:05d}"
                writer.add_row(
                    sample_id=sample_id, split=split, modality="optical",
                    image=writer.write_bytes(png_bytes(pixels), f"{sample_id}.png"),
                    bands=3, width=size, height=size,
                    captions=captions, long_caption=long_caption, label=label, source=_source(seed),
                )
    return writer.report


def write_sar_chips(out: str | Path, *, seed: int = 0, count: int = SAR_CHIPS) -> IngestReport:
    """Write the SAR ship-detection set (8-bit chips, ship boxes, captions, land/sea masks).

    Every chip has a co-registered optical twin: the same layout imaged optically
    (``media/<id>_optical.png``), whose captions are in :data:`OPTICAL_TWINS_FILE`: the input of
    SAR-Narrator's optical route (``caption.optical_captions``). The twins are drawn from a stream
    of their own, so the chips are the same with or without them.

    Args:
        out: Dataset directory (replaced if it exists).
        seed: Random seed.
        count: Number of chips.

    Returns:
        The writer's report.
    """
    meta = {"mask_values": {"0": "sea", "1": "land"}, "box_convention": "pixel edges, max exclusive",
            "image_size": sar_chips.SIZE, "generator_seed": seed,
            "optical_twins": {"images": "media/<sample_id>_optical.png", "captions": OPTICAL_TWINS_FILE}}
    twins: dict[str, list[str]] = {}
    splits = assign_splits(count, sample_rng(seed, _SPLITS, _SAR))
    with DatasetWriter(out, name="synthetic-sar-ships", kind="detection", adapter=ADAPTER,
                       source=_source(seed), extra_meta=meta) as writer:
        for i, split in enumerate(splits):
            rng = sample_rng(seed, _SAR, i)
            pixels, land, layout = sar_chips.render_chip(rng)
            captions, long_caption = sar_chips.describe_chip(layout.ships, layout.side, layout.land_share, rng)
            sample_id = f"sar_{i:05d}"
            twin_rng = sample_rng(seed, _TWINS, i)
            twin, facts = harbour.render_optical(twin_rng, layout)
            twin_label = "harbour" if layout.side else "open sea"
            twins[sample_id] = optical_captions.describe(twin_label, facts, twin_rng)[0][:TWIN_CAPTIONS]
            writer.write_bytes(png_bytes(twin), f"{sample_id}_optical.png")
            boxes = [dict(zip(("x_min", "y_min", "x_max", "y_max"), map(float, s.box)), label="ship")
                     for s in layout.ships]
            writer.add_row(
                sample_id=sample_id, split=split, modality="sar",
                image=writer.write_bytes(png_bytes(pixels), f"{sample_id}.png"),
                mask=writer.write_bytes(png_bytes(land), f"{sample_id}_mask.png"),
                bands=1, width=sar_chips.SIZE, height=sar_chips.SIZE,
                captions=captions, long_caption=long_caption, boxes=boxes, source=_source(seed),
            )
    # sorted keys and a trailing newline: the same chips give the same bytes
    (Path(out) / OPTICAL_TWINS_FILE).write_text(json.dumps(twins, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return writer.report


def write_s1s2_patches(out: str | Path, *, seed: int = 0, count: int = S1S2_PATCHES) -> IngestReport:
    """Write the paired Sentinel-1/Sentinel-2 multi-label set with train-split band statistics.

    Args:
        out: Dataset directory (replaced if it exists).
        seed: Random seed.
        count: Number of patch pairs.

    Returns:
        The writer's report.
    """
    splits = assign_splits(count, sample_rng(seed, _SPLITS, _S1S2))
    stats = {"s1": BandStats(list(s1s2_patches.S1_BANDS)), "s2": BandStats(list(s1s2_patches.S2_BANDS))}
    meta = {"classes": list(s1s2_patches.CLASSES),
            "band_names": {"s1": list(s1s2_patches.S1_BANDS), "s2": list(s1s2_patches.S2_BANDS)},
            "units": {"s1": "dB", "s2": "reflectance x 10000"},
            "image_size": s1s2_patches.SIZE, "generator_seed": seed}
    with DatasetWriter(out, name="synthetic-s1s2", kind="multisensor", adapter=ADAPTER,
                       source=_source(seed), extra_meta=meta) as writer:
        for i, split in enumerate(splits):
            patch = s1s2_patches.draw_patch(sample_rng(seed, _S1S2, i))
            if split == "train":
                stats["s1"].add(patch["s1"])
                stats["s2"].add(patch["s2"])
            sample_id = f"s1s2_{i:05d}"
            writer.add_row(
                sample_id=sample_id, split=split, modality="s1s2",
                s1=writer.write_array(patch["s1"], f"{sample_id}_s1.npy"),
                s2=writer.write_array(patch["s2"], f"{sample_id}_s2.npy"),
                bands=len(s1s2_patches.S2_BANDS), width=s1s2_patches.SIZE, height=s1s2_patches.SIZE,
                captions=[labels_to_text(patch["labels"])],
                long_caption=s1s2_patches.describe_patch(patch["shares"]),
                label=s1s2_patches.dominant_class(patch["shares"]), labels=patch["labels"],
                lat=patch["lat"], lon=patch["lon"], timestamp=patch["timestamp"], source=_source(seed),
            )
        writer.meta["band_stats"] = {"split": "train", **{name: acc.to_dict() for name, acc in stats.items()}}
    return writer.report


def write_crisis_patches(out: str | Path, *, seed: int = 0, count_per_sensor: int = CRISIS_PER_SENSOR,
                         ) -> IngestReport:
    """Write the unpaired Sentinel-1 / Sentinel-2 crisis set (CrisisLandMark layout) with band statistics.

    Rows ``crisis_s1_<i>`` (modality ``sar``, media column ``s1``: float32 (2, 32, 32) VV/VH dB) and
    ``crisis_s2_<i>`` (modality ``multispectral``, ``s2``: float32 (12, 32, 32) reflectance × 10000)
    come from independent random streams and each sensor has its own train/val/test split. A row's
    ``labels`` are its CrisisLandMark classes (sorted), its caption their CLOSP text, ``label`` the
    class with the largest share. ``dataset.json`` adds ``classes``, ``band_names``, ``units``,
    ``zones`` (:data:`rsvl.data.synthetic.crisis_patches.EVENT_ZONES`), ``zone_share``,
    ``class_shares`` (``{sample_id: {class: pixel share}}``) and ``band_stats`` (train split, the
    layout of :func:`write_s1s2_patches`).

    Args:
        out: Dataset directory (replaced if it exists).
        seed: Random seed.
        count_per_sensor: Scenes per sensor.

    Returns:
        The writer's report.
    """
    stats = {"s1": BandStats(list(s1s2_patches.S1_BANDS)), "s2": BandStats(list(s1s2_patches.S2_BANDS))}
    meta = {"classes": list(crisis_patches.CLASSES),
            "band_names": {"s1": list(s1s2_patches.S1_BANDS), "s2": list(s1s2_patches.S2_BANDS)},
            "units": {"s1": "dB", "s2": "reflectance x 10000"},
            "modalities": dict(CRISIS_MODALITIES),
            "zones": crisis_patches.zones_as_dicts(), "zone_share": crisis_patches.ZONE_SHARE,
            "image_size": s1s2_patches.SIZE, "generator_seed": seed}
    shares: dict[str, dict[str, float]] = {}
    with DatasetWriter(out, name="synthetic-crisislandmark", kind="multisensor", adapter=ADAPTER,
                       source=_source(seed), extra_meta=meta) as writer:
        for sensor, stream in _CRISIS.items():
            splits = assign_splits(count_per_sensor, sample_rng(seed, _SPLITS, stream))
            for i, split in enumerate(splits):
                scene = crisis_patches.draw_scene(sample_rng(seed, stream, i), sensor)
                if split == "train":
                    stats[sensor].add(scene["image"])
                sample_id = f"crisis_{sensor}_{i:05d}"
                shares[sample_id] = scene["shares"]
                writer.add_row(
                    sample_id=sample_id, split=split, modality=CRISIS_MODALITIES[sensor],
                    **{sensor: writer.write_array(scene["image"], f"{sample_id}.npy")},
                    bands=scene["image"].shape[0], width=s1s2_patches.SIZE, height=s1s2_patches.SIZE,
                    captions=[labels_to_text(scene["labels"])],
                    long_caption=crisis_patches.describe_scene(sensor, scene["shares"], scene["event"]),
                    label=s1s2_patches.dominant_class(scene["shares"]), labels=scene["labels"],
                    lat=scene["lat"], lon=scene["lon"], timestamp=scene["timestamp"], source=_source(seed),
                )
        writer.meta["class_shares"] = shares
        writer.meta["band_stats"] = {"split": "train", **{name: acc.to_dict() for name, acc in stats.items()}}
    return writer.report


def pool_spec(scale: int = 1) -> PoolSpec:
    """The default RS5M pool's row counts at ``scale`` (every kind's count times ``scale``)."""
    base = PoolSpec()
    return PoolSpec(**{name: getattr(base, name) * scale for name in base.__dataclass_fields__})


def write_default_set(name: str, out: str | Path, seed: int = 0, scale: int = 1) -> IngestReport:
    """Write one of the default datasets (one of :data:`DEFAULT_SETS`) into ``out/<name>``.

    Each set draws from its own streams of ``seed``, so the sets can be written in any order, or
    at the same time in several processes, with the same bytes.

    Args:
        name: The set (``optical``, ``sar``, ``s1s2``, ``crisis``, ``rs5m``, ``localisation``).
        out: Parent directory.
        seed: Random seed.
        scale: Size multiplier (see :func:`generate_default`).

    Returns:
        The set's ingest report.

    Raises:
        ValueError: An unknown set name.
    """
    target = Path(out) / name
    if name == "optical":
        return write_optical_scenes(target, seed=seed, per_class=OPTICAL_PER_CLASS * scale,
                                    ship_scenes_per_class=SHIP_SCENES_PER_CLASS * scale)
    if name == "sar":
        return write_sar_chips(target, seed=seed, count=SAR_CHIPS * scale)
    if name == "s1s2":
        return write_s1s2_patches(target, seed=seed, count=S1S2_PATCHES * scale)
    if name == "crisis":
        return write_crisis_patches(target, seed=seed, count_per_sensor=CRISIS_PER_SENSOR * scale)
    if name == "rs5m":
        return write_rs5m_pool(target, seed=seed, spec=pool_spec(scale))
    if name == "localisation":
        return write_localisation_dataset(target, count=LOCALISATION_SCENES * scale, seed=seed)
    raise ValueError(f"unknown default set {name!r}; the sets are {', '.join(DEFAULT_SETS)}")


def generate_default(out: str | Path, seed: int = 0, scale: int = 1, processes: int | None = None) -> list[IngestReport]:
    """Write the default optical, SAR, S1/S2, crisis and RS5M-pool datasets under ``out``.

    Args:
        out: Parent directory; ``optical/``, ``sar/``, ``s1s2/``, ``crisis/``, ``rs5m/`` and ``localisation/`` are
            (re)created inside it.
        seed: Random seed; the same seed gives byte-identical media and manifests.
        scale: Size multiplier: per unit 50 scenes per land-cover class and 150 per ship-scene class,
            150 SAR chips, 200 S1/S2 pairs, 240 crisis scenes per sensor and the default pool
            (:class:`rsvl.data.synthetic.rs5m_pool.PoolSpec`, its counts times ``scale``) and 12
            localisation scenes.
        processes: Sets written at the same time, each in its own process (:func:`rsvl.processes.run_jobs`);
            ``None``: the available CPUs; 1: one after another here. The bytes are the same either way.

    Returns:
        The ingest reports, in the order of :data:`DEFAULT_SETS`.

    Raises:
        ValueError: ``scale`` is smaller than 1 or ``seed`` is negative.
    """
    from rsvl.processes import run_jobs

    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    # the optical scenes take half the time: first, so the other sets fill the other workers meanwhile
    return run_jobs(write_default_set, [(name, out, seed, scale) for name in DEFAULT_SETS], processes)
