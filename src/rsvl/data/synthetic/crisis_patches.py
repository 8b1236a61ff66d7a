"""Procedural CrisisLandMark-like scenes: unpaired Sentinel-1 *or* Sentinel-2 patches with crisis events.

CrisisLandMark (CLOSP) pools single-sensor patches from several sources, so an S1 patch and an S2
patch never show the same place: text is the only bridge between the sensors. Each scene here is
drawn for one sensor only, from the land-cover classes, signatures and rendering of
:mod:`rsvl.data.synthetic.s1s2_patches`, plus the three CrisisLandMark event classes:

* ``flooded area``: turbid flood water standing on land. S1 sees open water: specular reflection
  away from the sensor, σ⁰ within 1 dB of :data:`~rsvl.data.synthetic.s1s2_patches.S1_SIGMA0_DB`'s
  water (0.3-0.4 dB brighter: wind ripples and floating debris). S2 sees water darkened in NIR and
  SWIR like any water body, but suspended sediment raises green and red reflectance, so flood water
  is only weakly distinguishable from a clear lake or river in either sensor.
* ``burned area``: char and ash after a fire. S2: low NIR (the leaves that made the NIR plateau
  are gone), SWIR raised above NIR (dry, exposed soil and char: a negative normalised burn ratio),
  dark in the visible, so clearly unlike bare ground, which is bright everywhere. S1: the canopy's
  volume scattering is gone, leaving σ⁰ between bare ground and shrub.
* ``earthquake damage``: collapsed buildings. S1: the walls and streets that made the double-bounce
  corners of intact built-up land are rubble, so σ⁰ drops a few dB and the piles of debris add
  texture (:data:`RUBBLE_TEXTURE_DB`). S2: dust and debris look much like built-up land, slightly
  brighter.

A scene with an event shows the event plus one or two land-cover classes (earthquake damage always
next to standing ``built`` land); other scenes show one to three land-cover classes.

**Location carries the signal.** Events happen only inside the fixed zones of
:data:`EVENT_ZONES` (river plains for floods, the Mediterranean south for fires, seismic belts for
earthquakes), each with its own probability of an event inside it. A share :data:`ZONE_SHARE` of
scenes is placed inside a zone (the corpus gathers event data sets where events happened, as
CrisisLandMark merges MMFlood, QuakeSet, CaBuAr and Sen12Flood with BigEarthNet); the rest fall
anywhere over Europe (and may land in a zone too). Land-cover classes keep the latitude prior of
:func:`~rsvl.data.synthetic.s1s2_patches.class_prior`. Because flood water and water are nearly
the same in the pictures, location is what separates them: a dark patch inside a flood zone may be
a flood, outside every flood zone it is a lake or a river. GeoCLOSP's location encoder has that
to learn; the image encoders alone cannot.

Everything is drawn with the CPU-independent primitives of :mod:`rsvl.data.synthetic.exact`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final

import numpy as np

from rsvl.data.synthetic import sentence, smooth_field
from rsvl.data.synthetic.exact import choose, choose_distinct, uniform
from rsvl.data.synthetic.s1s2_patches import (
    CLASSES as COVER_CLASSES,
    LAT_RANGE,
    LON_RANGE,
    S1_SIGMA0_DB,
    S2_SIGNATURES,
    SIZE,
    acquisition_time,
    class_map,
    class_prior,
    cover_fractions,
    describe_patch,
    render_s1,
    render_s2,
)

SENSORS: Final[tuple[str, ...]] = ("s1", "s2")

EVENT_S2_SIGNATURES: Final[dict[str, tuple[float, ...]]] = {
    #                   B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B11    B12
    "flooded area":      (0.066, 0.062, 0.064, 0.050, 0.040, 0.027, 0.024, 0.021, 0.018, 0.012, 0.009, 0.007),
    "burned area":       (0.045, 0.043, 0.052, 0.062, 0.080, 0.095, 0.104, 0.110, 0.116, 0.104, 0.205, 0.185),
    "earthquake damage": (0.102, 0.108, 0.118, 0.128, 0.150, 0.168, 0.178, 0.188, 0.197, 0.177, 0.258, 0.228),
}
"""Mean surface reflectance of the event classes per S2 band (the bands of ``S2_SIGNATURES``)."""

EVENT_S1_SIGMA0_DB: Final[dict[str, tuple[float, float]]] = {
    "flooded area": (-19.7, -26.6),
    "burned area": (-11.8, -19.8),
    "earthquake damage": (-6.5, -13.0),
}
"""Mean backscatter (VV, VH) in dB of the event classes."""

RUBBLE_TEXTURE_DB: Final[float] = 4.0
"""Amplitude (dB) of the fine-grained texture added to earthquake-damage pixels in S1 (a field in
``[-4, 4]`` dB with about 1.7 dB standard deviation, beside the speckle's 2.2 dB)."""

EVENTS: Final[tuple[str, ...]] = tuple(sorted(EVENT_S2_SIGNATURES))
CLASSES: Final[tuple[str, ...]] = tuple(sorted(COVER_CLASSES + EVENTS))
"""The classes a scene may show, spelled as :data:`rsvl.data.labels.CRISIS_CLASSES`."""

S2_TABLE: Final[dict[str, tuple[float, ...]]] = {**S2_SIGNATURES, **EVENT_S2_SIGNATURES}
S1_TABLE: Final[dict[str, tuple[float, float]]] = {**S1_SIGMA0_DB, **EVENT_S1_SIGMA0_DB}

EVENT_COMPANIONS: Final[dict[str, str]] = {"earthquake damage": "built"}
"""Land cover an event scene always shows beside the event (rubble lies among standing buildings)."""

EVENT_SHARE: Final[tuple[float, float]] = (0.25, 0.6)
"""Range of the share of an event scene the event covers (before rasterisation)."""

S1_HOURS: Final[tuple[float, float]] = (16.5, 18.0)
"""UTC window of Sentinel-1's ascending passes over Europe (S2 keeps its morning overpass)."""

ZONE_SHARE: Final[float] = 0.4
"""Share of scenes placed inside an event zone; the rest are placed anywhere over Europe."""


@dataclass(frozen=True)
class EventZone:
    """A latitude/longitude box where one kind of event happens.

    Attributes:
        name: Region name.
        event: The event class (one of :data:`EVENTS`).
        lat_min: Southern edge in degrees (inclusive).
        lat_max: Northern edge (inclusive).
        lon_min: Western edge (inclusive).
        lon_max: Eastern edge (inclusive).
        event_probability: Probability that a scene inside the zone shows the event.
    """

    name: str
    event: str
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float
    event_probability: float

    def contains(self, lat: float, lon: float) -> bool:
        """Whether a point lies inside the box (edges included)."""
        return self.lat_min <= lat <= self.lat_max and self.lon_min <= lon <= self.lon_max


EVENT_ZONES: Final[tuple[EventZone, ...]] = (
    # big river plains with recorded floods (Po 1994/2000, Elbe 2002/2013, lower Danube 2006)
    EventZone("Po plain", "flooded area", 44.6, 45.4, 9.0, 12.4, 0.6),
    EventZone("Elbe lowlands", "flooded area", 51.0, 53.0, 11.5, 13.8, 0.6),
    EventZone("lower Danube plain", "flooded area", 43.6, 44.6, 23.0, 27.5, 0.6),
    # the dry Mediterranean south (Monchique 2018, Peloponnese 2007, Attica 2018)
    EventZone("southern Iberia", "burned area", 36.8, 38.6, -8.8, -2.5, 0.6),
    EventZone("Peloponnese and Attica", "burned area", 36.8, 38.2, 21.4, 24.0, 0.6),
    # seismic belts (L'Aquila 2009, Amatrice 2016; Kefalonia 2014, Lefkada 2015; Izmir/Samos 2020)
    EventZone("central Apennines", "earthquake damage", 41.8, 43.0, 12.8, 14.2, 0.5),
    EventZone("Ionian islands", "earthquake damage", 37.9, 39.2, 19.9, 21.2, 0.5),
    EventZone("western Anatolia", "earthquake damage", 37.6, 39.4, 26.2, 29.5, 0.5),
)
"""The only places events occur; the zones do not overlap and lie inside the latitude/longitude range."""

EVENT_SENTENCES: Final[dict[str, str]] = {
    "flooded area": "flood water stands on land that is normally dry",
    "burned area": "part of the vegetation has burned, leaving char and ash",
    "earthquake damage": "buildings have collapsed into rubble",
}


def zones_as_dicts() -> list[dict]:
    """Return :data:`EVENT_ZONES` as JSON-ready dicts (for ``dataset.json``)."""
    return [asdict(zone) for zone in EVENT_ZONES]


def zone_at(lat: float, lon: float) -> EventZone | None:
    """Return the event zone holding a point, or ``None`` outside every zone.

    Args:
        lat: Latitude in degrees.
        lon: Longitude in degrees.
    """
    return next((zone for zone in EVENT_ZONES if zone.contains(lat, lon)), None)


def _zone_weights() -> list[float]:
    # each event kind gets the same share of the in-zone scenes, split evenly among its zones
    per_event = {event: sum(zone.event == event for zone in EVENT_ZONES) for event in EVENTS}
    return [1.0 / per_event[zone.event] for zone in EVENT_ZONES]


def draw_location(rng: np.random.Generator) -> tuple[float, float]:
    """Draw a scene's (lat, lon): inside a zone with probability :data:`ZONE_SHARE`, else anywhere.

    Args:
        rng: Generator.

    Returns:
        Latitude and longitude rounded to five decimals (as written to the manifest).
    """
    if float(rng.random()) < ZONE_SHARE:
        zone = choose(rng, EVENT_ZONES, _zone_weights())
        lat, lon = uniform(rng, zone.lat_min, zone.lat_max), uniform(rng, zone.lon_min, zone.lon_max)
    else:
        lat, lon = uniform(rng, *LAT_RANGE), uniform(rng, *LON_RANGE)
    return round(lat, 5), round(lon, 5)


def _scene_classes(rng: np.random.Generator, lat: float, event: str | None) -> tuple[list[str], np.ndarray]:
    """The scene's classes (the event first, if any) and their target fractions."""
    prior = class_prior(lat).tolist()
    if event is None:
        count = choose(rng, [1, 2, 3], [0.3, 0.45, 0.25])
        return [COVER_CLASSES[i] for i in choose_distinct(rng, count, prior)], cover_fractions(rng, count)
    count = choose(rng, [1, 2], [0.5, 0.5])
    companion = EVENT_COMPANIONS.get(event)
    cover = [companion] if companion else []
    weights = [0.0 if c == companion else w for c, w in zip(COVER_CLASSES, prior)]
    cover += [COVER_CLASSES[i] for i in choose_distinct(rng, count - len(cover), weights)]
    event_share = uniform(rng, *EVENT_SHARE)
    fractions = np.concatenate([[event_share], (1 - event_share) * cover_fractions(rng, count, 0.2)])
    return [event, *cover], fractions


def render_scene(rng: np.random.Generator, sensor: str, classes: list[str], pixel_class: np.ndarray) -> np.ndarray:
    """Render one sensor's image of a class map, event classes included.

    S1 adds :data:`RUBBLE_TEXTURE_DB` of fine-grained texture (a 16-cell smooth field, the same
    in VV and VH) on earthquake-damage pixels.

    Args:
        rng: Generator.
        sensor: ``"s1"`` or ``"s2"``.
        classes: The scene's classes (any of :data:`CLASSES`).
        pixel_class: Class index per pixel (from :func:`~rsvl.data.synthetic.s1s2_patches.class_map`).

    Returns:
        float32 (2, SIZE, SIZE) dB for S1, (12, SIZE, SIZE) reflectance × 10000 for S2.
    """
    if sensor == "s2":
        return render_s2(rng, classes, pixel_class, S2_TABLE)
    image = render_s1(rng, classes, pixel_class, S1_TABLE)
    if "earthquake damage" not in classes:
        return image
    rubble = pixel_class == classes.index("earthquake damage")
    texture = RUBBLE_TEXTURE_DB * (2.0 * smooth_field(rng, SIZE, SIZE, 16) - 1.0)
    return (image + np.where(rubble, texture, 0.0)[None]).astype(np.float32)


def draw_scene(rng: np.random.Generator, sensor: str) -> dict:
    """Draw one single-sensor scene with its labels, class shares, location and time.

    Args:
        rng: Generator of this scene.
        sensor: ``"s1"`` (VV/VH dB) or ``"s2"`` (12 bands, reflectance × 10000).

    Returns:
        A dict with ``sensor``, ``image`` (float32 (2, SIZE, SIZE) or (12, SIZE, SIZE)),
        ``labels`` (sorted), ``shares`` (class to pixel fraction), ``event`` (or ``None``),
        ``zone`` (the zone's name or ``None``), ``lat``, ``lon`` and ``timestamp``.

    Raises:
        ValueError: ``sensor`` is neither ``"s1"`` nor ``"s2"``.
    """
    if sensor not in SENSORS:
        raise ValueError(f"sensor must be one of {SENSORS}, got {sensor!r}")
    lat, lon = draw_location(rng)
    zone = zone_at(lat, lon)
    event = zone.event if zone is not None and float(rng.random()) < zone.event_probability else None
    classes, fractions = _scene_classes(rng, lat, event)
    pixel_class = class_map(rng, classes, fractions)
    shares = {c: float((pixel_class == i).mean()) for i, c in enumerate(classes)}
    timestamp = acquisition_time(rng, *S1_HOURS) if sensor == "s1" else acquisition_time(rng)
    image = render_scene(rng, sensor, classes, pixel_class)
    return {"sensor": sensor, "image": image, "labels": sorted(classes), "shares": shares, "event": event,
            "zone": zone.name if zone is not None else None, "lat": lat, "lon": lon, "timestamp": timestamp}


def describe_scene(sensor: str, shares: dict[str, float], event: str | None) -> str:
    """Describe a scene: footprint and sensor, every class with its share, the largest, the event.

    Args:
        sensor: ``"s1"`` or ``"s2"``.
        shares: Class name to pixel fraction.
        event: The scene's event class, or ``None``.

    Returns:
        Three or four sentences.
    """
    subject = "a Sentinel-1 radar patch" if sensor == "s1" else "a Sentinel-2 multispectral patch"
    text = describe_patch(shares, subject=subject)
    return f"{text} {sentence(EVENT_SENTENCES[event])}" if event else text
