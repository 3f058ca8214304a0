"""Landslide polygons from the probability mosaic, whole across block borders, in bounded memory.

Method (window-and-stitch):

1. The mosaic is read one window at a time (``window`` pixels square, aligned to the store's
   chunks), never whole. In each window the landslide mask is ``valid == 1 & probability >=
   threshold``; its 4-connected components are labelled (:func:`scipy.ndimage.label`) and
   polygonised with :func:`rasterio.features.shapes` (also 4-connected, so one component is one
   polygon, holes included). Per component we keep exact sums, not means: pixel count, sum and
   max of probability, sum of slope.
2. A component that touches no window edge shared with a neighbouring window is final. One that
   does is a *piece*; pieces are kept (their number grows with the window perimeter, not the area).
3. After the last window, pieces that share a boundary *segment* (not just a corner, to stay
   4-connected) are grouped with a union-find over an STR-tree of their envelopes, dissolved with
   :func:`shapely.union_all`, and their sums added. The result equals polygonising the whole
   array at once; memory is one window plus the polygons.
4. The minimum area is applied to the whole polygon, after stitching.

``area_m2`` is the pixel count times the pixel area (equal to the polygon area, holes excluded).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pipeline.products.defaults import DEFAULT_MIN_AREA_M2, DEFAULT_WINDOW, POLYGON_LAYER
from pipeline.store.reader import store_crs, store_threshold, store_transform

__all__ = ["DEFAULT_MIN_AREA_M2", "DEFAULT_WINDOW", "landslide_polygons", "write_geojson", "write_geoparquet"]
COLUMNS = ["id", "area_m2", "n_pixels", "mean_probability", "max_probability", "mean_slope_deg"]
_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass
class _Part:
    geom: BaseGeometry
    n: int
    p_sum: float
    p_max: float
    s_sum: float


def _windows(shape: tuple[int, int], window: int) -> Iterator[tuple[slice, slice]]:
    for r0 in range(0, shape[0], window):
        for c0 in range(0, shape[1], window):
            yield slice(r0, min(r0 + window, shape[0])), slice(c0, min(c0 + window, shape[1]))


def _window_parts(
    prob: np.ndarray,
    valid: np.ndarray,
    slope: np.ndarray,
    threshold: float,
    transform: Affine,
    inner_edges: tuple[bool, bool, bool, bool],
) -> tuple[list[_Part], list[_Part]]:
    """Components of one window, split into (final, touching a shared window edge)."""
    mask = (valid == 1) & np.isfinite(prob) & (prob >= threshold)
    labels, n = ndimage.label(mask, structure=_FOUR)
    if n == 0:
        return [], []
    idx = np.arange(1, n + 1)
    count = ndimage.sum_labels(np.ones_like(prob, dtype=np.float64), labels, idx)
    p_sum = ndimage.sum_labels(prob.astype(np.float64), labels, idx)
    p_max = ndimage.maximum(prob, labels, idx)
    s_sum = ndimage.sum_labels(np.nan_to_num(slope.astype(np.float64)), labels, idx)
    top, bottom, left, right = inner_edges
    border: set[int] = set()
    for use, edge in ((top, labels[0]), (bottom, labels[-1]), (left, labels[:, 0]), (right, labels[:, -1])):
        if use:
            border.update(int(v) for v in np.unique(edge) if v)
    final: list[_Part] = []
    open_: list[_Part] = []
    for geom, value in shapes(labels.astype(np.int32), mask=mask, connectivity=4, transform=transform):
        k = int(value) - 1
        part = _Part(shape(geom), int(count[k]), float(p_sum[k]), float(p_max[k]), float(s_sum[k]))
        (open_ if int(value) in border else final).append(part)
    return final, open_


def _stitch(pieces: list[_Part]) -> list[_Part]:
    """Merge pieces that share a boundary segment (4-connected across window edges)."""
    if not pieces:
        return []
    geoms = [p.geom for p in pieces]
    parent = list(range(len(pieces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i < j and shapely.intersection(geoms[i], geoms[j]).length > 0:
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(find(i), []).append(i)
    merged = []
    for members in groups.values():
        parts = [pieces[i] for i in members]
        geom = parts[0].geom if len(parts) == 1 else shapely.union_all([p.geom for p in parts])
        merged.append(
            _Part(
                geom,
                sum(p.n for p in parts),
                sum(p.p_sum for p in parts),
                max(p.p_max for p in parts),
                sum(p.s_sum for p in parts),
            )
        )
    return merged


def landslide_polygons(
    ds: xr.Dataset,
    *,
    threshold: float | None = None,
    min_area_m2: float = DEFAULT_MIN_AREA_M2,
    window: int = DEFAULT_WINDOW,
) -> gpd.GeoDataFrame:
    """Vectorise the landslide mask of a result store, stitching polygons across windows.

    Args:
        ds: The result store (lazy), as :func:`pipeline.store.open_result` returns it.
        threshold: Probability threshold; the store's ``landslide:threshold`` if None.
        min_area_m2: Drop polygons smaller than this (square metres).
        window: Window side in pixels; memory is about 20 bytes times ``window**2``.

    Returns:
        One row per landslide in the store's CRS with columns ``id``, ``area_m2``, ``n_pixels``,
        ``mean_probability``, ``max_probability``, ``mean_slope_deg``, sorted by area, largest first.

    """
    thr = store_threshold(ds, threshold)
    transform = store_transform(ds)
    crs = store_crs(ds)
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    final: list[_Part] = []
    pieces: list[_Part] = []
    for rows, cols in _windows((ny, nx), window):
        sub = ds[["probability", "valid", "slope"]].isel(y=rows, x=cols).load()
        inner = (rows.start > 0, rows.stop < ny, cols.start > 0, cols.stop < nx)
        f, o = _window_parts(
            sub["probability"].values,
            sub["valid"].values,
            sub["slope"].values,
            thr,
            transform @ Affine.translation(cols.start, rows.start),
            inner,
        )
        final.extend(f)
        pieces.extend(o)
    parts = [p for p in final + _stitch(pieces) if p.n * pixel_area >= min_area_m2]
    parts.sort(key=lambda p: (-p.n, -p.geom.bounds[3], p.geom.bounds[0]))
    data = {
        "id": np.arange(1, len(parts) + 1, dtype=np.int64),
        "area_m2": np.array([p.n * pixel_area for p in parts], dtype=np.float64),
        "n_pixels": np.array([p.n for p in parts], dtype=np.int64),
        "mean_probability": np.array([p.p_sum / p.n for p in parts], dtype=np.float64),
        "max_probability": np.array([p.p_max for p in parts], dtype=np.float64),
        "mean_slope_deg": np.array([p.s_sum / p.n for p in parts], dtype=np.float64),
    }
    return gpd.GeoDataFrame(data, geometry=[p.geom for p in parts], crs=crs.to_wkt())


def write_geoparquet(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write polygons as GeoParquet in their own CRS (the sweep's UTM zone)."""
    gdf.to_parquet(path, index=False, compression="zstd", write_covering_bbox=True)
    return Path(path)


def write_geojson(gdf: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write polygons as RFC 7946 GeoJSON (EPSG:4326, lon/lat, 7 decimals).

    The layer is named :data:`~pipeline.products.defaults.POLYGON_LAYER` whatever the file is
    called (GDAL would otherwise name it after the file, which the export writes under a
    temporary name), so QGIS and ``ogrinfo`` show ``landslides`` and re-exports are identical.
    """
    gdf.to_crs(4326).to_file(
        path,
        driver="GeoJSON",
        engine="pyogrio",
        layer=POLYGON_LAYER,
        layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": 7},
    )
    return Path(path)
