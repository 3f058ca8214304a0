"""A test and bench scene laid out the way Planetary Computer serves Sentinel-2 and the DEM.

The all-10 m demo scene (:mod:`pipeline.demo.scene`) is tidy: every band on the output grid, the
DEM a 10 m raster in the same CRS. Planetary Computer serves something else, and this builder
writes that, from the same real Landslide4Sense pixels:

* **native resolutions**: B02, B03, B04, B08 at 10 m; B05, B06, B07, B11, B12 and SCL at 20 m;
  B01 and B09 at 60 m (the project's band set, :data:`pipeline.bands.S2_L2A_ASSETS`, has no B8A);
  a 20 m or 60 m pixel is the mean of the 10 m pixels it covers (SCL: the class at its centre);
* **overlapping MGRS tiles**: two tiles of the area's own UTM zone (north and south, overlapping
  in a band across the middle, their origins on the 60 m lattice like real tiles, so the 10 m
  output grid sees 20 m and 60 m pixels at odd offsets) over the west 85 % of the area, and one
  tile of the **neighbouring zone** (zone + 1) over the east 30 %, all of one orbit (one
  datatake, one datetime); the east 15 % is covered only by the neighbouring zone's tile, whose
  pixels must be reprojected;
* **a swath edge**: every tile has no data (0) west of a diagonal line across the area;
* **the DEM as Copernicus GLO-30 tiles**: EPSG:4326, 1 arc-second pixels centred on whole
  arc-seconds (PC's ``proj:transform`` starts half a pixel west/north of the degree), one item per
  1-degree cell the area touches (``Copernicus_DSM_COG_10_N43_00_E143_00_DEM``...). Each file
  holds only the part of its cell around the area (a real tile is 3600 x 3600 px), described by
  its own ``proj:shape``/``proj:transform``;
* **items shaped like PC's** ``sentinel-2-l2a`` and ``cop-dem-glo-30`` items: PC asset keys and
  titles, per-asset ``proj:shape``/``proj:transform``/``proj:bbox``/``gsd``, ``proj:code`` at item
  level (projection extension 2.0), ``s2:processing_baseline``, ``s2:mgrs_tile``,
  ``eo:cloud_cover``, ``s2:nodata_pixel_percentage``, PC-style ids.

The default area straddles the 144 degree E meridian (UTM 54/55) and the 43 degree N parallel in
eastern Hokkaido, so part of the area lies in the neighbouring zone and the DEM has a seam in
both directions inside it (four GLO-30 tiles). The caller may place the area anywhere (``bbox``);
tile names and the location are nominal, the pixels are the real demo's.

The "world" every tile samples is the demo scene repeated periodically on the area's UTM 10 m
lattice (pixel ``(R, C)`` relative to the area grid's corner holds demo pixel ``(R mod 384,
C mod 640)``), so overlapping tiles agree where they overlap, as tiles of one datatake do. With
several acquisitions each one is dated 5 days after the previous, has its own processing baseline
(04.00 and later add 1000 DN), a per-band gain and per-pixel noise, and clouds (SCL 8/9/10, 3 for
shadows) from a smooth periodic field shifted per acquisition.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from scipy import ndimage

from pipeline.bands import S2_L2A_ASSETS, dn_offset
from pipeline.cube.grid import utm_geobox, utm_zone_epsg
from pipeline.demo import scene as demo
from pipeline.demo.build_scene import _EO_BANDS, _EXTENSIONS, COG_TYPE

#: Native pixel size (metres) of each asset, as Planetary Computer serves it.
NATIVE_RES: Final[dict[str, int]] = {
    **{b: 10 for b in ("B02", "B03", "B04", "B08")},
    **{b: 20 for b in ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL")},
    **{b: 60 for b in ("B01", "B09")},
}
#: Default area centre (lon, lat): eastern Hokkaido, on the UTM 54/55 border and the 43 N parallel.
DEFAULT_CENTER: Final[tuple[float, float]] = (143.99, 43.0)
#: Margin (metres) of every tile beyond the area, a multiple of 60.
TILE_MARGIN_M: Final[int] = 600
#: Processing baselines of the acquisitions, cycled.
BASELINES: Final[tuple[str, ...]] = ("02.09", "03.01", "04.00", "05.10")
#: Days between acquisitions.
STEP_DAYS: Final[int] = 5
#: Datetime of the first acquisition (the demo's post-event pass).
FIRST_DATETIME: Final[dt.datetime] = demo.DEMO_DATETIME
#: The DEM items' datetime, as on Planetary Computer.
DEM_DATETIME: Final[str] = "2021-04-22T00:00:00Z"
_PROJ_V2: Final[str] = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
_ARCSEC: Final[float] = 1.0 / 3600.0


@dataclass(frozen=True)
class PCScene:
    """A Planetary-Computer-shaped scene on disk.

    Attributes:
        catalog: STAC ItemCollection (``sentinel-2-l2a`` and ``cop-dem-glo-30`` items, hrefs
            relative to it): open with ``pipeline.catalog.open_catalog(str(catalog))``.
        bbox: The area ``(west, south, east, north)`` in degrees (search with it).
        epsg: The area's UTM zone (the output grid's CRS; the east tile is in ``epsg + 1``).
        shape: ``(rows, cols)`` of ``pipeline.cube.utm_geobox(bbox)`` (10 m pixels).
        acquisitions: Solar days (one datatake of three tiles each).
        start: First day of a search window holding every acquisition.
        end: Last day of it.
        s2_ids: Sentinel-2 item ids.
        dem_ids: DEM item ids.
        files: Every raster written.
    """

    catalog: Path
    bbox: tuple[float, float, float, float]
    epsg: int
    shape: tuple[int, int]
    acquisitions: int
    start: dt.date
    end: dt.date
    s2_ids: tuple[str, ...]
    dem_ids: tuple[str, ...]
    files: tuple[Path, ...]

    @property
    def area_km2(self) -> float:
        """Area of the output grid (10 m pixels)."""
        return self.shape[0] * self.shape[1] * 1e-4


def _snap(v: float, step: float, up: bool) -> float:
    return (math.ceil(v / step) if up else math.floor(v / step)) * step


def _bbox_around(center: tuple[float, float], size_px: tuple[int, int]) -> tuple[float, float, float, float]:
    """WGS84 box of about ``size_px`` 10 m pixels centred on ``center``."""
    lon, lat = center
    half_h, half_w = size_px[0] * 5.0, size_px[1] * 5.0  # metres
    dlat = half_h / 111_320.0
    dlon = half_w / (111_320.0 * math.cos(math.radians(lat)))
    return (round(lon - dlon, 6), round(lat - dlat, 6), round(lon + dlon, 6), round(lat + dlat, 6))


@dataclass(frozen=True)
class _Tile:
    """One MGRS tile: its zone, name and 10 m grid (origin on the 60 m lattice, size a multiple of 60 m)."""

    epsg: int
    name: str
    x0: float
    y1: float
    rows10: int
    cols10: int

    def transform(self, res: int) -> Affine:
        return Affine(float(res), 0.0, self.x0, 0.0, -float(res), self.y1)

    def shape(self, res: int) -> tuple[int, int]:
        k = res // 10
        return (self.rows10 // k, self.cols10 // k)


def _tile(epsg: int, name: str, xmin: float, ymin: float, xmax: float, ymax: float) -> _Tile:
    x0, x1 = _snap(xmin, 60, False), _snap(xmax, 60, True)
    y0, y1 = _snap(ymin, 60, False), _snap(ymax, 60, True)
    return _Tile(epsg, name, x0, y1, round((y1 - y0) / 10), round((x1 - x0) / 10))


class _World:
    """The scene's truth on the area zone's 10 m lattice: the demo repeated, per acquisition."""

    def __init__(
        self, epsg: int, origin: tuple[float, float], extent: tuple[float, float], seed: int
    ) -> None:
        self.epsg = epsg
        self.x0, self.y1 = origin
        self.width_m, self.height_m = extent
        self.bands: dict[str, NDArray[np.float32]] = {}
        for band in S2_L2A_ASSETS:
            with rasterio.open(demo.DEMO_DIR / f"{band}.tif") as src:
                self.bands[band] = src.read(1).astype(np.float32)
        with rasterio.open(demo.DEMO_DIR / "SCL.tif") as src:
            self.scl = src.read(1)
        with rasterio.open(demo.DEMO_DIR / "dem.tif") as src:
            self.dem = src.read(1).astype(np.float32)
        self.period = self.scl.shape
        self.seed = seed
        rng = np.random.default_rng(seed)
        field = ndimage.gaussian_filter(rng.standard_normal((96, 160)), 5.0, mode="wrap")
        field = ndimage.zoom(field, 8, order=1, mode="grid-wrap")
        self.cloud = ((field - field.min()) / (field.max() - field.min())).astype(np.float32)

    def index(
        self, x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Lattice row and column of points in the area's zone (any shape)."""
        return np.floor((self.y1 - y) / 10.0).astype(np.intp), np.floor((x - self.x0) / 10.0).astype(np.intp)

    def outside_swath(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.bool_]:
        """West of the swath edge: a diagonal from 8 % of the width (top) to 20 % (bottom)."""
        u = (x - self.x0) / self.width_m
        v = (self.y1 - y) / self.height_m
        return u < 0.08 + 0.12 * v

    def layers(self, rr: NDArray[np.intp], cc: NDArray[np.intp], k: int, clouds: bool
               ) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.uint8]]:  # fmt: skip
        """Digital numbers (before the baseline offset) and SCL of acquisition ``k`` at lattice points."""
        pr, pc = rr % self.period[0], cc % self.period[1]
        rng = np.random.default_rng(self.seed + 100 + k)
        scl = self.scl[pr, pc].copy()
        cloud = shadow = None
        if clouds:
            ch, cw = self.cloud.shape
            f = self.cloud[(rr + 97 * k) % ch, (cc + 211 * k) % cw]
            fs = self.cloud[(rr + 97 * k - 25) % ch, (cc + 211 * k + 30) % cw]
            cloud, shadow = f > 0.62, (fs > 0.62) & ~(f > 0.62)
            scl[shadow] = 3
            scl[cloud] = 8
            scl[f > 0.7] = 9
            if k % 2 == 1:
                scl[(f > 0.5) & (f <= 0.62)] = 10
        out: dict[str, NDArray[np.float32]] = {}
        for band in S2_L2A_ASSETS:
            dn = self.bands[band][pr, pc]
            if k > 0 or clouds:  # a radiometric jitter per acquisition (the first one-date scene is the demo)
                noise = (
                    np.random.default_rng(self.seed + 1000 * k + S2_L2A_ASSETS.index(band))
                    .normal(0.0, 8.0, self.period)
                    .astype(np.float32)
                )
                dn = dn * np.float32(1.0 + rng.normal(0.0, 0.02)) + noise[pr, pc]
            if cloud is not None and shadow is not None:
                dn = np.where(cloud, 5000.0 + 3000.0 * f, dn)
                dn = np.where(shadow, dn * 0.4, dn)
            out[band] = dn.astype(np.float32)
        return out, scl

    def heights(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float32]:
        """DEM heights at points of the area's zone: bilinear in the periodic demo DEM."""
        r = (self.y1 - y) / 10.0 - 0.5
        c = (x - self.x0) / 10.0 - 0.5
        return ndimage.map_coordinates(self.dem, [r, c], order=1, mode="grid-wrap").astype(np.float32)


