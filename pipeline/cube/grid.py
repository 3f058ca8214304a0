"""The output grid: a north-up UTM grid snapped to whole pixels around a WGS 84 bounding box."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from odc.geo import geom
from odc.geo.geobox import GeoBox

from pipeline.cube.items import CubeError


def utm_zone_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing a point.

    ``zone = floor((lon + 180) / 6) + 1`` (clamped to 1..60); ``EPSG = 32600 + zone`` north of
    the equator (``lat >= 0``), ``32700 + zone`` south of it. The Norway/Svalbard exceptions are
    ignored on purpose: the grid only has to be a conformal metric grid near the bbox.
    """
    zone = min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60)
    return (32600 if lat >= 0 else 32700) + zone


def _densified_ring(bbox: tuple[float, float, float, float], points_per_edge: int = 64) -> geom.Geometry:
    """Build the bbox outline in EPSG:4326 with ``points_per_edge`` vertices per edge.

    Projected to UTM, the straight lon/lat edges become curves; densifying first keeps the
    projected outline (and so its envelope) within a fraction of a metre of the true edge.
    """
    west, south, east, north = bbox
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    xs = np.concatenate([west + (east - west) * t, np.full_like(t, east),
                         east - (east - west) * t, np.full_like(t, west)])  # fmt: skip
    ys = np.concatenate([np.full_like(t, south), south + (north - south) * t,
                         np.full_like(t, north), north - (north - south) * t])  # fmt: skip
    coords = [*zip(xs.tolist(), ys.tolist(), strict=True)]
    return geom.polygon([*coords, coords[0]], crs="EPSG:4326")


def utm_geobox(bbox: tuple[float, float, float, float], resolution: float = 10.0) -> GeoBox:
    """North-up UTM grid covering a WGS 84 bounding box, pixel edges on multiples of ``resolution``.

    The zone is that of the bbox centre (:func:`utm_zone_epsg`). The bbox outline is projected
    to that CRS and its envelope snapped outward:
    ``x0 = floor(xmin / r) * r``, ``x1 = ceil(xmax / r) * r`` (same for y), so two runs over the
    same zone produce grids whose pixels coincide.

    Args:
        bbox: ``(west, south, east, north)`` in degrees, ``west <= east``, ``south <= north``.
        resolution: Pixel size in metres (> 0).

    Returns:
        A GeoBox with transform ``Affine(r, 0, x0, 0, -r, y1)`` and shape
        ``((y1 - y0) / r, (x1 - x0) / r)``, at least one pixel each way.

    Raises:
        CubeError: On a malformed bbox or a non-positive resolution.

    """
    west, south, east, north = (float(v) for v in bbox)
    if not (resolution > 0 and math.isfinite(resolution)):
        raise CubeError(f"resolution must be a positive number of metres, got {resolution!r}")
    if not (-180 <= west <= east <= 180 and -90 < south <= north < 90):
        raise CubeError(f"bbox {bbox!r} is not (west, south, east, north) in degrees")
    epsg = utm_zone_epsg((west + east) / 2.0, (south + north) / 2.0)
    xmin, ymin, xmax, ymax = _densified_ring((west, south, east, north)).to_crs(f"EPSG:{epsg}").boundingbox
    x0, x1 = math.floor(xmin / resolution) * resolution, math.ceil(xmax / resolution) * resolution
    y0, y1 = math.floor(ymin / resolution) * resolution, math.ceil(ymax / resolution) * resolution
    width = max(round((x1 - x0) / resolution), 1)
    height = max(round((y1 - y0) / resolution), 1)
    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y0 + height * resolution)
    return GeoBox((height, width), transform, f"EPSG:{epsg}")
