"""Build the embedded demo scene from real Landslide4Sense chips.

Usage::

    python -m pipeline.demo.build_scene --src /path/to/l4s-sample --out pipeline/demo/data/scene

``--src`` holds the official L4S layout ``img/image_N.h5`` (key ``img``, 128x128x14, L4S scaling)
and ``mask/mask_N.h5`` (key ``mask``). The builder turns the chips back into digital numbers,
mosaics them on :data:`pipeline.demo.scene.DEMO_GRID`, and writes per-band COGs, a derived SCL, a
10 m DEM, the label mosaic, a STAC ItemCollection mirroring Planetary Computer items and a
``scene.json`` summary. See :mod:`pipeline.demo.scene` for what is real and what is nominal.
The output is deterministic for a given input (no timestamps are written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.shutil
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from pipeline.bands import L4S_BANDS, L4S_DIVISORS
from pipeline.demo.scene import (
    DEMO_CHIP_IDS,
    DEMO_DATETIME,
    DEMO_DEM_COLLECTION,
    DEMO_DEM_ITEM_ID,
    DEMO_GRID,
    DEMO_S2_ASSETS,
    DEMO_S2_COLLECTION,
    DEMO_S2_ITEM_ID,
    SceneGrid,
)

#: NDWI above which the derived SCL says water (6).
NDWI_WATER: float = 0.1
#: NDVI above which the derived SCL says vegetation (4); otherwise not vegetated (5).
NDVI_VEGETATION: float = 0.4

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

#: ``eo:bands`` entries and asset titles copied from real Planetary Computer sentinel-2-l2a items
#: (resolution suffixes dropped: every demo band is 10 m).
_EO_BANDS: dict[str, tuple[str | None, str, float, float]] = {
    "B01": ("coastal", "Band 1 - Coastal aerosol", 0.443, 0.027),
    "B02": ("blue", "Band 2 - Blue", 0.49, 0.098),
    "B03": ("green", "Band 3 - Green", 0.56, 0.045),
    "B04": ("red", "Band 4 - Red", 0.665, 0.038),
    "B05": ("rededge", "Band 5 - Vegetation red edge 1", 0.704, 0.019),
    "B06": ("rededge", "Band 6 - Vegetation red edge 2", 0.74, 0.018),
    "B07": ("rededge", "Band 7 - Vegetation red edge 3", 0.783, 0.028),
    "B08": ("nir", "Band 8 - NIR", 0.842, 0.145),
    "B09": (None, "Band 9 - Water vapor", 0.945, 0.026),
    "B11": ("swir16", "Band 11 - SWIR (1.6)", 1.61, 0.143),
    "B12": ("swir22", "Band 12 - SWIR (2.2)", 2.19, 0.242),
}

_EXTENSIONS = {
    "eo": "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.0.0/schema.json",
}


@dataclass(frozen=True)
class Chip:
    """One L4S chip.

    Attributes:
        chip_id: The N of ``image_N.h5``.
        img: ``(128, 128, 14)`` float64 in L4S scaling.
        mask: ``(128, 128)`` uint8 landslide mask.

    """

    chip_id: int
    img: npt.NDArray[np.float64]
    mask: npt.NDArray[np.uint8]


def load_chip(src: Path, chip_id: int) -> Chip:
    """Read ``img/image_N.h5`` and ``mask/mask_N.h5`` from an L4S directory.

    Raises:
        FileNotFoundError: If either file is missing.
        ValueError: If the arrays do not have the L4S shapes.

    """
    img_path = src / "img" / f"image_{chip_id}.h5"
    mask_path = src / "mask" / f"mask_{chip_id}.h5"
    for p in (img_path, mask_path):
        if not p.is_file():
            raise FileNotFoundError(f"missing L4S file {p}")
    with h5py.File(img_path, "r") as f:
        img = np.asarray(f["img"][()], dtype=np.float64)
    with h5py.File(mask_path, "r") as f:
        mask = np.asarray(f["mask"][()], dtype=np.uint8)
    if img.shape != (128, 128, len(L4S_BANDS)) or mask.shape != (128, 128):
        raise ValueError(f"chip {chip_id}: unexpected shapes img {img.shape}, mask {mask.shape}")
    return Chip(chip_id, img, mask)


def to_dn(values: npt.NDArray[np.float64], band: str) -> npt.NDArray[np.uint16]:
    """L4S values of one Sentinel-2 band back to uint16 digital numbers.

    ``DN = round(value * L4S_DIVISORS[band])`` clipped to ``[1, 65535]`` (0 is nodata; non-finite
    values become 0).
    """
    dn = np.rint(np.asarray(values, dtype=np.float64) * L4S_DIVISORS[band])
    out: npt.NDArray[np.uint16] = np.clip(
        np.nan_to_num(dn, nan=0.0, posinf=65535.0, neginf=1.0), 1, 65535
    ).astype(np.uint16)
    out[~np.isfinite(values)] = 0
    return out


def mosaic(chips: Sequence[Chip], grid: SceneGrid) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """Place chips row-major on the grid.

    Returns:
        ``(img, labels)``: ``(H, W, 14)`` L4S values and ``(H, W)`` uint8 labels.

    """
    if len(chips) != grid.cols * grid.rows:
        raise ValueError(f"{len(chips)} chips do not fill a {grid.cols} x {grid.rows} grid")
    img = np.zeros((grid.height, grid.width, len(L4S_BANDS)), dtype=np.float64)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for i, chip in enumerate(chips):
        r, c = grid.chip_window(i)
        img[r : r + grid.chip, c : c + grid.chip] = chip.img
        labels[r : r + grid.chip, c : c + grid.chip] = chip.mask
    return img, labels


def derive_scl(b03: npt.NDArray[Any], b04: npt.NDArray[Any], b08: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Derive a simple scene classification from digital numbers (not Sen2Cor's).

    6 water where NDWI > ``NDWI_WATER``, else 4 vegetation where NDVI > ``NDVI_VEGETATION``, else
    5 not vegetated; 0 where any input is 0 (nodata).
    """
    g, r, n = (np.asarray(a, dtype=np.float64) for a in (b03, b04, b08))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (n - r) / (n + r)
        ndwi = (g - n) / (g + n)
    scl = np.full(g.shape, 5, dtype=np.uint8)
    scl[ndvi > NDVI_VEGETATION] = 4
    scl[ndwi > NDWI_WATER] = 6
    scl[(g == 0) | (r == 0) | (n == 0)] = 0
    return scl