def _write_cog(path: Path, array: NDArray[Any], epsg: int, transform: Affine, nodata: float | None,
               resampling: str, level: int) -> None:  # fmt: skip
    """One band as a COG like the demo's (DEFLATE + predictor, 256 px tiles, overviews)."""
    predictor = "3" if np.issubdtype(array.dtype, np.floating) else "2"
    profile = {"driver": "GTiff", "height": array.shape[0], "width": array.shape[1], "count": 1,
               "dtype": array.dtype.name, "crs": CRS.from_epsg(epsg), "transform": transform,
               "nodata": nodata}  # fmt: skip
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(array, 1)
        with mem.open() as tmp:
            rasterio.shutil.copy(tmp, str(path), driver="COG", COMPRESS="DEFLATE", LEVEL=str(level),
                                 PREDICTOR=predictor, BLOCKSIZE="256", OVERVIEWS="AUTO",
                                 OVERVIEW_RESAMPLING=resampling.upper())  # fmt: skip


def _ring(epsg: int, bounds: tuple[float, float, float, float], n: int = 4) -> list[list[float]]:
    """Counter-clockwise WGS84 ring of a projected rectangle (edges densified)."""
    to_wgs84 = Transformer.from_crs(epsg, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = bounds
    corners = [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)]
    pts = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1], strict=True):
        pts += [(ax + (bx - ax) * i / n, ay + (by - ay) * i / n) for i in range(n)]
    ring = [[round(lon, 8), round(lat, 8)] for lon, lat in (to_wgs84.transform(x, y) for x, y in pts)]
    return [*ring, ring[0]]


