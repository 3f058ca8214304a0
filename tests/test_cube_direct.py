"""Direct reads (pipeline/cube/direct.py, upsample.py) against odc-stac and GDAL, on the real tile.

The sample tile 29RKH holds its 10 m bands at 100 m, 20 m bands at 200 m and 60 m bands at 600 m,
so on a 100 m grid the 2x and 6x bilinear upsampling of the native-grid fast path both occur.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from pipeline.bands import L4S_DIVISORS, S2_L2A_ASSETS
from pipeline.cube import build_cube
from pipeline.cube.direct import AlignedAsset, WarpedAsset, plan_bands
from pipeline.cube.upsample import axis_taps, upsample_bilinear
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


def test_plan_reads_every_band_on_the_lattice_and_warps_the_rest():
    plans = plan_bands([s2_item()], ALIGNED, (*S2_L2A_ASSETS, "SCL"), nearest=("SCL",))
    factors = {band: [a.factor for a in plan.slices[0] if isinstance(a, AlignedAsset)]
               for band, plan in plans.items() if plan is not None}  # fmt: skip
    assert factors == {band: [1 if band in TEN_M else 6 if band in ("B01", "B09") else 2]
                       for band in (*S2_L2A_ASSETS, "SCL")}  # fmt: skip
    scl, b05 = plans["SCL"], plans["B05"]
    assert scl is not None and scl.nearest and b05 is not None and not b05.nearest
    b04 = plans["B04"]
    assert b04 is not None and isinstance(a := b04.slices[0][0], AlignedAsset)
    assert (a.row_shift, a.col_shift) == (120, 850)
    # Half a pixel off the tile's grid, or another CRS: every asset is warped.
    half = _shifted(0, 0, dx_m=50.0)
    other = GeoBox(ALIGNED.shape, ALIGNED.transform, "EPSG:32630")
    for grid in (half, other):
        for plan in plan_bands([s2_item()], grid, (*TEN_M, "B05", "B01")).values():
            assert plan is not None and all(isinstance(a, WarpedAsset) for a in plan.slices[0])


def _proj_item(epsg: int, res: float, x0: float, y0: float, shape: tuple[int, int]) -> pystac.Item:
    item = pystac.Item("x", None, None, dt.datetime(2020, 1, 1, tzinfo=dt.UTC), {"proj:code": f"EPSG:{epsg}"},
                       stac_extensions=["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
                       collection="sentinel-2-l2a")  # fmt: skip
    item.add_asset("B05", pystac.Asset("/data/b05.tif", extra_fields={
        "proj:shape": list(shape), "proj:transform": [res, 0.0, x0, 0.0, -res, y0]}))  # fmt: skip
    return item


@settings(max_examples=150, deadline=None)
@given(
    res=st.sampled_from([10.0, 20.0, 60.0, 15.0, 25.0, 100.0, 5.0]),
    dx=st.integers(-50, 50),
    dy=st.integers(-50, 50),
    frac=st.sampled_from([0.0, 0.0, 0.5, 3.0, 0.001]),
    epsg=st.sampled_from([32654, 32654, 32655]),
    shape=st.tuples(st.integers(1, 300), st.integers(1, 300)),
)
def test_plan_takes_the_fast_path_exactly_when_the_asset_lies_on_the_lattice(res, dx, dy, frac, epsg, shape):
    """Pure decision from proj metadata: same CRS, a whole size ratio (<= 8) and whole-pixel edges."""
    grid = GeoBox((50, 50), Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_700_000.0), "EPSG:32654")
    x0, y0 = 500_000.0 + 10.0 * dx + frac, 4_700_000.0 + 10.0 * dy
    plan = plan_bands([_proj_item(epsg, res, x0, y0, shape)], grid, ["B05"])["B05"]
    assert plan is not None
    (asset,) = plan.slices[0]
    ratio = res / 10.0
    lattice = (epsg == 32654 and ratio == int(ratio) and 1 <= ratio <= 8 and frac == 0.0
               and (ratio == 1 or min(shape) >= 2))  # fmt: skip
    assert isinstance(asset, AlignedAsset) == lattice
    if lattice:
        assert isinstance(asset, AlignedAsset)
        assert (asset.factor, asset.row_shift, asset.col_shift) == (int(ratio), dy, -dx)
        assert asset.shape == shape
    else:
        assert isinstance(asset, WarpedAsset)


def _gdal_bilinear(src: np.ndarray, k: int, shift: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """What GDAL's warper (odc-stac's read) writes for a k-times coarser source on the output lattice."""
    dst = np.zeros(shape, dtype=np.uint16)
    rasterio.warp.reproject(
        src, dst, src_transform=Affine(10.0 * k, 0, 0, 0, -10.0 * k, 0), src_crs="EPSG:32654", src_nodata=0,
        dst_transform=Affine(10.0, 0, 10.0 * shift[1], 0, -10.0, -10.0 * shift[0]), dst_crs="EPSG:32654",
        dst_nodata=0, resampling=Resampling.bilinear,
    )  # fmt: skip
    return dst


@settings(max_examples=120, deadline=None)
@given(
    k=st.sampled_from([1, 2, 3, 6]),
    src_shape=st.tuples(st.integers(2, 14), st.integers(2, 14)),
    shift=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
    out_shape=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    nodata=st.sampled_from([0.0, 0.15, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_bilinear_upsampling_is_gdals_warp_within_one_dn(k, src_shape, shift, out_shape, nodata, seed):
    """Odd offsets, raster edges, no-data holes: the same pixels written, values within 1 DN."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60000, src_shape).astype(np.uint16)
    src[rng.random(src_shape) < nodata] = 0
    expected = _gdal_bilinear(src, k, shift, out_shape)
    got = np.zeros(out_shape, dtype=np.uint16)
    rt = axis_taps(0, out_shape[0], shift[0], k, src_shape[0])
    ct = axis_taps(0, out_shape[1], shift[1], k, src_shape[1])
    if rt is not None and ct is not None:
        window = src[rt.start : rt.stop, ct.start : ct.stop]
        upsample_bilinear(window, rt, ct, shift[0], shift[1], k, out=got[rt.lo : rt.hi, ct.lo : ct.hi])
    assert np.array_equal(got == 0, expected == 0)
    assert np.abs(got.astype(np.int64) - expected).max(initial=0) <= 1
    if k in (1, 2):  # weights are multiples of 1/4: exactly GDAL's
        assert np.array_equal(got, expected)


