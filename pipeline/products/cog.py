"""Cloud-Optimized GeoTIFF of the probability mosaic.

The mosaic is copied window by window into a temporary tiled GeoTIFF (memory: one window), then
GDAL's COG driver writes the final file from it: float32, NaN nodata, DEFLATE with the floating
point predictor, 512-pixel tiles, overviews by averaging down to one tile, and the COG layout
(IFDs first, overviews' data before the full-resolution data). Georeferencing is the store's own
CRS and transform, untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from rasterio.windows import Window

from pipeline.store.atomic import atomic_output
from pipeline.store.reader import store_crs, store_transform

BLOCKSIZE = 512
#: Creation options of the COG driver (GDAL >= 3.1).
COG_OPTIONS = {
    "COMPRESS": "DEFLATE",
    "PREDICTOR": "YES",  # floating-point predictor for float32
    "LEVEL": "6",
    "BLOCKSIZE": str(BLOCKSIZE),
    "RESAMPLING": "AVERAGE",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "OVERVIEWS": "AUTO",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}


def write_cog(ds: xr.Dataset, path: str | os.PathLike[str], *, window: int = 2048) -> Path:
    """Write ``ds.probability`` as a Cloud-Optimized GeoTIFF at ``path``.

    Args:
        ds: The result store (lazy).
        path: The output ``.tif``.
        window: Rows/columns copied per step into the intermediate GeoTIFF.

    Returns:
        ``path``.

    """
    out = Path(path)
    prob = ds["probability"]
    ny, nx = prob.sizes["y"], prob.sizes["x"]
    profile = {
        "driver": "GTiff",
        "width": nx,
        "height": ny,
        "count": 1,
        "dtype": "float32",
        "nodata": float("nan"),
        "crs": store_crs(ds).to_wkt(),
        "transform": store_transform(ds),
        "tiled": True,
        "blockxsize": BLOCKSIZE,
        "blockysize": BLOCKSIZE,
        "compress": "DEFLATE",
        "zlevel": 1,
        "BIGTIFF": "IF_SAFER",
    }
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".cog-") as tmpdir:
        staging = Path(tmpdir) / "staging.tif"
        with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(staging, "w", **profile) as dst:
            for r0 in range(0, ny, window):
                for c0 in range(0, nx, window):
                    rows, cols = slice(r0, min(r0 + window, ny)), slice(c0, min(c0 + window, nx))
                    block = np.asarray(prob.isel(y=rows, x=cols).values, dtype=np.float32)
                    dst.write(block, 1, window=Window(c0, r0, block.shape[1], block.shape[0]))
            dst.set_band_description(1, "landslide probability")
            dst.update_tags(1, units="1", long_name="landslide probability")
        with rasterio.Env(GDAL_CACHEMAX=256), atomic_output(out) as tmp:
            rasterio.shutil.copy(staging, tmp, driver="COG", **COG_OPTIONS)
    return out