def _bbox_of(ring: list[list[float]]) -> list[float]:
    return [
        min(p[0] for p in ring),
        min(p[1] for p in ring),
        max(p[0] for p in ring),
        max(p[1] for p in ring),
    ]


def _s2_tile_item(tile: _Tile, k: int, when: dt.datetime, baseline: str, stats: dict[str, float],
                  hrefs: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """A ``sentinel-2-l2a`` item shaped like Planetary Computer's for one tile and acquisition."""
    bounds = (tile.x0, tile.y1 - tile.rows10 * 10.0, tile.x0 + tile.cols10 * 10.0, tile.y1)
    stamp = when.strftime("%Y%m%dT%H%M%S")
    item_id = (
        f"S2B_MSIL2A_{stamp}_R031_T{tile.name}_{(when + dt.timedelta(days=2)).strftime('%Y%m%dT%H%M%S')}"
    )
    assets: dict[str, Any] = {}
    for band, href in hrefs.items():
        res = NATIVE_RES[band]
        a: dict[str, Any] = {"href": href, "proj:bbox": list(bounds), "proj:shape": list(tile.shape(res)),
                             "proj:transform": list(tile.transform(res))[:6], "gsd": float(res),
                             "type": COG_TYPE, "roles": ["data"]}  # fmt: skip
        if band == "SCL":
            a["title"] = "Scene classfication map (SCL)"
        else:
            common, descr, wave, fwhm = _EO_BANDS[band]
            eo: dict[str, Any] = {"name": band, "description": descr, "center_wavelength": wave,
                                  "full_width_half_max": fwhm}  # fmt: skip
            if common:
                eo["common_name"] = common
            a["title"] = f"{descr} - {res}m"
            a["eo:bands"] = [eo]
        assets[band] = a
    ring = _ring(tile.epsg, bounds)
    return {
        "type": "Feature", "stac_version": "1.0.0",
        "stac_extensions": [_EXTENSIONS["eo"], _PROJ_V2, "https://stac-extensions.github.io/sat/v1.0.0/schema.json"],
        "id": item_id, "collection": "sentinel-2-l2a", "bbox": _bbox_of(ring),
        "geometry": {"type": "Polygon", "coordinates": [ring]}, "links": [],
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%S.024000Z"), "platform": "Sentinel-2B",
            "constellation": "Sentinel 2", "instruments": ["msi"], "proj:code": f"EPSG:{tile.epsg}",
            "s2:mgrs_tile": tile.name, "s2:product_type": "S2MSI2A", "s2:processing_baseline": baseline,
            "sat:orbit_state": "descending", "sat:relative_orbit": 31,
            "eo:cloud_cover": round(stats["cloud"], 6),
            "s2:nodata_pixel_percentage": round(stats["nodata"], 6),
            "s2:datatake_id": f"GS2B_{stamp}_0{8000 + k}_N{baseline.replace('.', '')}",
        },
        "assets": assets,
    }  # fmt: skip


