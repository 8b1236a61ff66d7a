"""Read the ``lat``/``lon`` columns of a serving request into ``[latitude, longitude]`` rows (GeoCLOSP).

A row has a location when both cells hold a number of degrees (latitude in [-90, 90], longitude
in [-180, 180]); both empty (``None``/NaN) means no location. Only a model with a location
encoder reads locations: any location value sent to another model is refused, as is a row with
one coordinate but not the other. Errors name the row by its position in the request, from 0.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from rsvl.errors import DataError

LAT, LON = "lat", "lon"
LIMITS = {LAT: 90.0, LON: 180.0}
NAMES = {LAT: "latitude", LON: "longitude"}


def _empty(value: Any) -> bool:
    return value is None or (np.ndim(value) == 0 and not isinstance(value, str) and bool(pd.isna(value)))


def _column(frame: pd.DataFrame, column: str) -> list[Any]:
    return frame[column].tolist() if column in frame.columns else [None] * len(frame)


def _degrees(value: Any, row: int, column: str) -> float:
    """One coordinate cell as a float, checked against its range."""
    # bool is a Real in Python; True is no coordinate
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)):
        raise DataError(f"row {row} {column}: expected a number of degrees, got {type(value).__name__} {value!r}")
    degrees = float(value)
    limit = LIMITS[column]
    if not math.isfinite(degrees) or abs(degrees) > limit:
        raise DataError(f"row {row} {column}: {degrees!r} is not a {NAMES[column]}; it must be a finite number "
                        f"in [-{limit:g}, {limit:g}] degrees")
    return degrees


def read_locations(frame: pd.DataFrame, has_encoder: bool) -> tuple[list[int], np.ndarray]:
    """The rows of a request that carry a location, and their coordinates.

    Args:
        frame: Request rows, possibly with ``lat`` and ``lon`` columns.
        has_encoder: Whether the model has a location encoder (GeoCLOSP).

    Returns:
        ``(rows, latlon)``: the row positions with both coordinates, and a float64 ``(len(rows), 2)``
        array of ``[latitude, longitude]`` in degrees.

    Raises:
        DataError: A coordinate sent to a model without a location encoder, a row with only one
            of ``lat``/``lon``, a non-numeric coordinate, or one out of range (the message names the row).
    """
    lats, lons = _column(frame, LAT), _column(frame, LON)
    rows: list[int] = []
    points: list[tuple[float, float]] = []
    for row, (lat, lon) in enumerate(zip(lats, lons)):
        given = [column for column, value in ((LAT, lat), (LON, lon)) if not _empty(value)]
        if not given:
            continue
        if not has_encoder:
            raise DataError(f"row {row}: {' and '.join(repr(c) for c in given)} given, but this model has no "
                            f"location encoder; only GeoCLOSP models embed locations, send no '{LAT}'/'{LON}'")
        if len(given) == 1:
            missing = LON if given == [LAT] else LAT
            raise DataError(f"row {row}: has '{given[0]}' but no '{missing}'; a location needs both, in degrees")
        rows.append(row)
        points.append((_degrees(lat, row, LAT), _degrees(lon, row, LON)))
    return rows, np.asarray(points, dtype=np.float64).reshape(len(points), 2)
