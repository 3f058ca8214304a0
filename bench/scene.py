"""Larger benchmark scenes made by tiling the embedded demo scene's real COGs.

The demo scene (384 x 640 px at 10 m, 24.6 km2) is repeated ``reps_y x reps_x`` times on a
larger grid with the same origin and CRS; each band becomes one COG written exactly like the
demo's (:func:`pipeline.demo.build_scene.write_cog`), and a matching local STAC ItemCollection
(the demo's items with the grown footprint) is written beside them. The pixels are real
Landslide4Sense data; the repetition is only there to give the sweep more area to cover.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer

from pipeline.demo import scene as demo
from pipeline.demo.build_scene import dem_item, footprint, s2_item, write_cog

#: Inset of the search box inside the scene footprint (metres): keeps the box inside the data.
BBOX_INSET_M = 100.0
#: Files of the demo scene that are tiled, with their COG overview resampling.
_FILES: dict[str, tuple[str, float | None]] = {
    **{band: ("average", 0) for band in demo.DEMO_S2_ASSETS},
    "SCL": ("nearest", 0),
    "dem": ("average", None),
}


@dataclass(frozen=True)
class BenchScene:
    """A tiled scene on disk.

    Attributes:
        catalog: Path of its STAC ItemCollection.
        bbox: WGS84 search box inside the footprint.
        shape: ``(rows, cols)`` of the raster grid in pixels.
        reps: ``(reps_y, reps_x)`` copies of the demo scene.
        files: Every raster file of the scene.
    """

    catalog: Path
    bbox: tuple[float, float, float, float]
    shape: tuple[int, int]
    reps: tuple[int, int]
    files: tuple[Path, ...]

    @property
    def area_km2(self) -> float:
        """Area of the raster grid (10 m pixels)."""
        return self.shape[0] * self.shape[1] * 1e-4

    @property
    def band_files(self) -> dict[str, Path]:
        """Spectral band COGs by asset key."""
        return {p.stem: p for p in self.files if p.stem in demo.DEMO_S2_ASSETS}


def inner_bbox(grid: demo.SceneGrid, inset_m: float = BBOX_INSET_M) -> tuple[float, float, float, float]:
    """Largest WGS84 lon/lat box inside the (slightly rotated) UTM footprint, inset by ``inset_m``."""
    to_wgs84 = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = grid.bounds
    xmin, ymin, xmax, ymax = xmin + inset_m, ymin + inset_m, xmax - inset_m, ymax - inset_m
    n = 32
    xs = np.linspace(xmin, xmax, n)
    ys = np.linspace(ymin, ymax, n)
    west = max(to_wgs84.transform(xmin, y)[0] for y in ys)
    east = min(to_wgs84.transform(xmax, y)[0] for y in ys)
    south = max(to_wgs84.transform(x, ymin)[1] for x in xs)
    north = min(to_wgs84.transform(x, ymax)[1] for x in xs)
    return (round(west, 6), round(south, 6), round(east, 6), round(north, 6))


def tiled_grid(reps_y: int, reps_x: int) -> demo.SceneGrid:
    """The demo grid grown to ``reps_y x reps_x`` copies (same origin, CRS and chip)."""
    g = demo.DEMO_GRID
    return replace(g, rows=g.rows * reps_y, cols=g.cols * reps_x)


def build_tiled_scene(out: Path, reps_y: int, reps_x: int) -> BenchScene:
    """Write the demo scene tiled ``reps_y x reps_x`` times into ``out`` (COGs + STAC items).

    Args:
        out: Directory (created).
        reps_y: Copies along y.
        reps_x: Copies along x.

    Returns:
        The scene's catalog, search box and grid shape.
    """
    out.mkdir(parents=True, exist_ok=True)
    grid = tiled_grid(reps_y, reps_x)
    files = []
    for name, (resampling, nodata) in _FILES.items():
        with rasterio.open(demo.DEMO_DIR / f"{name}.tif") as src:
            tile = src.read(1)
        path = out / f"{name}.tif"
        write_cog(path, np.tile(tile, (reps_y, reps_x)), grid, nodata=nodata, resampling=resampling)
        files.append(path)
    ring, bbox = footprint(grid)
    items = {"type": "FeatureCollection",
             "features": [s2_item(grid, ring, bbox, 0.0), dem_item(grid, ring, bbox)]}  # fmt: skip
    catalog = out / "catalog.json"
    catalog.write_text(json.dumps(items, indent=1) + "\n")
    return BenchScene(catalog, inner_bbox(grid), grid.shape, (reps_y, reps_x), tuple(files))
