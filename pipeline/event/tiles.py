"""Sweep tiles of an event's area: a fixed global lon/lat grid, flat tiles skipped.

:func:`split_tiles` cuts the area into sweep tiles on a fixed global lon/lat grid (tile ids are
stable across ShakeMap versions, so a new version's added tiles are a set difference,
:func:`added_tiles`); each tile's sweep box is the bounds of its part of the area.
:func:`mark_flat` skips tiles whose maximum slope, read from a DEM's coarse overview through a
:data:`SlopeProbe`, is below a few degrees (a tile with no DEM is kept). :func:`area_geojson`
writes the area and its tiles as one GeoJSON document (``area.geojson``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from pipeline.errors import UserError
from pipeline.event.area import equal_area_km2, geodesic_km2
from pipeline.event.config import DEFAULT_FLAT_DEG, DEFAULT_TILE_DEG, BBox

#: ``probe(bbox) -> max slope (degrees) or None when no DEM covers it``.
SlopeProbe = Callable[[BBox], "float | None"]


@dataclass(frozen=True)
class AreaTile:
    """One sweep tile of an event's area.

    Attributes:
        id: ``x<i>y<j>``: the cell ``[i*tile_deg, (i+1)*tile_deg) x [j*tile_deg, ...)`` of the
            global grid (stable across ShakeMap versions).
        bbox: Sweep box: bounds of the area's part in the cell, rounded outward to 1e-4 degree.
        area_km2: The area's part in the cell (km²).
        max_slope_deg: Steepest slope of the DEM's coarse overview (None when not looked up).
        skip: Why it is not swept (``"flat"``), or None.
    """

    id: str
    bbox: BBox
    area_km2: float
    max_slope_deg: float | None = None
    skip: str | None = None


def _outward(b: tuple[float, ...]) -> BBox:
    w, s, e, n = b
    return (
        math.floor(w * 1e4) / 1e4,
        math.floor(s * 1e4) / 1e4,
        math.ceil(e * 1e4) / 1e4,
        math.ceil(n * 1e4) / 1e4,
    )


def split_tiles(area: BaseGeometry, tile_deg: float = DEFAULT_TILE_DEG) -> list[AreaTile]:
    """Cut ``area`` along a global ``tile_deg`` grid; one tile per cell the area has a part in."""
    if tile_deg <= 0:
        raise UserError(f"tile size must be positive, not {tile_deg}")
    if area.is_empty:
        return []
    w, s, e, n = area.bounds
    shapely.prepare(area)
    tiles = []
    for j in range(math.floor(s / tile_deg), math.ceil(n / tile_deg)):
        for i in range(math.floor(w / tile_deg), math.ceil(e / tile_deg)):
            cell = box(i * tile_deg, j * tile_deg, (i + 1) * tile_deg, (j + 1) * tile_deg)
            if not area.intersects(cell):
                continue
            part = area.intersection(cell)
            if part.is_empty or part.area == 0:
                continue
            tiles.append(AreaTile(id=f"x{i}y{j}", bbox=_outward(part.bounds), area_km2=geodesic_km2(part)))
    return tiles


def mark_flat(
    tiles: Iterable[AreaTile], probe: SlopeProbe | None, flat_deg: float = DEFAULT_FLAT_DEG
) -> list[AreaTile]:
    """Look up each tile's maximum slope with ``probe`` and mark flat tiles ``skip="flat"``.

    A tile the probe cannot see (no DEM: None) is kept; without a probe nothing is skipped.
    """
    out = []
    for t in tiles:
        slope = probe(t.bbox) if probe is not None else None
        flat = slope is not None and slope < flat_deg
        out.append(replace(t, max_slope_deg=slope, skip="flat" if flat else None))
    return out


def added_tiles(before: Iterable[AreaTile], after: Iterable[AreaTile]) -> list[AreaTile]:
    """Tiles of ``after`` not already swept in ``before``: new cells, or cells whose box grew."""
    old = {t.id: t.bbox for t in before}
    out = []
    for t in after:
        prev = old.get(t.id)
        grew = prev is None or not box(*prev).buffer(1e-9).contains(box(*t.bbox))
        if grew:
            out.append(t)
    return out


def max_slope_deg(dem: np.ndarray, res_x_m: float, res_y_m: float) -> float | None:
    """Steepest slope (degrees) of an elevation grid by central differences (None if all NaN)."""
    z = np.asarray(dem, dtype=np.float64)
    if z.shape[0] < 3 or z.shape[1] < 3 or not np.isfinite(z).any():
        return None
    gy, gx = np.gradient(z, res_y_m, res_x_m)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    return float(np.nanmax(slope)) if np.isfinite(slope).any() else None


def _read_window(
    href: str, bbox: BBox, resolution_m: float
) -> tuple[Any, BBox, tuple[int, int], float, float] | None:
    """Read the part of a DEM under ``bbox`` at about ``resolution_m``; None if it does not cover it."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    with rasterio.open(href) as src:
        w, s, e, n = transform_bounds("EPSG:4326", src.crs, *bbox)
        left, bottom, right, top = src.bounds
        cw, cs, ce, cn = max(w, left), max(s, bottom), min(e, right), min(n, top)
        if ce <= cw or cn <= cs:
            return None
        lat = math.radians((bbox[1] + bbox[3]) / 2)
        geographic = bool(src.crs.is_geographic)
        mx = 111_320.0 * math.cos(lat) if geographic else 1.0
        my = 110_574.0 if geographic else 1.0
        shape_ = (
            max(3, round((cn - cs) * my / resolution_m)),
            max(3, round((ce - cw) * mx / resolution_m)),
        )
        win = from_bounds(cw, cs, ce, cn, transform=src.transform)
        z = src.read(1, window=win, out_shape=shape_, resampling=Resampling.average, masked=True)
    return z, (cw, cs, ce, cn), shape_, mx, my


