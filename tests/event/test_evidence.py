"""NDVI change evidence: the cube's composite NDVI on a grid, and per-polygon means."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - the .rio accessor
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from shapely.geometry import box

from pipeline.catalog import open_catalog
from pipeline.demo.scene import DEMO_CATALOG, DEMO_GRID, DEMO_SCENE_BBOX, asset_path
from pipeline.event.evidence import annotate, ndvi_composite


@pytest.fixture(scope="module")
def demo_ndvi() -> tuple[GeoBox, np.ndarray]:
    gbox = GeoBox(DEMO_GRID.shape, Affine(*DEMO_GRID.transform), f"EPSG:{DEMO_GRID.epsg}")
    items = open_catalog(str(DEMO_CATALOG)).search(
        "sentinel-2-l2a", DEMO_SCENE_BBOX, dt.date(2018, 9, 7), dt.date(2018, 9, 30), None
    )
    return gbox, np.asarray(ndvi_composite(items, gbox, chunk=256).values)


def test_ndvi_composite_is_the_scene_ndvi_on_its_own_grid(demo_ndvi: tuple[GeoBox, np.ndarray]) -> None:
    _, ndvi = demo_ndvi
    with rasterio.open(asset_path("B04")) as r, rasterio.open(asset_path("B08")) as n:
        red, nir = r.read(1).astype(np.float64), n.read(1).astype(np.float64)
    direct = (nir - red) / (nir + red)
    assert ndvi.shape == direct.shape
    both = np.isfinite(ndvi) & np.isfinite(direct)
    assert both.mean() > 0.99  # the demo SCL has no cloud
    np.testing.assert_allclose(ndvi[both], direct[both], atol=1e-5)
    assert -1 <= np.nanmin(ndvi) < 0.2 < 0.6 < np.nanmax(ndvi) <= 1  # bare scars and forest both present


def test_polygons_carry_mean_ndvi_pre_and_drop(demo_ndvi: tuple[GeoBox, np.ndarray], tmp_path: Path) -> None:
    gbox, ndvi = demo_ndvi
    post = (ndvi * 0.5).astype("float32")
    ds = xr.Dataset(
        {
            "ndvi_pre": (("y", "x"), ndvi),
            "ndvi_post": (("y", "x"), post),
            "ndvi_drop": (("y", "x"), ndvi - post),
        },
        coords={"y": gbox.coords["y"].values, "x": gbox.coords["x"].values},
    ).rio.write_crs(gbox.crs.to_wkt())
    ds = ds.rio.write_transform(gbox.transform)
    ds.to_zarr(str(tmp_path / "e.zarr"), mode="w", zarr_format=2, consolidated=True)
    x0, y0 = DEMO_GRID.origin_x, DEMO_GRID.origin_y
    # two polygons in UTM: pixel rows 10-29 x cols 10-49, and rows 200-259 x cols 300-339
    polys = gpd.GeoDataFrame(
        {"area_m2": [800 * 100.0, 2400 * 100.0]},
        geometry=[
            box(x0 + 100, y0 - 300, x0 + 500, y0 - 100),
            box(x0 + 3000, y0 - 2600, x0 + 3400, y0 - 2000),
        ],
        crs=f"EPSG:{DEMO_GRID.epsg}",
    ).to_crs(4326)
    out = annotate(polys, tmp_path / "e.zarr")
    expect_pre = [np.nanmean(ndvi[10:30, 10:50]), np.nanmean(ndvi[200:260, 300:340])]
    np.testing.assert_allclose(out["ndvi_pre"], expect_pre, rtol=0, atol=0.02)
    np.testing.assert_allclose(out["ndvi_drop"], np.array(expect_pre) * 0.5, atol=0.02)
    assert list(out.columns[:1]) == ["area_m2"] and len(out) == 2
