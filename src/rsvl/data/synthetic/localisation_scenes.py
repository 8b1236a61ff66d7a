"""Large RGB scenes with target regions at known places, for semantic localisation (AIR-SLT style).

A scene is a mosaic of one *background* land-cover class (96 px tiles of
:data:`rsvl.data.synthetic.optical_scenes.DRAWERS`) with one or more *target* patches of another
class pasted at random, non-touching positions: a land-cover tile (industrial, parking lot,
residential, forest), a coastal harbour layout (:mod:`rsvl.data.synthetic.harbour`, 128 px) or a
lake (an ellipse of water). The ground-truth mask is True exactly on the pasted target pixels, and
the query is a short text naming the target class, so a localisation heat map can be scored
against where the target really is (:mod:`rsvl.evaluate.localisation`).

At the default 384 px a single 96 px target covers 6.25% of the scene, close to AIR-SLT's average
attention ratio (0.068, Yuan et al. 2022). Every scene draws from its own generator
``(seed, 15, index)`` with integer random streams and exact arithmetic
(:mod:`rsvl.data.synthetic.exact`), so a seed gives the same pixels on every CPU.

:func:`write_localisation_dataset` pins the scenes as a canonical dataset (the ``localisation``
task of ``evaluate`` scores it): per scene an RGB ``image``, a single-band ``mask`` PNG with
**0 = background and 1 = target** (:data:`MASK_VALUES`, the 0/1 convention of the SAR chips'
land masks), the query as its one caption and the target kind as ``label``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.data.synthetic import exact, harbour, optical_scenes, png_bytes, raster, sample_rng
from rsvl.data.synthetic.optical_scenes import jitter, textured_ground

SCENE_SIZE = 384
"""Scene side in pixels: four 96 px land-cover tiles across."""

TARGET_QUERIES: dict[str, str] = {
    "lake": "a lake",
    "harbour": "a harbour with ships along the quay",
    "industrial": "an industrial area with large factory buildings",
    "parking lot": "a parking lot with rows of cars",
    "residential": "a residential area with houses and roads",
    "forest": "a dense forest",
}
"""Target kind to the query text that asks for it."""

BACKGROUNDS: tuple[str, ...] = ("farmland", "grassland", "bare land", "forest")
"""Background classes: textured, object-free covers a target stands out from."""

MASK_VALUES: dict[str, str] = {"0": "background", "1": "target"}
"""Pixel value of a written mask → what it marks (recorded as ``mask_values`` in ``dataset.json``)."""

ADAPTER = "generate-localisation-scenes"
DATASET_NAME = "synthetic-localisation"
DEFAULT_COUNT = 12
"""Scenes of the pinned set: each target kind once with one region and once with two."""

REGION_GAP = 16
"""Least distance in pixels between two target patches, so each is its own mask component."""

_STREAM = 15  # the generator stream of these scenes (issue 15); other datasets use 1-9
_PLACEMENT_TRIES = 500
_LAKE_WATER = ((34, 64, 112), (42, 92, 104))  # the dark blue and blue green of optical_scenes' water


@dataclass(frozen=True)
class LocalisationScene:
    """One large scene, where its targets are, and the text that asks for them.

    Attributes:
        name: Identifier, ``<index>-<target>`` (used in reports and error messages).
        image: uint8 (H, W, 3) RGB pixels.
        mask: bool (H, W), True on target pixels.
        query: The text to localise.
        target: Target kind (a key of :data:`TARGET_QUERIES`).
        background: Background class.
        boxes: Each target patch as ``(x0, y0, x1, y1)``, end exclusive.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    query: str
    target: str
    background: str
    boxes: tuple[tuple[int, int, int, int], ...]


def _mosaic(rng: np.random.Generator, label: str, height: int, width: int) -> np.ndarray:
    """Tile fresh 96 px scenes of ``label`` over (height, width), cropped at the far edges."""
    side = optical_scenes.SIZE
    rows, cols = math.ceil(height / side), math.ceil(width / side)
    draw = optical_scenes.DRAWERS[label]
    tiles = [[draw(rng)[0] for _ in range(cols)] for _ in range(rows)]
    return np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)[:height, :width]