def slope_deg(dem: npt.NDArray[Any], resolution: float) -> npt.NDArray[np.float64]:
    """Slope in degrees by central differences (one-sided at the edges) on a square grid."""
    gy, gx = np.gradient(np.asarray(dem, dtype=np.float64), resolution)
    slope: npt.NDArray[np.float64] = np.degrees(np.arctan(np.hypot(gx, gy)))
    return slope


def slope_consistency(chips: Sequence[Chip], resolution: float, border: int = 2) -> dict[str, Any]:
    """Compare the slope recomputed from each chip's DEM with the L4S slope channel.

    Chips are compared one by one (the mosaic has elevation seams), ``border`` pixels dropped.
    Two recomputations: plain central differences on 10 m pixels, and the same after a Gaussian
    (sigma 1 px) smoothing of the integer-metre DEM.

    Returns:
        Mean absolute error, bias (recomputed - L4S) and Pearson r over all chips, per method.

    """
    from scipy import ndimage

    out: dict[str, Any] = {}
    for name, smooth in (("central_diff_10m", 0.0), ("gaussian1_central_diff_10m", 1.0)):
        pred_all, ref_all = [], []
        for chip in chips:
            dem = chip.img[..., L4S_BANDS.index("dem")] * L4S_DIVISORS["dem"]
            if smooth:
                dem = ndimage.gaussian_filter(dem, smooth)
            pred = slope_deg(dem, resolution)[border:-border, border:-border]
            ref = chip.img[..., L4S_BANDS.index("slope")] * L4S_DIVISORS["slope"]
            ref = ref[border:-border, border:-border]
            pred_all.append(pred.ravel())
            ref_all.append(ref.ravel())
        p, t = np.concatenate(pred_all), np.concatenate(ref_all)
        out[name] = {
            "mae_deg": round(float(np.abs(p - t).mean()), 3),
            "bias_deg": round(float((p - t).mean()), 3),
            "rmse_deg": round(float(np.sqrt(((p - t) ** 2).mean())), 3),
            "pearson_r": round(float(np.corrcoef(p, t)[0, 1]), 4),
            "within_5deg": round(float((np.abs(p - t) <= 5).mean()), 4),
        }
    return out


