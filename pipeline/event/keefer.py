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
trigger coastal landslides, so we do not test the epicentre itself): the sweep box is the bounds
of the disc clipped to grown land (:func:`pipeline.event.land.clip_to_land`), so coastal events
do not sweep open sea.
"""

from __future__ import annotations

import math

from shapely.affinity import scale
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from pipeline.event.config import DEFAULT_MAX_RADIUS_KM, MAX_ABS_LAT, BBox
from pipeline.event.land import clip_to_land

KEEFER_LOG_AREA_OFFSET = 3.46
KEEFER_LOG_AREA_SIGMA = 0.47
MIN_RADIUS_KM = 5.0
KM_PER_DEGREE = 111.195


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


def sweep_bbox(lon: float, lat: float, radius_km: float) -> BBox | None:
    """The WGS84 box to sweep: bounds of the disc's part on (grown) land, or None if all sea.

    The box is clipped to longitudes [-180, 180] (a disc crossing the antimeridian keeps only the
    epicentre's side) and latitudes ``[-MAX_ABS_LAT, MAX_ABS_LAT]``.
    """
    on_land = clip_to_land(disc(lon, lat, radius_km))
    if on_land.is_empty:
        return None
    w, s, e, n = on_land.bounds
    w, e = max(w, -180.0), min(e, 180.0)
    s, n = max(s, -MAX_ABS_LAT), min(n, MAX_ABS_LAT)
    return (round(w, 4), round(s, 4), round(e, 4), round(n, 4))