def assert_within_one_dn(a, b) -> None:
    """Two cubes: the same valid pixels, clear counts and slope; bands within 1 DN."""
    assert np.array_equal(a["valid"].values, b["valid"].values)
    assert np.array_equal(a["n_clear"].values, b["n_clear"].values)
    for name in S2_L2A_ASSETS:
        diff = np.abs(a[name].values - b[name].values) * np.float32(L4S_DIVISORS[name])
        assert np.nanmax(diff, initial=0) <= 1.001, name
    for name in ("slope", "dem"):
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


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
    """Within 1 DN of odc-stac (2x and 6x upsampling); identical whatever the chunking."""
    items = _items(tmp_path)
    dem_items = [dem_item(dem)]
    reference = build_cube(items, dem_items, geobox, 80, direct_reads=False).compute()
    first = build_cube(items, dem_items, geobox, 80).compute()
    assert_within_one_dn(first, reference)
    again = build_cube(items, dem_items, geobox, 17).compute()
    for name in ("layers", "n_clear", "valid"):
        assert np.array_equal(again[name].values, first[name].values, equal_nan=True), name
    valid = reference["valid"].values
    assert valid.any() and (~valid).any()


def test_one_date_direct_equals_odc_stac_past_the_tile_edge(dem):
    geobox = _shifted(-7, 200, shape=(60, 70))  # the tile ends inside the grid: nodata there
    a = build_cube([s2_item()], [dem_item(dem)], geobox, 32).compute()
    b = build_cube([s2_item()], [dem_item(dem)], geobox, 32, direct_reads=False).compute()
    assert_within_one_dn(a, b)
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
