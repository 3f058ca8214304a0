"""A Web Mercator (EPSG:3857) multiscale pyramid of the probability, as a separate Zarr (format 2).

Why not ``ndpyramid.pyramid_reproject`` itself: it reprojects every level onto the *whole world*
(level ``k`` is ``256 * 2**k`` pixels square, in memory), which at the ~10 m zoom a regional
mosaic needs (zoom 14: four million pixels square) cannot be built. This pyramid keeps
ndpyramid's layout and ``multiscales`` metadata (levels ``"0"``, ``"1"``, ... as child groups,
written with :func:`ndpyramid.utils.multiscales_template`) but each level covers only the XYZ
tiles the mosaic touches:

* ``max_zoom``: the first zoom whose ground pixel (at the mosaic's centre latitude) is no larger
  than the store's pixel, so the finest level loses no detail (10 m at 43 N gives zoom 14).
* ``min_zoom``: the largest zoom at which the mosaic lies inside one 256-pixel XYZ tile, so the top
  level is one tile. When the mosaic straddles the edges of big tiles, we go at most two zooms
  coarser than the zoom where it merely fits in a tile's size, and otherwise accept a top level
  of up to two by two tiles.
* level ``k`` is zoom ``min_zoom + k``; its grid is the tile-aligned cover of the mosaic: shape
  ``(256 * tiles_y, 256 * tiles_x)``, chunks 256, so chunk ``(i, j)`` of level ``k`` *is* the XYZ tile
  ``(zoom, tile_x0 + j, tile_y0 + i)`` (``tile_x0``/``tile_y0`` are in the level's attributes).

Web clients: ``@carbonplan/zarr-layer`` and ``@carbonplan/maps`` place level ``k`` as zoom ``k`` of
the whole world (ndpyramid's global levels), so they cannot place this pyramid (level 0 here is
zoom ``min_zoom``, ~10-11 for a region). The web map therefore gets XYZ PNG tiles made from these
very levels (:mod:`pipeline.products.webmap.tiles`); this Zarr pyramid is for xarray/GDAL users.

Levels are reprojected lazily with :mod:`odc.geo` (average resampling, NaN outside the valid
area) and streamed to Zarr chunk by chunk, so memory stays bounded for large stores.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
import xarray as xr
from affine import Affine
from ndpyramid.utils import multiscales_template
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from pipeline.store.reader import store_crs, store_transform

TILE = 256
#: Half the Web Mercator world width, metres.
ORIGIN = 20037508.342789244
WORLD = 2 * ORIGIN
EARTH_CIRCUMFERENCE = 40075016.68557849
MAX_ZOOM_CAP = 18


def _bounds_3857(ds: xr.Dataset) -> tuple[float, float, float, float]:
    t = store_transform(ds)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    x0, y0 = t.c, t.f
    x1, y1 = t @ (nx, ny)
    tr = Transformer.from_crs(store_crs(ds), 3857, always_xy=True)
    return tr.transform_bounds(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), densify_pts=21)


def _tile_range(bounds: tuple[float, float, float, float], zoom: int) -> tuple[int, int, int, int]:
    """Inclusive XYZ tile range (x0, y0, x1, y1) covering ``bounds`` at ``zoom``."""
    n = 2**zoom
    size = WORLD / n
    west, south, east, north = bounds
    eps = 1e-6 * size
    tx0 = math.floor((west + ORIGIN) / size)
    ty0 = math.floor((ORIGIN - north) / size)
    # an east/south edge exactly on a tile edge does not take the next tile (but keep >= 1 tile)
    tx1 = max(tx0, math.floor((east - eps + ORIGIN) / size))
    ty1 = max(ty0, math.floor((ORIGIN - south - eps) / size))

    def clamp(v: int) -> int:
        return int(max(0, min(n - 1, v)))

    return clamp(tx0), clamp(ty0), clamp(tx1), clamp(ty1)


def zoom_range(ds: xr.Dataset) -> tuple[int, int]:
    """(min_zoom, max_zoom) of the pyramid for this store; see the module docstring."""
    bounds = _bounds_3857(ds)
    t = store_transform(ds)
    res = max(abs(t.a), abs(t.e))
    lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(
        (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    )[1]
    ground = EARTH_CIRCUMFERENCE * math.cos(math.radians(lat)) / TILE  # metres per pixel at zoom 0
    max_zoom = min(MAX_ZOOM_CAP, max(0, math.ceil(math.log2(ground / res))))
    span = max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    fit = max(0, min(max_zoom, math.floor(math.log2(WORLD / span)))) if span > 0 else max_zoom
    # prefer a single top tile; go up to two zooms coarser for it, else accept a 2x2 top level
    for zoom in range(fit, max(fit - 3, -1), -1):
        tx0, ty0, tx1, ty1 = _tile_range(bounds, zoom)
        if tx0 == tx1 and ty0 == ty1:
            return zoom, max_zoom
    return fit, max_zoom


def level_geobox(ds: xr.Dataset, zoom: int) -> tuple[GeoBox, tuple[int, int]]:
    """Return the tile-aligned EPSG:3857 grid of one zoom level and its first tile (x, y)."""
    tx0, ty0, tx1, ty1 = _tile_range(_bounds_3857(ds), zoom)
    res = WORLD / (2**zoom * TILE)
    left, top = -ORIGIN + tx0 * TILE * res, ORIGIN - ty0 * TILE * res
    shape = ((ty1 - ty0 + 1) * TILE, (tx1 - tx0 + 1) * TILE)
    return GeoBox(shape, Affine(res, 0.0, left, 0.0, -res, top), "EPSG:3857"), (tx0, ty0)


def _probability(ds: xr.Dataset) -> xr.DataArray:
    prob = ds["probability"].astype(np.float32)
    prob = prob.odc.assign_crs(store_crs(ds).to_wkt())
    prob.attrs = {"long_name": "landslide probability", "units": "1"}
    prob.encoding = {}
    return prob


def level_probability(
    ds: xr.Dataset, zoom: int, *, prob: xr.DataArray | None = None
) -> tuple[xr.DataArray, GeoBox, tuple[int, int]]:
    """Return one zoom level: the lazy probability on its tile-aligned grid, the grid, its first tile.

    Chunk ``(i, j)`` of the returned array (chunks of :data:`TILE`) is XYZ tile
    ``(zoom, tile_x0 + j, tile_y0 + i)``. Any zoom works, also coarser than ``zoom_range``'s.
    """
    gbox, first = level_geobox(ds, zoom)
    src = _probability(ds) if prob is None else prob
    level = src.odc.reproject(gbox, resampling="average", dst_nodata=np.nan)
    return level.chunk({"y": TILE, "x": TILE}).rename("probability"), gbox, first


def build_pyramid(ds: xr.Dataset) -> xr.DataTree:
    """Build the lazy pyramid: a DataTree with one child per level (``"0"`` is the coarsest)."""
    min_zoom, max_zoom = zoom_range(ds)
    prob = _probability(ds)
    children: dict[str, xr.Dataset] = {}
    datasets: list[dict[str, Any]] = []
    for k, zoom in enumerate(range(min_zoom, max_zoom + 1)):
        level, gbox, (tx0, ty0) = level_probability(ds, zoom, prob=prob)
        lds = level.to_dataset()
        lds = lds.rio.write_crs("EPSG:3857").rio.write_transform(gbox.transform)
        lds["probability"].attrs.update(grid_mapping="spatial_ref", long_name="landslide probability")
        lds.attrs.update(zoom=zoom, tile_x0=tx0, tile_y0=ty0, tile_size=TILE)
        children[str(k)] = lds
        datasets.append({"path": str(k), "level": k, "zoom": zoom, "crs": "EPSG:3857"})
    root = xr.Dataset(
        attrs={
            "multiscales": multiscales_template(
                datasets=datasets,
                type="reduce",
                method="tile-aligned web-mercator reprojection (pipeline.products.pyramid)",
                version="1",
                kwargs={"pixels_per_tile": TILE, "resampling": "average", "projection": "web-mercator"},
            ),
            "title": "landslide probability, Web Mercator pyramid",
            "proj:code": "EPSG:3857",
            "min_zoom": min_zoom,
            "max_zoom": max_zoom,
        }
    )
    return xr.DataTree.from_dict({"/": root, **{f"/{k}": v for k, v in children.items()}})


def write_pyramid(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write the pyramid of ``ds.probability`` to a Zarr (format 2, consolidated) at ``path``."""
    tree = build_pyramid(ds)
    encoding = {
        f"/{name}": {"probability": {"chunks": (TILE, TILE), "_FillValue": np.float32("nan")}}
        for name in tree.children
    }
    tree.to_zarr(path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return Path(path)