def write_cog(
    path: Path,
    array: npt.NDArray[Any],
    grid: SceneGrid,
    nodata: float | None,
    resampling: str,
    level: int = 9,
) -> None:
    """Write one band as a Cloud-Optimized GeoTIFF (DEFLATE + predictor, 256 px tiles, overviews).

    Args:
        path: Output file.
        array: ``(H, W)`` array on ``grid``.
        grid: The pixel grid.
        nodata: Nodata value recorded in the file, or None.
        resampling: Overview resampling (``"average"``, ``"nearest"``, ...).
        level: DEFLATE level (9 for the shipped scene; lower builds faster, decodes the same).

    """
    predictor = "3" if np.issubdtype(array.dtype, np.floating) else "2"
    profile = {
        "driver": "GTiff",
        "height": grid.height,
        "width": grid.width,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": CRS.from_epsg(grid.epsg),
        "transform": Affine(*grid.transform),
        "nodata": nodata,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(array, 1)
        with mem.open() as tmp:
            rasterio.shutil.copy(
                tmp,
                str(path),
                driver="COG",
                COMPRESS="DEFLATE",
                LEVEL=str(level),
                PREDICTOR=predictor,
                BLOCKSIZE="256",
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING=resampling.upper(),
            )


def footprint(grid: SceneGrid, densify: int = 4) -> tuple[list[list[float]], list[float]]:
    """WGS84 polygon ring (densified edges) and bbox of the grid."""
    to_wgs84 = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = grid.bounds
    pts: list[tuple[float, float]] = []
    corners = [(xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)]
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        for k in range(densify):
            f = k / densify
            pts.append((x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
    # counter-clockwise exterior ring (GeoJSON right-hand rule), closed
    ring = [[round(lon, 8), round(lat, 8)] for lon, lat in (to_wgs84.transform(x, y) for x, y in pts[::-1])]
    ring.append(ring[0])
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    return ring, [min(lons), min(lats), max(lons), max(lats)]


def _proj_fields(grid: SceneGrid) -> dict[str, Any]:
    return {
        "proj:bbox": list(grid.bounds),
        "proj:shape": [grid.height, grid.width],
        "proj:transform": list(grid.transform),
    }


def s2_item(
    grid: SceneGrid, ring: list[list[float]], bbox: list[float], cloud_cover: float
) -> dict[str, Any]:
    """Build the demo sentinel-2-l2a item, shaped like a Planetary Computer item, hrefs relative."""
    assets: dict[str, Any] = {}
    for band in DEMO_S2_ASSETS:
        common, descr, wave, fwhm = _EO_BANDS[band]
        eo: dict[str, Any] = {"name": band, "description": descr, "center_wavelength": wave}
        if common:
            eo["common_name"] = common
        eo["full_width_half_max"] = fwhm
        assets[band] = {
            "href": f"./{band}.tif",
            **_proj_fields(grid),
            "gsd": grid.resolution,
            "type": COG_TYPE,
            "roles": ["data"],
            "title": f"{descr} - 10m",
            "eo:bands": [eo],
            "raster:bands": [{"nodata": 0, "data_type": "uint16"}],
        }
    assets["SCL"] = {
        "href": "./SCL.tif",
        **_proj_fields(grid),
        "gsd": grid.resolution,
        "type": COG_TYPE,
        "roles": ["data"],
        "title": "Scene classfication map (SCL) - derived from NDVI/NDWI for the demo",
        "raster:bands": [{"nodata": 0, "data_type": "uint8"}],
    }
    stamp = DEMO_DATETIME.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [_EXTENSIONS["eo"], _EXTENSIONS["proj"], _EXTENSIONS["raster"]],
        "id": DEMO_S2_ITEM_ID,
        "collection": DEMO_S2_COLLECTION,
        "bbox": bbox,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "links": [],
        "properties": {
            "datetime": stamp,
            "platform": "Sentinel-2B",
            "constellation": "Sentinel 2",
            "instruments": ["msi"],
            "proj:epsg": grid.epsg,
            "s2:mgrs_tile": "54TWN",
            "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": "02.09",
            "eo:cloud_cover": cloud_cover,
            "description": (
                "Landslide demo scene: 15 real Landslide4Sense chips (several events, likely L1C) "
                "mosaicked on a nominal grid near Atsuma, Hokkaido; date, platform and baseline are "
                "nominal; SCL is derived from NDVI/NDWI."
            ),
        },
        "assets": assets,
    }


def dem_item(grid: SceneGrid, ring: list[list[float]], bbox: list[float]) -> dict[str, Any]:
    """Build the demo DEM item, shaped like a Planetary Computer cop-dem-glo-30 item (10 m UTM grid)."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [_EXTENSIONS["proj"]],
        "id": DEMO_DEM_ITEM_ID,
        "collection": DEMO_DEM_COLLECTION,
        "bbox": bbox,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "links": [],
        "properties": {
            "gsd": grid.resolution,
            "datetime": "2021-04-22T00:00:00Z",
            "platform": "ALOS",
            "proj:epsg": grid.epsg,
            "proj:shape": [grid.height, grid.width],
            "proj:transform": list(grid.transform),
            "description": (
                "Landslide demo DEM: the Landslide4Sense DEM channel (ALOS PALSAR based) x 772.83 m, "
                "on the demo's 10 m UTM grid (not Copernicus GLO-30); datetime copies the real collection."
            ),
        },
        "assets": {
            "data": {
                "href": "./dem.tif",
                "title": "L4S-DEMO DEM 10m",
                "type": COG_TYPE,
                "roles": ["data"],
            }
        },
    }


def build_scene(src: Path, out: Path, grid: SceneGrid = DEMO_GRID) -> dict[str, Any]:
    """Build every file of the demo scene into ``out``.

    Args:
        src: L4S directory with ``img/`` and ``mask/``.
        out: Output directory (created; existing scene files are overwritten).
        grid: The target grid.

    Returns:
        The summary also written to ``out/scene.json``.

    """
    out.mkdir(parents=True, exist_ok=True)
    chips = [load_chip(src, i) for i in DEMO_CHIP_IDS]
    img, labels = mosaic(chips, grid)

    dns: dict[str, npt.NDArray[np.uint16]] = {}
    for band in DEMO_S2_ASSETS:
        dns[band] = to_dn(img[..., L4S_BANDS.index(band)], band)
        write_cog(out / f"{band}.tif", dns[band], grid, nodata=0, resampling="average")
    scl = derive_scl(dns["B03"], dns["B04"], dns["B08"])
    write_cog(out / "SCL.tif", scl, grid, nodata=0, resampling="nearest")
    dem = (img[..., L4S_BANDS.index("dem")] * L4S_DIVISORS["dem"]).astype(np.float32)
    write_cog(out / "dem.tif", dem, grid, nodata=None, resampling="average")
    write_cog(out / "labels.tif", labels, grid, nodata=None, resampling="nearest")

    ring, bbox = footprint(grid)
    cloud_cover = round(float(np.isin(scl, (8, 9, 10)).mean() * 100), 6)
    collection = {
        "type": "FeatureCollection",
        "features": [s2_item(grid, ring, bbox, cloud_cover), dem_item(grid, ring, bbox)],
    }
    (out / "catalog.json").write_text(json.dumps(collection, indent=1) + "\n")

    layout = []
    for i, chip in enumerate(chips):
        r, c = grid.chip_window(i)
        layout.append({"chip_id": chip.chip_id, "row_off": r, "col_off": c,
                       "landslide_fraction": round(float(chip.mask.mean()), 5)})  # fmt: skip
    summary: dict[str, Any] = {
        "description": (
            "Demo scene: 15 real Landslide4Sense TrainData chips from several events placed side by "
            "side on a nominal 10 m UTM grid near Atsuma (2018 Hokkaido Iburi earthquake area)."
        ),
        "source": "Landslide4Sense (Ghorbanzadeh et al. 2022), Zenodo 10.5281/zenodo.10463239, TrainData",
        "crs": f"EPSG:{grid.epsg}",
        "transform": list(grid.transform),
        "shape": [grid.height, grid.width],
        "bounds": list(grid.bounds),
        "bbox_wgs84": bbox,
        "chip": grid.chip,
        "layout": layout,
        "bands": list(DEMO_S2_ASSETS),
        "dn_rule": "DN = round(l4s_value * L4S_DIVISORS[band]), clipped to [1, 65535]; nodata 0",
        "scl_rule": f"6 if NDWI>{NDWI_WATER} else 4 if NDVI>{NDVI_VEGETATION} else 5 (derived, not Sen2Cor)",
        "dem_rule": "dem = l4s_dem * 772.83 (metres), float32, same 10 m grid",
        "scl_class_fractions": {str(k): round(float((scl == k).mean()), 5) for k in (4, 5, 6)},
        "landslide_fraction": round(float(labels.mean()), 5),
        "slope_consistency": slope_consistency(chips, grid.resolution),
        "slope_consistency_note": (
            "recomputed slope vs L4S slope channel (value * 20.29), per chip, 2 px border dropped"
        ),
    }
    (out / "scene.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--src", type=Path, required=True, help="L4S directory with img/ and mask/")
    parser.add_argument("--out", type=Path, required=True, help="output directory of the scene")
    args = parser.parse_args(argv)
    summary = build_scene(args.src, args.out)
    print(json.dumps({k: summary[k] for k in ("crs", "shape", "bbox_wgs84", "slope_consistency")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
