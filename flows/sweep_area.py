"""Where to sweep after an earthquake: the magnitude -> area rule and the land mask.

**Area rule.** Keefer (1984, GSA Bulletin 95(4):406-421) related the area affected by
earthquake-triggered landslides to magnitude; the regression over world-wide events used since
(Keefer and Wilson 1989; Keefer 2002, Surveys in Geophysics 23:473-510; Rodriguez et al. 1999)
is ``log10 A = M - 3.46 (+/- 0.47)``, ``A`` in km^2 (e.g. 219 km^2 on average for M 5.8).
We take the upper one-sigma area, ``A = 10 ** (M - 3.46 + 0.47)``, as a disc centred on the
epicentre, ``R = sqrt(A / pi)``: about 18 km at M 6.0, 35 km at M 6.6, 56 km at M 7.0.
``R`` is clamped to ``[MIN_RADIUS_KM, max_radius_km]`` (default cap 50 km, so a sweep is at
most a 100 x 100 km box, ~6,100 chips of 128 px). The disc is a simplification: landslides
follow the rupture, not the epicentre, so for M >~ 7 with long ruptures the cap and the circle
both under-cover; pass a larger cap or use the storm flow with a hand-drawn area.

**Land.** The disc must intersect land for the event to be swept (an offshore M 7 can still
trigger coastal landslides, so we do not test the epicentre itself). Land is the Natural Earth
1:110m Admin-0 countries, dissolved into one multipolygon (public domain; bundled as
``flows/data/land_110m.geojson``, built from the copy shipped in pyogrio's test fixtures), grown
by ``LAND_MARGIN_DEG`` because 1:110m coastlines are off by kilometres and lack small islands.
The sweep box is the bounds of (disc ∩ grown land), so coastal events do not sweep open sea.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import shapely
from shapely.affinity import scale
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

KEEFER_LOG_AREA_OFFSET = 3.46
KEEFER_LOG_AREA_SIGMA = 0.47
MIN_RADIUS_KM = 5.0
DEFAULT_MAX_RADIUS_KM = 50.0
KM_PER_DEGREE = 111.195
LAND_MARGIN_DEG = 0.1
MAX_ABS_LAT = 84.0
LAND_FILE = Path(__file__).resolve().parent / "data" / "land_110m.geojson"

BBox = tuple[float, float, float, float]


def landslide_radius_km(
    magnitude: float, max_radius_km: float = DEFAULT_MAX_RADIUS_KM, n_sigma: float = 1.0
) -> float:
    """Radius (km) of the disc around the epicentre to sweep, from the Keefer area relation.

    Args:
        magnitude: Earthquake magnitude.
        max_radius_km: Upper bound on the radius (compute cap).
        n_sigma: How many standard errors (0.47 in log10 A) above the mean relation.
    """
    area_km2 = 10 ** (magnitude - KEEFER_LOG_AREA_OFFSET + n_sigma * KEEFER_LOG_AREA_SIGMA)
    return min(max(math.sqrt(area_km2 / math.pi), MIN_RADIUS_KM), max_radius_km)


def disc(lon: float, lat: float, radius_km: float) -> BaseGeometry:
    """A lon/lat polygon approximating a disc of ``radius_km`` around a point (equirectangular)."""
    dlat = radius_km / KM_PER_DEGREE
    coslat = max(math.cos(math.radians(lat)), 0.05)
    return scale(Point(lon, lat).buffer(dlat, quad_segs=16), xfact=1.0 / coslat, yfact=1.0)


@functools.cache
def land() -> BaseGeometry:
    """The bundled 1:110m land multipolygon (prepared for fast intersection tests)."""
    doc = json.loads(LAND_FILE.read_text())
    geom = shapely.union_all([shape(f["geometry"]) for f in doc["features"]])
    shapely.prepare(geom)
    return geom


def land_near(area: BaseGeometry, margin_deg: float = LAND_MARGIN_DEG) -> BaseGeometry:
    """Land within ``margin_deg`` of ``area``, grown by ``margin_deg`` (only nearby parts are grown)."""
    reach = area.buffer(margin_deg, quad_segs=4)
    if not land().intersects(reach):
        return shapely.Polygon()
    return land().intersection(reach).buffer(margin_deg, quad_segs=4)


def sweep_bbox(lon: float, lat: float, radius_km: float) -> BBox | None:
    """The WGS84 box to sweep: bounds of the disc's part on (grown) land, or None if all sea.

    The box is clipped to longitudes [-180, 180] (a disc crossing the antimeridian keeps only the
    epicentre's side) and latitudes [-84, 84].
    """
    area = disc(lon, lat, radius_km)
    on_land = area.intersection(land_near(area))
    if on_land.is_empty:
        return None
    w, s, e, n = on_land.bounds
    w, e = max(w, -180.0), min(e, 180.0)
    s, n = max(s, -MAX_ABS_LAT), min(n, MAX_ABS_LAT)
    return (round(w, 4), round(s, 4), round(e, 4), round(n, 4))
