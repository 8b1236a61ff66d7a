"""Turn a point in a raster's coordinate reference system into longitude and latitude (WGS 84).

Handled without extra packages: geographic WGS 84 (``EPSG:4326``, ``OGC:CRS84``, ``WGS84``) and the
UTM zones on WGS 84 (``EPSG:326zz`` north, ``EPSG:327zz`` south), inverted with the Krüger series
to third order in the third flattening (error well under a millimetre inside a zone). Any other
CRS is converted with ``pyproj`` when it is installed; otherwise :func:`to_lonlat` raises.
"""

from __future__ import annotations

import math
import re

from rsvl.errors import DataError

_WGS84_A = 6378137.0
_WGS84_F = 1 / 298.257223563
_UTM_K0 = 0.9996
_GEOGRAPHIC = {"epsg:4326", "ogc:crs84", "wgs84", "crs84", "urn:ogc:def:crs:epsg::4326"}
_EPSG = re.compile(r"^(?:epsg:|urn:ogc:def:crs:epsg::)(\d+)$")

_N = _WGS84_F / (2 - _WGS84_F)
_RECTIFYING_RADIUS = _WGS84_A / (1 + _N) * (1 + _N**2 / 4 + _N**4 / 64)
_BETA = (_N / 2 - 2 * _N**2 / 3 + 37 * _N**3 / 96, _N**2 / 48 + _N**3 / 15, 17 * _N**3 / 480)
_DELTA = (2 * _N - 2 * _N**2 / 3 - 2 * _N**3, 7 * _N**2 / 3 - 8 * _N**3 / 5, 56 * _N**3 / 15)


def utm_to_lonlat(easting: float, northing: float, zone: int, north: bool) -> tuple[float, float]:
    """Invert the UTM projection on the WGS 84 ellipsoid.

    Args:
        easting: Metres, with the 500 km false easting.
        northing: Metres, with the 10 000 km false northing in the southern hemisphere.
        zone: UTM zone, 1 to 60.
        north: Whether the zone is the northern-hemisphere one.

    Returns:
        ``(lon, lat)`` in degrees.
    """
    xi = (northing - (0.0 if north else 10_000_000.0)) / (_UTM_K0 * _RECTIFYING_RADIUS)
    eta = (easting - 500_000.0) / (_UTM_K0 * _RECTIFYING_RADIUS)
    xi_p, eta_p = xi, eta
    for j, beta in enumerate(_BETA, start=1):
        xi_p -= beta * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
        eta_p -= beta * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
    chi = math.asin(math.sin(xi_p) / math.cosh(eta_p))
    lat = chi + sum(delta * math.sin(2 * j * chi) for j, delta in enumerate(_DELTA, start=1))
    lon0 = math.radians(zone * 6 - 183)
    lon = lon0 + math.atan2(math.sinh(eta_p), math.cos(xi_p))
    return math.degrees(lon), math.degrees(lat)


def to_lonlat(x: float, y: float, crs: str) -> tuple[float, float]:
    """Convert a point to WGS 84 longitude and latitude.

    Args:
        x: First coordinate in ``crs`` (easting, or longitude for geographic CRSs).
        y: Second coordinate (northing, or latitude).
        crs: The CRS as text: ``EPSG:32633``, ``EPSG:4326`` ... (anything ``pyproj`` reads when
            it is installed).

    Returns:
        ``(lon, lat)`` in degrees.

    Raises:
        DataError: The CRS is not one this module handles and ``pyproj`` is not installed, or the
            result is not a valid longitude/latitude.
    """
    key = crs.strip().lower()
    match = _EPSG.match(key)
    code = int(match.group(1)) if match else None
    if key in _GEOGRAPHIC or code == 4326:
        lon, lat = float(x), float(y)
    elif code is not None and (32601 <= code <= 32660 or 32701 <= code <= 32760):
        lon, lat = utm_to_lonlat(float(x), float(y), code % 100, code < 32700)
    else:
        lon, lat = _pyproj_to_lonlat(x, y, crs)
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0) or math.isnan(lon + lat):
        raise DataError(f"point ({x}, {y}) in {crs} gives lon/lat ({lon}, {lat}), outside WGS 84 bounds")
    return lon, lat


def _pyproj_to_lonlat(x: float, y: float, crs: str) -> tuple[float, float]:
    try:
        from pyproj import Transformer
        from pyproj.exceptions import CRSError
    except ImportError as err:
        raise DataError(
            f"CRS {crs!r} is neither WGS 84 nor a WGS 84 UTM zone, and pyproj is not installed to convert it"
        ) from err
    try:
        transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    except CRSError as err:
        raise DataError(f"CRS {crs!r} is not understood by pyproj ({err})") from err
    lon, lat = transformer.transform(float(x), float(y))
    return float(lon), float(lat)
