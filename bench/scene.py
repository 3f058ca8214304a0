"""Larger benchmark scenes made by tiling the embedded demo scene's real COGs.

The demo scene (384 x 640 px at 10 m, 24.6 km2) is repeated ``reps_y x reps_x`` times on a
larger grid with the same origin and CRS; each band becomes one COG written exactly like the
demo's (:func:`pipeline.demo.build_scene.write_cog`), and a matching local STAC ItemCollection
(the demo's items with the grown footprint) is written beside them. The pixels are real
Landslide4Sense data; the repetition is only there to give the sweep more area to cover.

:func:`build_multi_scene` makes a window with several overlapping acquisitions of that area
(for the data-path bench): each is the real tiled scene with a per-acquisition radiometric jitter
(gain per band, noise per pixel), its own processing baseline (04.00 and later add 1000 DN) and
clouds: a smooth seeded cloud field, shifted for each acquisition, written into the SCL (9 cores,
8 edges, 10 thin cirrus, 3 shadows offset from the clouds) and into the bands (bright under cloud,
dark under shadow), so a composite that ignored the SCL would be visibly wrong.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from pyproj import Transformer
from scipy import ndimage

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


#: Processing baselines of the acquisitions of :func:`build_multi_scene`, in date order.
MULTI_BASELINES = ("02.09", "03.01", "04.00", "05.10")
#: Days between acquisitions (all inside the demo's post-event window).
MULTI_STEP_DAYS = 5
#: Shift of the cloud field between acquisitions (rows, cols of 10 m pixels).
CLOUD_SHIFT_PX = (97, 211)


def _cloud_field(shape: tuple[int, int], seed: int) -> NDArray[np.float32]:
    """A smooth random field in [0, 1] (Gaussian-filtered noise, 400 m correlation), seeded."""
    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.standard_normal((shape[0] // 8 + 2, shape[1] // 8 + 2)), 5.0)
    field = ndimage.zoom(coarse, 8, order=1)[: shape[0], : shape[1]]
    lo, hi = float(field.min()), float(field.max())
    return ((field - lo) / (hi - lo)).astype(np.float32)


def _acquisition_scl(
    base: NDArray[np.uint8], field: NDArray[np.float32], k: int
) -> tuple[NDArray[np.uint8], NDArray[np.bool_], NDArray[np.bool_]]:
    """SCL of acquisition ``k``: the cloud field shifted ``k`` times, ~20-30 % of the area cloudy."""
    f = np.roll(field, (k * CLOUD_SHIFT_PX[0], k * CLOUD_SHIFT_PX[1]), axis=(0, 1))
    scl = base.copy()
    cloud = f > 0.62
    shadow = np.roll(cloud, (25, -30), axis=(0, 1)) & ~cloud
    scl[shadow] = 3
    scl[cloud] = 8
    scl[f > 0.7] = 9
    if k % 2 == 1:  # thin cirrus over part of every other acquisition
        scl[(f > 0.5) & (f <= 0.62)] = 10
    scl[base == 0] = 0
    return scl, cloud, shadow


def build_multi_scene(
    out: Path, reps_y: int, reps_x: int, acquisitions: int = 4, seed: int = 12, level: int = 6
) -> BenchScene:
    """Write ``acquisitions`` overlapping cloudy acquisitions of the tiled demo area into ``out``.

    Acquisition ``k`` is dated ``DEMO_DATETIME + 5 k`` days, has baseline ``MULTI_BASELINES[k]``
    (cycled) and lives in ``out/a<k>/``; one DEM is shared. Deterministic for a given ``seed``.

    Args:
        out: Directory (created).
        reps_y: Copies of the demo scene along y.
        reps_x: Copies along x.
        acquisitions: Number of acquisitions (distinct solar days).
        seed: Seed of the jitter and the cloud field.
        level: DEFLATE level of the COGs.

    Returns:
        The scene (``files`` lists every COG of every acquisition and the DEM).
    """
    from pipeline.bands import dn_offset

    out.mkdir(parents=True, exist_ok=True)
    grid = tiled_grid(reps_y, reps_x)
    tiles = {}
    for name in _FILES:
        with rasterio.open(demo.DEMO_DIR / f"{name}.tif") as src:
            tiles[name] = np.tile(src.read(1), (reps_y, reps_x))
    field = _cloud_field(grid.shape, seed)
    rng = np.random.default_rng(seed + 1)
    ring, bbox = footprint(grid)
    features = []
    files: list[Path] = []
    for k in range(acquisitions):
        sub = out / f"a{k}"
        sub.mkdir(exist_ok=True)
        baseline = MULTI_BASELINES[k % len(MULTI_BASELINES)]
        offset = dn_offset(baseline)
        scl, cloud, shadow = _acquisition_scl(tiles["SCL"], field, k)
        for band in demo.DEMO_S2_ASSETS:
            dn = tiles[band].astype(np.float32)
            nodata = dn == 0
            dn = dn * np.float32(1.0 + rng.normal(0.0, 0.02)) + rng.normal(0.0, 8.0, dn.shape).astype(
                np.float32
            )
            dn = np.where(cloud, 5000.0 + 3000.0 * field, dn)
            dn = np.where(shadow, dn * 0.4, dn)
            dn = np.clip(np.rint(dn) + offset, 1, 65535).astype(np.uint16)
            dn[nodata] = 0
            write_cog(sub / f"{band}.tif", dn, grid, nodata=0, resampling="average", level=level)
            files.append(sub / f"{band}.tif")
        write_cog(sub / "SCL.tif", scl, grid, nodata=0, resampling="nearest", level=level)
        files.append(sub / "SCL.tif")
        item = s2_item(grid, ring, bbox, round(float(np.isin(scl, (8, 9, 10)).mean() * 100), 3))
        when = demo.DEMO_DATETIME + dt.timedelta(days=MULTI_STEP_DAYS * k)
        item["id"] = f"{item['id']}-A{k}"
        item["properties"]["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        item["properties"]["s2:processing_baseline"] = baseline
        for asset in item["assets"].values():
            asset["href"] = asset["href"].replace("./", f"./a{k}/", 1)
        features.append(item)
    write_cog(out / "dem.tif", tiles["dem"], grid, nodata=None, resampling="average", level=level)
    files.append(out / "dem.tif")
    features.append(dem_item(grid, ring, bbox))
    catalog = out / "catalog.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1) + "\n")
    return BenchScene(catalog, inner_bbox(grid), grid.shape, (reps_y, reps_x), tuple(files))
