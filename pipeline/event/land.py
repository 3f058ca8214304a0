"""The land mask: Natural Earth 1:110m land, grown by a margin before an area is clipped to it.

Land is the Natural Earth 1:110m Admin-0 countries, dissolved into one multipolygon (public
domain; bundled as ``pipeline/event/data/land_110m.geojson``, built from the copy shipped in
pyogrio's test fixtures). 1:110m coastlines are off by kilometres and lack small islands, so the
land near an area is grown by ``LAND_MARGIN_DEG`` before the clip: the area errs on the large
side and never drops a coastal cliff.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pipeline.event.config import LAND_MARGIN_DEG

LAND_FILE = Path(__file__).resolve().parent / "data" / "land_110m.geojson"


@functools.cache
def land() -> BaseGeometry:
    """The bundled 1:110m land multipolygon (prepared for fast intersection tests)."""
    doc = json.loads(LAND_FILE.read_text())
    geom = shapely.union_all([shape(f["geometry"]) for f in doc["features"]])
    shapely.prepare(geom)
    return geom


def clip_to_land(
    area: BaseGeometry, land_geom: BaseGeometry | None = None, margin_deg: float = LAND_MARGIN_DEG
) -> BaseGeometry:
    """The part of ``area`` on land grown by ``margin_deg`` (only land near the area is grown).

    Args:
        area: A WGS84 geometry.
        land_geom: The land mask; None for the bundled one (:func:`land`).
        margin_deg: How far land is grown before the clip (degrees).
    """
    land_geom = land() if land_geom is None else land_geom
    if area.is_empty:
        return area
    reach = area.buffer(margin_deg, quad_segs=4)
    near = land_geom.intersection(reach)
    if near.is_empty:
        return shapely.MultiPolygon()
    clipped = area.intersection(near.buffer(margin_deg, quad_segs=4))
    return shapely.make_valid(clipped)