def _s2_rasters(world: _World, tile: _Tile, k: int, clouds: bool, offset: int, out: Path, level: int
                ) -> tuple[dict[str, Path], dict[str, float]]:  # fmt: skip
    """Write every band and SCL of one tile and acquisition; returns paths and cover statistics."""
    rows, cols = tile.rows10, tile.cols10
    xs = tile.x0 + 10.0 * (np.arange(cols) + 0.5)
    ys = tile.y1 - 10.0 * (np.arange(rows) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    if tile.epsg != world.epsg:
        gx, gy = Transformer.from_crs(tile.epsg, world.epsg, always_xy=True).transform(gx, gy)
    rr, cc = world.index(gx, gy)
    values, scl10 = world.layers(rr, cc, k, clouds)
    paths: dict[str, Path] = {}
    stats: dict[str, float] = {}
    for band in (*S2_L2A_ASSETS, "SCL"):
        res = NATIVE_RES[band]
        n = res // 10
        h, w = rows // n, cols // n
        cx, cy = gx.reshape(h, n, w, n)[:, n // 2, :, n // 2], gy.reshape(h, n, w, n)[:, n // 2, :, n // 2]
        nodata = world.outside_swath(cx, cy)
        if band == "SCL":
            arr: NDArray[Any] = scl10.reshape(h, n, w, n)[:, n // 2, :, n // 2].copy()
            arr[nodata] = 0
            valid = ~nodata
            stats["nodata"] = 100.0 * float(nodata.mean())
            stats["cloud"] = 100.0 * float(np.isin(arr[valid], (8, 9, 10)).mean()) if valid.any() else 0.0
            resampling = "nearest"
        else:
            mean = values[band].reshape(h, n, w, n).mean(axis=(1, 3))
            arr = np.clip(np.rint(mean) + offset, 1, 65535).astype(np.uint16)
            arr[nodata] = 0
            resampling = "average"
        path = out / f"{band}.tif"
        _write_cog(path, arr, tile.epsg, tile.transform(res), 0, resampling, level)
        paths[band] = path
    return paths, stats


def _dem_tiles(world: _World, bbox: tuple[float, float, float, float], out: Path, level: int
               ) -> list[tuple[dict[str, Any], Path]]:  # fmt: skip
    """GLO-30-like tiles (EPSG:4326, 1 arcsec) of every 1-degree cell the area (+ margin) touches."""
    margin = 0.01
    west, south, east, north = bbox[0] - margin, bbox[1] - margin, bbox[2] + margin, bbox[3] + margin
    to_zone = Transformer.from_crs(4326, world.epsg, always_xy=True)
    items = []
    for lat0 in range(math.floor(south), math.floor(north) + 1):
        for lon0 in range(math.floor(west), math.floor(east) + 1):
            # Pixel i of the full tile spans lon0 - 0.5" + i" .. (3600 columns, 3600 rows).
            c0 = max(0, math.floor((west - lon0) * 3600 + 0.5))
            c1 = min(3600, math.ceil((east - lon0) * 3600 + 0.5))
            r0 = max(0, math.floor((lat0 + 1 - north) * 3600 + 0.5))
            r1 = min(3600, math.ceil((lat0 + 1 - south) * 3600 + 0.5))
            if c0 >= c1 or r0 >= r1:
                continue
            transform = Affine(_ARCSEC, 0.0, lon0 - 0.5 * _ARCSEC + c0 * _ARCSEC,
                               0.0, -_ARCSEC, lat0 + 1 + 0.5 * _ARCSEC - r0 * _ARCSEC)  # fmt: skip
            lons = transform.c + _ARCSEC * (np.arange(c1 - c0) + 0.5)
            lats = transform.f - _ARCSEC * (np.arange(r1 - r0) + 0.5)
            glon, glat = np.meshgrid(lons, lats)
            x, y = to_zone.transform(glon, glat)
            heights = world.heights(np.asarray(x), np.asarray(y))
            ns, ew = ("N" if lat0 >= 0 else "S"), ("E" if lon0 >= 0 else "W")
            name = f"{ns}{abs(lat0):02d}_00_{ew}{abs(lon0):03d}_00"
            item_id = f"Copernicus_DSM_COG_10_{name}_DEM"
            path = out / f"{item_id}.tif"
            _write_cog(path, heights, 4326, transform, None, "average", level)
            w, n = transform.c, transform.f
            e, s = w + (c1 - c0) * _ARCSEC, n - (r1 - r0) * _ARCSEC
            ring = [[e, s], [e, n], [w, n], [w, s], [e, s]]
            item = {
                "type": "Feature", "stac_version": "1.0.0", "stac_extensions": [_PROJ_V2],
                "id": item_id, "collection": "cop-dem-glo-30", "bbox": [w, s, e, n],
                "geometry": {"type": "Polygon", "coordinates": [ring]}, "links": [],
                "properties": {"gsd": 30, "datetime": DEM_DATETIME, "platform": "TanDEM-X",
                               "proj:code": "EPSG:4326", "proj:shape": [r1 - r0, c1 - c0],
                               "proj:transform": list(transform)[:6]},
                "assets": {"data": {"href": f"./dem/{path.name}", "title": name, "type": COG_TYPE,
                                    "roles": ["data"]}},
            }  # fmt: skip
            items.append((item, path))
    return items


def build_pc_scene(
    out_dir: Path,
    *,
    acquisitions: int = 1,
    size_px: int | tuple[int, int] = 512,
    center: tuple[float, float] = DEFAULT_CENTER,
    bbox: tuple[float, float, float, float] | None = None,
    clouds: bool | None = None,
    seed: int = 12,
    level: int = 6,
) -> PCScene:
    """Write a Planetary-Computer-shaped scene (COGs + one STAC ItemCollection) into ``out_dir``.

    Args:
        out_dir: Directory (created; files are overwritten).
        acquisitions: Solar days, each a datatake of three tiles (two in the area's zone, one in
            the next zone east).
        size_px: Area side(s) in 10 m pixels ``(rows, cols)`` around ``center`` (ignored with ``bbox``).
        center: Area centre ``(lon, lat)``; the default straddles UTM 54/55 and 43 N.
        bbox: The area ``(west, south, east, north)`` in degrees, instead of ``center``/``size_px``.
        clouds: Clouds in the SCL and bands; default: only with several acquisitions (one
            acquisition is then the demo's cloud-free pixels, on native grids).
        seed: Seed of the jitter and cloud field (deterministic output).
        level: DEFLATE level of the COGs.

    Returns:
        The scene record (:class:`PCScene`).
    """
    if acquisitions < 1:
        raise ValueError(f"acquisitions must be >= 1, got {acquisitions}")
    size = (size_px, size_px) if isinstance(size_px, int) else size_px
    area = bbox if bbox is not None else _bbox_around(center, size)
    gbox = utm_geobox(area)
    epsg = int(gbox.crs.epsg) if gbox.crs is not None and gbox.crs.epsg else utm_zone_epsg(area[0], area[1])
    x0, y1 = gbox.transform.c, gbox.transform.f
    rows, cols = gbox.shape
    w_m, h_m = cols * 10.0, rows * 10.0
    out_dir.mkdir(parents=True, exist_ok=True)
    world = _World(epsg, (x0, y1), (w_m, h_m), seed)
    m = TILE_MARGIN_M
    zone, band_letter = epsg % 100, "T"
    tiles = [
        _tile(epsg, f"{zone}{band_letter}YN", x0 - m, y1 - 0.6 * h_m, x0 + 0.85 * w_m, y1 + m),
        _tile(epsg, f"{zone}{band_letter}YM", x0 - m, y1 - h_m - m, x0 + 0.85 * w_m, y1 - 0.4 * h_m),
    ]
    east = epsg + 1 if epsg % 100 < 60 else epsg - 59
    corners_x = np.array([x0 + 0.7 * w_m, x0 + w_m + m, x0 + w_m + m, x0 + 0.7 * w_m])
    corners_y = np.array([y1 + m, y1 + m, y1 - h_m - m, y1 - h_m - m])
    ex, ey = Transformer.from_crs(epsg, east, always_xy=True).transform(corners_x, corners_y)
    tiles.append(_tile(east, f"{east % 100:02d}{band_letter}CH", min(ex), min(ey), max(ex), max(ey)))

    features: list[dict[str, Any]] = []
    files: list[Path] = []
    with_clouds = acquisitions > 1 if clouds is None else clouds
    for k in range(acquisitions):
        when = FIRST_DATETIME + dt.timedelta(days=STEP_DAYS * k)
        baseline = BASELINES[k % len(BASELINES)]
        for tile in tiles:
            sub = out_dir / "s2" / f"a{k}" / tile.name
            sub.mkdir(parents=True, exist_ok=True)
            paths, stats = _s2_rasters(world, tile, k, with_clouds, dn_offset(baseline), sub, level)
            files += paths.values()
            hrefs = {b: "./" + p.relative_to(out_dir).as_posix() for b, p in paths.items()}
            features.append(_s2_tile_item(tile, k, when, baseline, stats, hrefs))
    (out_dir / "dem").mkdir(exist_ok=True)
    dem = _dem_tiles(world, area, out_dir / "dem", level)
    features += [item for item, _ in dem]
    files += [path for _, path in dem]
    catalog = out_dir / "catalog.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1) + "\n")
    first = FIRST_DATETIME.date()
    return PCScene(
        catalog=catalog, bbox=tuple(float(v) for v in area), epsg=epsg, shape=(rows, cols),  # type: ignore[arg-type]
        acquisitions=acquisitions, start=first - dt.timedelta(days=1),
        end=first + dt.timedelta(days=STEP_DAYS * (acquisitions - 1) + 1),
        s2_ids=tuple(f["id"] for f in features if f["collection"] == "sentinel-2-l2a"),
        dem_ids=tuple(item["id"] for item, _ in dem), files=tuple(files),
    )  # fmt: skip