def dem_overview_probe(hrefs: Sequence[str], resolution_m: float = 250.0) -> SlopeProbe:
    """A :data:`SlopeProbe` over DEM COGs (Copernicus GLO-30 tiles, or any projected DEM), read coarsely.

    Each box is read at about ``resolution_m`` (GDAL serves it from the COG's overviews, a few kB
    per tile), nodata and the sea (elevation <= 0) as NaN; on a geographic DEM the slope uses
    metres per degree at the box's latitude. Returns the steepest slope over the DEM files that
    cover the box (0 where they cover only sea: such a tile is skipped as flat), or None when
    none covers it (the tile is kept).
    """

    def probe(bbox: BBox) -> float | None:
        from rasterio.errors import RasterioError

        best: float | None = None
        for href in hrefs:
            try:
                window = _read_window(href, bbox, resolution_m)
            except RasterioError:  # unreadable or unreachable: this file says nothing
                continue
            if window is None:
                continue
            z, (cw, cs, ce, cn), shape_, mx, my = window
            arr = np.where(np.ma.getmaskarray(z), np.nan, np.ma.getdata(z)).astype(np.float64)
            arr[arr <= 0] = np.nan
            # covered, but no land pixel: the sea is flat
            slope = max_slope_deg(arr, (ce - cw) / shape_[1] * mx, (cn - cs) / shape_[0] * my) or 0.0
            best = slope if best is None else max(best, slope)
        return best

    return probe


def swept_geometry(tiles: Iterable[AreaTile]) -> BaseGeometry:
    """What gets swept: the union of the sweep boxes of the tiles not skipped (WGS84)."""
    boxes = [box(*t.bbox) for t in tiles if t.skip is None]
    return shapely.union_all(boxes) if boxes else shapely.MultiPolygon()


def swept_km2(tiles: Iterable[AreaTile]) -> float:
    """Area (km², :data:`~pipeline.event.area.EQUAL_AREA_CRS`) of :func:`swept_geometry`."""
    return equal_area_km2(swept_geometry(tiles))


def area_geojson(area: BaseGeometry, tiles: Sequence[AreaTile], properties: dict[str, Any]) -> dict[str, Any]:
    """The planned area, what gets swept and the tiles, as a WGS84 GeoJSON FeatureCollection.

    The first feature (``kind: area``) is the land-clipped area with ``properties``; the second
    (``kind: swept``) the union of the sweep boxes of the tiles not skipped, with its
    ``swept_km2`` (EPSG:6933), which is what a sweep covers; then one ``kind: tile`` feature per
    tile (its sweep box, ``area_km2`` of the area's part in it, ``box_km2``, ``max_slope_deg``,
    ``skip``).
    """
    swept = swept_geometry(tiles)
    feats = [
        {
            "type": "Feature",
            "id": "area",
            "geometry": mapping(area),
            "properties": {"kind": "area", **properties},
        },
        {
            "type": "Feature",
            "id": "swept",
            "geometry": mapping(swept),
            "properties": {
                "kind": "swept",
                "swept_km2": round(equal_area_km2(swept), 3),
                "tiles": sum(t.skip is None for t in tiles),
            },
        },
    ]
    for t in tiles:
        feats.append(
            {
                "type": "Feature",
                "id": t.id,
                "geometry": mapping(box(*t.bbox)),
                "properties": {
                    "kind": "tile",
                    "tile": t.id,
                    "area_km2": round(t.area_km2, 3),
                    "box_km2": round(equal_area_km2(box(*t.bbox)), 3),
                    "max_slope_deg": None if t.max_slope_deg is None else round(t.max_slope_deg, 2),
                    "skip": t.skip,
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def tiles_from_geojson(doc: dict[str, Any]) -> list[AreaTile]:
    """The tiles of a document written by :func:`area_geojson`."""
    out = []
    for f in doc.get("features", []):
        p = f.get("properties") or {}
        if p.get("kind") == "tile":
            b = shape(f["geometry"]).bounds
            out.append(
                AreaTile(
                    p["tile"],
                    (b[0], b[1], b[2], b[3]),
                    float(p["area_km2"]),
                    p.get("max_slope_deg"),
                    p.get("skip"),
                )
            )
    return out


def area_from_geojson(doc: dict[str, Any]) -> BaseGeometry:
    """The ``kind: area`` geometry of a document written by :func:`area_geojson`."""
    for f in doc.get("features", []):
        if (f.get("properties") or {}).get("kind") == "area":
            return shape(f["geometry"])
    return shapely.MultiPolygon()
