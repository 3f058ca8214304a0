"""An event's area: the ShakeMap's shaken cells (or the Keefer disc) on land, and its size.

:func:`shakemap_area` keeps the cells with PGA >= 0.10 g (the USGS Ground Failure rule) or with
MMI >= a threshold and clips them to land (:mod:`pipeline.event.land`); :func:`keefer_area` is
the fallback when there is no ShakeMap (:mod:`pipeline.event.keefer`). Areas are measured on the
ellipsoid (:func:`geodesic_km2`).
"""

from __future__ import annotations

import functools

import numpy as np
import shapely
from pyproj import Geod, Transformer
from shapely.geometry.base import BaseGeometry

from pipeline.event.config import DEFAULT_PGA_G
from pipeline.event.keefer import disc
from pipeline.event.land import clip_to_land
from pipeline.event.shakemap import ShakeGrid, shaken_area

_GEOD = Geod(ellps="WGS84")
#: The equal-area grid boxes are measured on (WGS 84 / NSIDC EASE-Grid 2.0 Global, cylindrical):
#: parallels and meridians are straight lines in it, so a lon/lat box's area is exact.
EQUAL_AREA_CRS = "EPSG:6933"


def geodesic_km2(geom: BaseGeometry) -> float:
    """Area of a WGS84 geometry on the ellipsoid, in km²."""
    if geom.is_empty:
        return 0.0
    return abs(_GEOD.geometry_area_perimeter(geom)[0]) / 1e6


@functools.cache
def _to_equal_area() -> Transformer:
    return Transformer.from_crs("EPSG:4326", EQUAL_AREA_CRS, always_xy=True)


def equal_area_km2(geom: BaseGeometry) -> float:
    """Area of a WGS84 geometry in :data:`EQUAL_AREA_CRS`, in km² (edges follow lon/lat lines).

    Edges are densified to 0.01 degree first, so a slanted edge is measured as the straight
    lon/lat line it is in the geometry (a box's edges need no densifying: they stay straight).
    """
    if geom.is_empty:
        return 0.0
    fine = shapely.segmentize(geom, 0.01)
    proj = shapely.transform(fine, lambda xy: np.column_stack(_to_equal_area().transform(xy[:, 0], xy[:, 1])))
    return float(proj.area) / 1e6


def shakemap_area(
    grid: ShakeGrid, pga_g: float | None = DEFAULT_PGA_G, mmi: float | None = None
) -> BaseGeometry:
    """The shaken cells at or above the threshold, on (grown) land."""
    return clip_to_land(shaken_area(grid, pga_g=pga_g, mmi=mmi))


def keefer_area(lon: float, lat: float, radius_km: float) -> BaseGeometry:
    """The Keefer disc of ``radius_km`` around the epicentre, on (grown) land."""
    return clip_to_land(disc(lon, lat, radius_km))
