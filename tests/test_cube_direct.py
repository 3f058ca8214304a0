"""Direct reads of grid-aligned COGs (pipeline/cube/direct.py) against odc-stac, on the real tile."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox

from pipeline.bands import S2_L2A_ASSETS
from pipeline.cube import build_cube
from pipeline.cube.direct import AlignedAsset, plan_bands
from tests.cube_fixtures import S2_DIR, dem_item, s2_item
from tests.test_cube import ALIGNED, _copy_tif, _plane_dem

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

TEN_M = ("B02", "B03", "B04", "B08")  # 10 m bands (100 m in the sample tile)


def _shifted(rows: int, cols: int, shape: tuple[int, int] = (80, 80), dx_m: float = 0.0) -> GeoBox:
    """``ALIGNED`` moved by whole 100 m pixels (and ``dx_m`` metres), optionally resized."""
    a = ALIGNED.transform
    return GeoBox(shape, Affine(a.a, 0.0, a.c + 100 * cols + dx_m, 0.0, a.e, a.f - 100 * rows), ALIGNED.crs)


@pytest.fixture(scope="module")
def dem(tmp_path_factory) -> Path:
    west, south, east, north = ALIGNED.geographic_extent.boundingbox
    bbox = (west - 0.02, south - 0.02, east + 0.25, north + 0.02)  # the shifted grids too
    return _plane_dem(tmp_path_factory.mktemp("dem") / "plane.tif", bbox, 0.2, 0.1, 32629)


def test_plan_reads_bands_on_the_grid_and_leaves_the_rest_to_odc_stac():
    plans = plan_bands([s2_item()], ALIGNED, (*S2_L2A_ASSETS, "SCL"), nearest=("SCL",))
    direct = {band for band, plan in plans.items() if plan is not None}
    assert direct == {*TEN_M, "SCL"}  # 20 m / 60 m spectral bands are resampled bilinearly
    scl = plans["SCL"]
    assert scl is not None and scl.nearest and scl.slices[0][0].factor == 2
    b04 = plans["B04"]
    assert b04 is not None and b04.slices[0][0].factor == 1
    assert (b04.slices[0][0].row_shift, b04.slices[0][0].col_shift) == (120, 850)
    # Half a pixel off the tile's grid, or another CRS: nothing is read directly.
    half = _shifted(0, 0, dx_m=50.0)
    assert all(p is None for p in plan_bands([s2_item()], half, TEN_M).values())
    other = GeoBox(ALIGNED.shape, ALIGNED.transform, "EPSG:32630")
    assert all(p is None for p in plan_bands([s2_item()], other, TEN_M).values())


@settings(max_examples=200, deadline=None)
@given(
    factor=st.integers(1, 6),
    src_shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    shift=st.tuples(st.integers(-30, 30), st.integers(-30, 30)),
    r0=st.integers(0, 40),
    c0=st.integers(0, 40),
    size=st.tuples(st.integers(1, 25), st.integers(1, 25)),
)
def test_window_and_upsample_map_each_output_pixel_to_its_source_pixel(
    factor, src_shape, shift, r0, c0, size
):
    """Block pixel (i, j) holds source pixel ((i + R) // k, (j + C) // k), 0 outside the source."""
    rng = np.random.default_rng(factor * 1000 + sum(src_shape))
    src = rng.integers(1, 60000, src_shape).astype(np.uint16)
    asset = AlignedAsset("x.tif", shift[0], shift[1], factor, src_shape, (1.0, 0, 0, 0, -1.0, 0))
    rows, cols = (r0, r0 + size[0]), (c0, c0 + size[1])
    block = np.zeros(size, dtype=np.uint16)
    found = asset.window(rows, cols)
    if found is not None:
        window, where = found
        coarse = src[
            window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width
        ]
        block[where] = asset.upsample(coarse, window, rows, cols, where)
    ii, jj = np.meshgrid(np.arange(*rows), np.arange(*cols), indexing="ij")
    si, sj = (ii + shift[0]) // factor, (jj + shift[1]) // factor
    inside = (si >= 0) & (si < src_shape[0]) & (sj >= 0) & (sj < src_shape[1])
    expected = np.zeros(size, dtype=np.uint16)
    expected[inside] = src[si[inside], sj[inside]]
    assert np.array_equal(block, expected)


def _items(tmp_path: Path) -> list:
    """Three solar days (one of them two overlapping items, the first with a hole) with clouds."""
    with rasterio.open(S2_DIR / "SCL.tif") as f:
        scl = f.read(1)
    hole = _copy_tif(S2_DIR / "B04.tif", tmp_path / "B04-hole.tif", lambda a: np.where(
        (np.arange(a.shape[0])[:, None] % 50) < 20, 0, a))  # fmt: skip
    shifted_scl = _copy_tif(S2_DIR / "SCL.tif", tmp_path / "SCL-b.tif", lambda a: np.roll(scl, 7, axis=1))
    brighter = _copy_tif(S2_DIR / "B03.tif", tmp_path / "B03-c.tif", lambda a: np.where(a > 0, a + 37, 0))
    day = dt.datetime(2020, 2, 19, 11, 34, tzinfo=dt.UTC)
    return [
        s2_item(item_id="A1", overrides={"B04": hole}),
        s2_item(item_id="A2", when=day + dt.timedelta(minutes=1)),  # same solar day: fills A1's hole
        s2_item(item_id="B", when=day + dt.timedelta(days=10), overrides={"SCL": shifted_scl}),
        s2_item(item_id="C", when=day + dt.timedelta(days=20), baseline="04.00", overrides={"B03": brighter}),
    ]


@pytest.mark.parametrize(
    "geobox",
    [ALIGNED, _shifted(1, 3), _shifted(-7, 200, shape=(60, 70))],
    ids=["aligned", "odd-offset", "past-the-tile-edge"],
)
def test_direct_reads_equal_odc_stac_whatever_the_chunking(tmp_path, dem, geobox):
    items = _items(tmp_path)
    dem_items = [dem_item(dem)]
    reference = build_cube(items, dem_items, geobox, 80, direct_reads=False).compute()
    for chunk in (17, 80):
        direct = build_cube(items, dem_items, geobox, chunk).compute()
        for name in ("layers", "n_clear", "valid"):
            assert np.array_equal(direct[name].values, reference[name].values, equal_nan=True), (chunk, name)
    valid = reference["valid"].values
    assert valid.any() and (~valid).any()


def test_one_date_direct_equals_odc_stac_past_the_tile_edge(dem):
    geobox = _shifted(-7, 200, shape=(60, 70))  # the tile ends inside the grid: nodata there
    a = build_cube([s2_item()], [dem_item(dem)], geobox, 32).compute()
    b = build_cube([s2_item()], [dem_item(dem)], geobox, 32, direct_reads=False).compute()
    assert np.array_equal(a["layers"].values, b["layers"].values, equal_nan=True)
    assert (~a["valid"].values).any() and a["valid"].values.any()


def test_file_whose_grid_differs_from_its_metadata_is_warped_like_odc_stac(tmp_path, dem):
    with rasterio.open(S2_DIR / "B04.tif") as f:
        profile, data = f.profile, f.read(1)
    moved = tmp_path / "B04-moved.tif"
    profile["transform"] = profile["transform"] * Affine.translation(2, 1)  # 2 px east, 1 px south
    with rasterio.open(moved, "w", **profile) as f:
        f.write(data, 1)
    item = s2_item(overrides={"B04": moved})
    item.assets["B04"].extra_fields.update(s2_item().assets["B04"].extra_fields)  # metadata says aligned
    assert plan_bands([item], ALIGNED, ["B04"])["B04"] is not None
    a = build_cube([item], [dem_item(dem)], ALIGNED, 32).compute()["B04"].values
    b = build_cube([item], [dem_item(dem)], ALIGNED, 32, direct_reads=False).compute()["B04"].values
    assert np.array_equal(a, b, equal_nan=True)
    plain = build_cube([s2_item()], [dem_item(dem)], ALIGNED, 32).compute()["B04"].values
    a, plain = a[1:, 2:], plain[:-1, :-2]  # read where it really lies: 1 row down, 2 columns right
    both = np.isfinite(a) & np.isfinite(plain)
    assert both.mean() > 0.1 and np.array_equal(a[both], plain[both])


def test_unreadable_asset_is_nodata_or_an_error(tmp_path, dem):
    item = s2_item()
    item.assets["B04"].href = str(tmp_path / "gone.tif")
    lenient = build_cube([item], [dem_item(dem)], ALIGNED, 40, fail_on_error=False).compute()
    assert np.isnan(lenient["B04"].values).all() and not lenient["valid"].values.any()
    with pytest.raises(rasterio.errors.RasterioIOError):
        build_cube([item], [dem_item(dem)], ALIGNED, 40).compute()
