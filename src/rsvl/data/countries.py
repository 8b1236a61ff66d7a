"""European countries' bounding boxes: the country of a point, and where in the country it lies.

The table ships as package data, ``rsvl/data/tables/europe_country_boxes.csv``
(:data:`COUNTRY_TABLE`): one row per country with its ISO 3166-1 alpha-2 code, English short
name and box in WGS 84 degrees (``lon_min, lat_min, lon_max, lat_max``). The boxes are those of
dkoprowski/country-bounding-boxes (public domain; built from Natural Earth 110m admin-0 boundaries
and OpenStreetMap, "confined to the primary area" of each country, so overseas territories and
some islands such as Corsica fall outside), for the European countries without Russia and Turkey
(whose boxes reach far beyond Europe) and without dependent territories. Names were changed to
current English short names (North Macedonia, Kosovo).

A box is not a border. :func:`country_at` returns the **smallest** box that holds the point: right
for microstates and small neighbours nested in a larger neighbour's box (Luxembourg, Liechtenstein),
wrong near some borders where a smaller neighbour's box reaches over (Munich lies in Austria's box,
Gothenburg in Denmark's). Use a dataset's own country field when it has one.

:func:`relative_location` splits a country's box into a 3 × 3 grid of equal longitude and latitude
thirds and names the cell: ``north-west``, ``north``, ..., ``centre``, ..., ``south-east``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Final

from rsvl.data.csv_table import table_rows
from rsvl.errors import DataError

COUNTRY_TABLE: Final[str] = "tables/europe_country_boxes.csv"
"""The country table, relative to the ``rsvl.data`` package."""
COUNTRY_COLUMNS: Final[tuple[str, ...]] = ("iso2", "country", "lon_min", "lat_min", "lon_max", "lat_max")
_NORTH_SOUTH: Final[tuple[str, ...]] = ("south", "", "north")
_WEST_EAST: Final[tuple[str, ...]] = ("west", "", "east")
RELATIVE_LOCATIONS: Final[tuple[str, ...]] = (
    "north-west", "north", "north-east", "west", "centre", "east", "south-west", "south", "south-east",
)
"""Every name :func:`relative_location` can return."""


@dataclass(frozen=True)
class CountryBox:
    """A country's bounding box in WGS 84 degrees."""

    iso2: str
    name: str
    lon_min: float
    lat_min: float
    lon_max: float
    lat_max: float

    @property
    def area(self) -> float:
        """Size of the box in square degrees (used to rank overlapping boxes)."""
        return (self.lon_max - self.lon_min) * (self.lat_max - self.lat_min)

    def contains(self, lat: float, lon: float) -> bool:
        """Whether the point lies in the box (edges included)."""
        return self.lat_min <= lat <= self.lat_max and self.lon_min <= lon <= self.lon_max


def parse_country_table(text: str, source: str = COUNTRY_TABLE) -> tuple[CountryBox, ...]:
    """Parse and check a country box table.

    Args:
        text: CSV text with the header :data:`COUNTRY_COLUMNS`.
        source: File name used in error messages.

    Returns:
        The boxes in file order.

    Raises:
        DataError: A column is missing, or a row has an empty or non-numeric cell, a repeated code
            or name, a latitude outside [-90, 90], a longitude outside [-180, 180], or a minimum
            above its maximum; the message names the file and line.
    """
    boxes: list[CountryBox] = []
    seen: set[str] = set()
    for where, cells in table_rows(text, source, COUNTRY_COLUMNS):
        try:
            lon_min, lat_min, lon_max, lat_max = (float(cells[c]) for c in COUNTRY_COLUMNS[2:])
        except ValueError as err:
            raise DataError(f"{where}: box coordinates must be numbers ({err})") from err
        if not all(map(math.isfinite, (lon_min, lat_min, lon_max, lat_max))):
            raise DataError(f"{where}: box coordinates must be finite")
        if not (-90 <= lat_min <= lat_max <= 90 and -180 <= lon_min <= lon_max <= 180):
            raise DataError(f"{where}: box ({lon_min}, {lat_min}, {lon_max}, {lat_max}) needs "
                            "-180 <= lon_min <= lon_max <= 180 and -90 <= lat_min <= lat_max <= 90")
        for key in (cells["iso2"].upper(), cells["country"].lower()):
            if key in seen:
                raise DataError(f"{where}: {key!r} is listed twice")
            seen.add(key)
        boxes.append(CountryBox(cells["iso2"].upper(), cells["country"], lon_min, lat_min, lon_max, lat_max))
    return tuple(boxes)


@lru_cache(maxsize=1)
def country_boxes() -> tuple[CountryBox, ...]:
    """The packaged table (:data:`COUNTRY_TABLE`), read once."""
    path = resources.files("rsvl.data").joinpath(COUNTRY_TABLE)
    return parse_country_table(path.read_text(encoding="utf-8"), str(path))


def _check_point(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise DataError(f"point (lat={lat}, lon={lon}) is not a WGS 84 position "
                        "(latitude in [-90, 90], longitude in [-180, 180])")


def country_at(lat: float, lon: float, boxes: tuple[CountryBox, ...] | None = None) -> CountryBox | None:
    """The country whose box holds the point; the smallest box where several do.

    Args:
        lat: Latitude in degrees.
        lon: Longitude in degrees.
        boxes: The table (default: the packaged one).

    Returns:
        The box, or ``None`` when no box holds the point (sea, or outside the table).

    Raises:
        DataError: The point is not a valid latitude/longitude.
    """
    _check_point(lat, lon)
    holding = [box for box in (country_boxes() if boxes is None else boxes) if box.contains(lat, lon)]
    return min(holding, key=lambda box: box.area) if holding else None


def find_country(name: str, boxes: tuple[CountryBox, ...] | None = None) -> CountryBox | None:
    """The box of a country by ISO alpha-2 code or name (case-insensitive), or ``None``."""
    key = name.strip().lower()
    for box in country_boxes() if boxes is None else boxes:
        if key in (box.iso2.lower(), box.name.lower()):
            return box
    return None


def relative_location(lat: float, lon: float, box: CountryBox) -> str | None:
    """Where the point lies in the country's box, as a 3 × 3 grid cell name.

    The box is cut into equal thirds of longitude (west, middle, east) and latitude (south,
    middle, north); a point on a cut belongs to the middle third. The names join the latitude and
    longitude parts (``north-west``); the middle of both is ``centre``.

    Args:
        lat: Latitude in degrees.
        lon: Longitude in degrees.
        box: The country's box.

    Returns:
        One of :data:`RELATIVE_LOCATIONS`, or ``None`` when the point is outside the box (a part
        of the country the box leaves out, or a wrong country).

    Raises:
        DataError: The point is not a valid latitude/longitude.
    """
    _check_point(lat, lon)
    if not box.contains(lat, lon):
        return None
    u = (lon - box.lon_min) / (box.lon_max - box.lon_min) if box.lon_max > box.lon_min else 0.5
    v = (lat - box.lat_min) / (box.lat_max - box.lat_min) if box.lat_max > box.lat_min else 0.5
    column = 0 if u < 1 / 3 else 2 if u > 2 / 3 else 1
    row = 0 if v < 1 / 3 else 2 if v > 2 / 3 else 1
    parts = [part for part in (_NORTH_SOUTH[row], _WEST_EAST[column]) if part]
    return "-".join(parts) if parts else "centre"