def _lake(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 96 px patch whose ellipse of smooth water is the target; the rest is not pasted."""
    side = optical_scenes.SIZE
    water = textured_ground(rng, jitter(rng, _LAKE_WATER[int(rng.integers(2))], 10), 0.08, cells=3)
    # exact.uniform: the same draws as rng.uniform, without a compiled multiply-add (see exact)
    rx, ry = exact.uniform(rng, 0.8, 1.0, size=2) * side / 2
    shape = raster.ellipse((side, side), side / 2, side / 2, float(rx), float(ry))
    return np.clip(np.rint(water), 0, 255).astype(np.uint8), shape


def target_patch(rng: np.random.Generator, target: str, tiles: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Draw one target patch: its pixels and which of them belong to the target.

    Args:
        rng: Generator.
        target: A key of :data:`TARGET_QUERIES`.
        tiles: Land-cover targets are a ``tiles`` × ``tiles`` mosaic of 96 px scenes (harbour and
            lake patches are always one layout / one ellipse).

    Returns:
        uint8 (h, w, 3) pixels and bool (h, w) target mask.

    Raises:
        ValueError: Unknown target or ``tiles`` < 1.
    """
    if target not in TARGET_QUERIES:
        raise ValueError(f"unknown localisation target {target!r}; choose from {sorted(TARGET_QUERIES)}")
    if tiles < 1:
        raise ValueError(f"tiles must be at least 1, got {tiles}")
    if target == "lake":
        return _lake(rng)
    if target == "harbour":
        pixels, _ = harbour.render_optical(rng, harbour.draw_layout(rng, coastal=True))
        return pixels, np.ones(pixels.shape[:2], dtype=bool)
    side = optical_scenes.SIZE * tiles
    return _mosaic(rng, target, side, side), np.ones((side, side), dtype=bool)


def _place(rng: np.random.Generator, size: int, h: int, w: int,
           taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """A top-left corner for an (h, w) patch inside the scene, REGION_GAP away from ``taken`` boxes."""
    if h > size or w > size:
        raise ValueError(f"a {w}x{h} px target does not fit in a {size} px scene")
    for _ in range(_PLACEMENT_TRIES):
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        if all(x + w + REGION_GAP <= x0 or x1 + REGION_GAP <= x or y + h + REGION_GAP <= y0 or y1 + REGION_GAP <= y
               for x0, y0, x1, y1 in taken):
            return x, y
    raise ValueError(f"could not place {len(taken) + 1} targets of {w}x{h} px {REGION_GAP} px apart "
                     f"in a {size} px scene; use fewer regions or a larger size")


def draw_localisation_scene(
    rng: np.random.Generator,
    target: str,
    background: str | None = None,
    regions: int = 1,
    size: int = SCENE_SIZE,
    tiles: int = 1,
    name: str | None = None,
) -> LocalisationScene:
    """Draw one scene: a background mosaic with ``regions`` target patches at random places.

    Args:
        rng: Generator.
        target: Target kind, a key of :data:`TARGET_QUERIES`.
        background: Background class (a :data:`BACKGROUNDS` entry or any ``DRAWERS`` class other
            than the target); drawn from :data:`BACKGROUNDS` minus the target when ``None``.
        regions: Number of target patches, each its own mask component.
        size: Scene side in pixels.
        tiles: Land-cover targets are ``tiles`` × ``tiles`` tiles of 96 px.
        name: Scene name; ``target`` when ``None``.

    Returns:
        The scene; its mask is True exactly where target pixels were pasted.

    Raises:
        ValueError: Unknown target or background, background equal to the target, ``regions`` < 1,
            or the targets do not fit ``REGION_GAP`` apart.
    """
    if target not in TARGET_QUERIES:
        raise ValueError(f"unknown localisation target {target!r}; choose from {sorted(TARGET_QUERIES)}")
    if regions < 1:
        raise ValueError(f"regions must be at least 1, got {regions}")
    if background is None:
        choices = [label for label in BACKGROUNDS if label != target]
        background = choices[int(rng.integers(len(choices)))]
    if background not in optical_scenes.DRAWERS:
        raise ValueError(f"unknown background {background!r}; choose from {sorted(optical_scenes.DRAWERS)}")
    if background == target:
        raise ValueError(f"background and target are both {target!r}; a target needs a distinct background")
    image = _mosaic(rng, background, size, size).copy()
    mask = np.zeros((size, size), dtype=bool)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(regions):
        pixels, inside = target_patch(rng, target, tiles)
        h, w = inside.shape
        x, y = _place(rng, size, h, w, boxes)
        image[y:y + h, x:x + w][inside] = pixels[inside]
        mask[y:y + h, x:x + w] |= inside
        boxes.append((x, y, x + w, y + h))
    return LocalisationScene(name or target, image, mask, TARGET_QUERIES[target], target, background, tuple(boxes))


def localisation_scenes(
    count: int,
    seed: int = 0,
    size: int = SCENE_SIZE,
    targets: Sequence[str] = tuple(TARGET_QUERIES),
    regions: Sequence[int] = (1, 2),
    tiles: int = 1,
) -> list[LocalisationScene]:
    """Draw ``count`` scenes, cycling through the targets, then through the region counts.

    Scene ``i`` has target ``targets[i % len(targets)]`` and
    ``regions[(i // len(targets)) % len(regions)]`` patches, and draws from its own generator
    (seed, stream, i), so adding scenes never changes earlier ones.

    Args:
        count: Number of scenes.
        seed: Seed of the generators.
        size: Scene side in pixels.
        targets: Target kinds to cycle through.
        regions: Region counts to cycle through.
        tiles: Land-cover targets are ``tiles`` × ``tiles`` tiles of 96 px.

    Returns:
        The scenes, named ``<i>-<target>``.

    Raises:
        ValueError: ``count`` < 1, empty ``targets``/``regions``, or a scene cannot be drawn.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not targets or not regions:
        raise ValueError("targets and regions must not be empty")
    scenes = []
    for i in range(count):
        target = targets[i % len(targets)]
        n = regions[(i // len(targets)) % len(regions)]
        scenes.append(draw_localisation_scene(sample_rng(seed, _STREAM, i), target, regions=n, size=size,
                                              tiles=tiles, name=f"{i}-{target.replace(' ', '_')}"))
    return scenes


def sample_id_of(index: int, target: str) -> str:
    """The sample id of scene ``index`` in a written dataset: ``loc_<index, 3 digits>_<target>``."""
    return f"loc_{index:03d}_{target.replace(' ', '_')}"


def write_localisation_dataset(out: str | Path, *, count: int = DEFAULT_COUNT, seed: int = 0,
                               size: int = SCENE_SIZE) -> IngestReport:
    """Write :func:`localisation_scenes` as a canonical dataset, the same bytes on every CPU.

    Every row is split ``test``, modality ``optical``, with ``image`` (RGB PNG), ``mask``
    (single-band PNG, :data:`MASK_VALUES`: 0 background, 1 target), ``captions`` = ``[query]``
    and ``label`` = the target kind; sample ids come from :func:`sample_id_of`. ``dataset.json``
    records the seed, the size, ``mask_values`` and per sample its background class and target
    patches (``(x0, y0, x1, y1)``, end exclusive). PNGs are stored uncompressed
    (:func:`rsvl.data.synthetic.png_bytes`), so the files depend on the pixels alone.

    Args:
        out: Dataset directory (replaced if it exists).
        count: Number of scenes; targets cycle as in :func:`localisation_scenes`.
        seed: Random seed.
        size: Scene side in pixels.

    Returns:
        The writer's report.

    Raises:
        ValueError: ``count`` < 1 or a scene cannot be drawn at ``size``.
    """
    scenes = localisation_scenes(count, seed=seed, size=size)
    source = f"rsvl.data.synthetic.localisation_scenes seed={seed} size={size}"
    layout: dict[str, dict[str, object]] = {}
    meta = {"generator_seed": seed, "image_size": size, "mask_values": MASK_VALUES,
            "box_convention": "pixel edges, max exclusive", "scenes": layout}
    with DatasetWriter(out, name=DATASET_NAME, kind="captioning", adapter=ADAPTER, source=source,
                       extra_meta=meta) as writer:
        for index, scene in enumerate(scenes):
            sample_id = sample_id_of(index, scene.target)
            layout[sample_id] = {"background": scene.background, "patches": [list(box) for box in scene.boxes]}
            writer.add_row(
                sample_id=sample_id, split="test", modality="optical",
                image=writer.write_bytes(png_bytes(scene.image), f"{sample_id}.png"),
                mask=writer.write_bytes(png_bytes(scene.mask.astype(np.uint8)), f"{sample_id}_mask.png"),
                bands=3, width=size, height=size, captions=[scene.query], label=scene.target, source=source,
            )
    return writer.report
