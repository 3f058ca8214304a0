"""Tests of pipeline.cube on real Sentinel-2 L2A and Copernicus DEM COGs read through odc-stac."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from dask.callbacks import Callback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from rasterio.windows import Window

from pipeline.bands import L4S_DIVISORS, SCL_DILATE, SCL_INVALID, SWEEP_BANDS
from pipeline.cube import (
    CubeError,
    build_cube,
    clear_mask,
    composite,
    disk,
    harmonise,
    load_dem,
    load_s2,
    slope_degrees,
    stack_bands,
    utm_geobox,
    utm_zone_epsg,
)
from pipeline.errors import UserError
from tests.cube_fixtures import DEM_TIF, S2_DIR, dem_item, s2_item

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

#: Row/column offset (100 m pixels of the tile) of the aligned test grid.
ROW0, COL0 = 120, 850
#: An 8 x 8 km grid aligned with the tile's own 100 m pixels (edges at 199980 + 100 k), over part
#: of the cirrus field in the tile's north-east, so reads are copies (no resampling) and SCL
#: holds both clear and cloudy pixels.
ALIGNED = GeoBox((80, 80), Affine(100.0, 0.0, 199980.0 + 100 * COL0, 0.0, -100.0, 2800020.0 - 100 * ROW0),
                 "EPSG:32629")  # fmt: skip
#: Sub-area of the tile in WGS 84 (zone 29), used with utm_geobox.
S2_BBOX = (-11.5, 24.6, -11.3, 24.8)
#: Sao Tome, inside DEM tile N00 E006 (zone 32N).
SAO_TOME_BBOX = (6.5, 0.2, 6.7, 0.4)


# ----------------------------------------------------------------------------------------- helpers


def _copy_tif(src: Path, dst: Path, edit) -> Path:
    """Write ``edit(array)`` with ``src``'s profile to ``dst``."""
    with rasterio.open(src) as f:
        profile, data = f.profile, f.read(1)
    with rasterio.open(dst, "w", **profile) as f:
        f.write(edit(data).astype(profile["dtype"]), 1)
    return dst


def _write_dem(dst: Path, heights: np.ndarray, transform: Affine) -> Path:
    profile = dict(driver="GTiff", width=heights.shape[1], height=heights.shape[0], count=1,
                   dtype="float32", crs="EPSG:4326", transform=transform, tiled=True,
                   blockxsize=256, blockysize=256)  # fmt: skip
    with rasterio.open(dst, "w", **profile) as f:
        f.write(heights.astype("float32"), 1)
    return dst


def _plane_dem(dst: Path, bbox: tuple[float, float, float, float], gx: float, gy: float, epsg: int) -> Path:
    """A 1-arcsecond EPSG:4326 DEM whose heights are ``gx * E + gy * N`` in UTM metres."""
    step = 1 / 3600
    west, south, east, north = bbox
    lons = np.arange(west, east, step) + step / 2
    lats = np.arange(north, south, -step) - step / 2
    lon, lat = np.meshgrid(lons, lats)
    east_m, north_m = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    heights = gx * (east_m - east_m.mean()) + gy * (north_m - north_m.mean()) + 500.0
    return _write_dem(dst, heights, Affine(step, 0, west, 0, -step, north))


def _harmonised_b04(item, geobox=ALIGNED) -> np.ndarray:
    ds = load_s2([item], geobox, 32, bands=("B04",))
    return harmonise(ds, [item])["B04"].isel(time=0).values


# ----------------------------------------------------------------------------------------- grid


@settings(max_examples=60, deadline=None)
@given(
    west=st.floats(-179.0, 178.0),
    south=st.floats(-79.0, 79.0),
    width=st.floats(0.0, 0.8),
    height=st.floats(0.0, 0.8),
    resolution=st.sampled_from([10.0, 20.0, 30.0, 60.0, 100.0]),
)
def test_utm_geobox_contains_bbox_on_snapped_grid(west, south, width, height, resolution):
    bbox = (west, south, west + width, south + height)
    gb = utm_geobox(bbox, resolution)
    lon_c, lat_c = west + width / 2, south + height / 2
    zone = math.floor((lon_c + 180) / 6) + 1
    assert gb.crs.epsg == (32600 if lat_c >= 0 else 32700) + zone
    a = gb.affine
    assert (a.a, a.b, a.d, a.e) == (resolution, 0.0, 0.0, -resolution)
    for edge in (a.c, a.f):
        assert edge / resolution == pytest.approx(round(edge / resolution), abs=1e-9)
    # Points along the bbox outline, projected, lie inside the grid's extent.
    t = np.linspace(0, 1, 50)
    east, north = west + width, south + height
    lons = np.concatenate([west + width * t, np.full(50, east), west + width * t, np.full(50, west)])
    lats = np.concatenate([np.full(50, south), south + height * t, np.full(50, north), south + height * t])
    xs, ys = Transformer.from_crs(4326, gb.crs.epsg, always_xy=True).transform(lons, lats)
    x0, y0, x1, y1 = gb.boundingbox
    assert x0 - 1e-6 <= xs.min() and xs.max() <= x1 + 1e-6
    assert y0 - 1e-6 <= ys.min() and ys.max() <= y1 + 1e-6
    # Snapped outward by less than one pixel (plus the envelope's curvature slack).
    assert xs.min() - x0 < resolution + 1 and x1 - xs.max() < resolution + 1


def test_utm_zone_epsg_known_places():
    assert utm_zone_epsg(6.6, 0.3) == 32632  # Sao Tome
    assert utm_zone_epsg(-11.4, 24.7) == 32629  # tile 29RKH
    assert utm_zone_epsg(141.9, 42.7) == 32654  # Iburi
    assert utm_zone_epsg(-70.0, -33.0) == 32719


def test_utm_geobox_rejects_bad_input():
    with pytest.raises(CubeError):
        utm_geobox((10, 0, 5, 1))
    with pytest.raises(CubeError):
        utm_geobox((0, 0, 1, 1), resolution=0)


# ----------------------------------------------------------------------------------------- S2


def test_loaded_grid_matches_geobox():
    gb = utm_geobox(S2_BBOX, 100.0)
    assert gb.crs.epsg == 32629
    ds = load_s2([s2_item()], gb, 64)
    assert ds.odc.geobox == gb
    assert ds["B02"].shape == (1, *gb.shape.yx)
    assert ds["B02"].dtype == np.uint16 and ds["SCL"].dtype == np.uint16
    assert ds["B02"].data.chunksize == (1, 64, 64)
    values = ds["B02"].values
    assert (values > 0).all() and values.mean() > 500  # real desert reflectance, no nodata


def test_baseline_0400_subtracts_1000():
    raw = load_s2([s2_item()], ALIGNED, 32, bands=("B04",))["B04"].isel(time=0).values.astype(float)
    old = _harmonised_b04(s2_item(baseline="02.14"))
    new = _harmonised_b04(s2_item(baseline="04.00"))
    assert old.dtype == np.float32
    assert np.array_equal(old, raw, equal_nan=True)
    high = raw >= 1000
    assert high.sum() > 100
    assert np.array_equal(old[high] - new[high], np.full(high.sum(), 1000.0))
    low = (raw > 0) & (raw < 1000)
    assert (new[low] == 0).all()  # clipped, not negative


def test_nodata_stays_nodata_after_harmonise(tmp_path):
    def stripes(dn: np.ndarray) -> np.ndarray:
        return np.where(np.arange(dn.shape[1]) % 7 == 0, 0, dn)

    b04 = _copy_tif(S2_DIR / "B04.tif", tmp_path / "B04.tif", stripes)
    out = _harmonised_b04(s2_item(baseline="04.00", overrides={"B04": b04}))
    raw = load_s2([s2_item(overrides={"B04": b04})], ALIGNED, 32, bands=("B04",))["B04"].values[0]
    assert (raw == 0).any()
    assert np.array_equal(np.isnan(out), raw == 0)


def test_mixed_baselines_on_one_solar_day_raise():
    a = s2_item(item_id="a", baseline="02.14")
    b = s2_item(item_id="b", baseline="04.00")
    ds = load_s2([a, b], ALIGNED, 32, bands=("B04",))
    with pytest.raises(CubeError, match="same solar day"):
        harmonise(ds, [a, b])


def test_harmonise_rejects_items_that_were_not_loaded():
    loaded = s2_item()
    other = s2_item(item_id="other", when=dt.datetime(2020, 3, 1, 11, 34, tzinfo=dt.UTC))
    ds = load_s2([loaded], ALIGNED, 32, bands=("B04",))
    with pytest.raises(CubeError, match="do not match"):
        harmonise(ds, [other])
    with pytest.raises(CubeError, match="do not match"):
        harmonise(ds, [loaded, other])


def test_invalid_scl_is_masked_and_dilation_grows_it():
    item = s2_item()
    ds = load_s2([item], ALIGNED, 32, bands=("B04",))
    scl = ds["SCL"]
    plain = clear_mask(scl, dilate_px=0).values[0]
    grown = clear_mask(scl, dilate_px=3).values[0]
    invalid = np.isin(scl.values[0], SCL_INVALID)
    assert invalid.any() and (~invalid).any()
    assert np.array_equal(plain, ~invalid)
    assert not (grown & ~plain).any() and grown.sum() < plain.sum()
    comp = composite(harmonise(ds, [item])[["B04"]], clear_mask(scl, dilate_px=3))
    b04 = comp["B04"].values
    assert np.isnan(b04[invalid]).all()
    assert np.isfinite(b04[grown]).all()
    assert np.array_equal(comp["n_clear"].values, grown.astype(np.uint8))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 3), st.integers(8, 40), st.integers(8, 40)),
    chunk=st.integers(5, 16),
    radius=st.integers(0, 4),
)
def test_dilation_is_exact_across_chunks(seed, shape, chunk, radius):
    rng = np.random.default_rng(seed)
    classes = rng.choice([4, 5, 6, 8, 9, 3, 0], size=shape, p=[0.3, 0.3, 0.25, 0.04, 0.04, 0.04, 0.03])
    chunk = max(chunk, radius)
    chunked = xr.DataArray(da.from_array(classes, chunks=(1, chunk, chunk)), dims=("time", "y", "x"))
    got = clear_mask(chunked, radius).values
    cloudy = np.isin(classes, SCL_DILATE)
    from scipy import ndimage

    grown = np.stack([ndimage.binary_dilation(c, structure=disk(radius)) if radius else c for c in cloudy])
    assert np.array_equal(got, ~(np.isin(classes, SCL_INVALID) | grown))


def test_composite_is_median_of_clear_observations(tmp_path):
    """Three dates: A (original), B (+200 on B04, a cloud block in SCL), C (baseline 04.00, +1050).

    Harmonised B04: A = d, B = d + 200, C = d + 50. Expected median: d + 50 where all three are
    clear, (d + d + 50) / 2 = d + 25 inside B's cloud block, NaN where the original SCL is invalid.
    """
    plus = lambda k: lambda a: np.where(a > 0, a.astype(np.int64) + k, 0)  # noqa: E731
    scl_block = (slice(ROW0 // 2 + 33, ROW0 // 2 + 39), slice(COL0 // 2 + 5, COL0 // 2 + 15))  # 200 m SCL px

    def cloud(a):
        a = a.copy()
        a[scl_block] = 9
        return a

    b_scl = _copy_tif(S2_DIR / "SCL.tif", tmp_path / "SCL_b.tif", cloud)
    b_b04 = _copy_tif(S2_DIR / "B04.tif", tmp_path / "B04_b.tif", plus(200))
    c_b04 = _copy_tif(S2_DIR / "B04.tif", tmp_path / "B04_c.tif", plus(1050))
    items = [
        s2_item(item_id="A"),
        s2_item(item_id="B", when=dt.datetime(2020, 3, 1, 11, 34, tzinfo=dt.UTC),
                overrides={"SCL": b_scl, "B04": b_b04}),
        s2_item(item_id="C", when=dt.datetime(2020, 3, 11, 11, 34, tzinfo=dt.UTC), baseline="04.00",
                overrides={"B04": c_b04}),
    ]  # fmt: skip
    ds = load_s2(items, ALIGNED, 32, bands=("B04",))
    assert ds.sizes["time"] == 3
    harm = harmonise(ds, items)
    comp = composite(harm[["B04"]], clear_mask(ds["SCL"], dilate_px=0)).compute()

    d = ds["B04"].values[0].astype(np.float32)
    scl = ds["SCL"].values
    original_clear = ~np.isin(scl[0], SCL_INVALID)
    b_cloud = np.isin(scl[1], SCL_INVALID) & original_clear
    assert b_cloud.sum() >= 50
    expected = np.where(original_clear, np.where(b_cloud, d + 25, d + 50), np.nan)
    assert np.array_equal(comp["B04"].values, expected, equal_nan=True)
    assert np.array_equal(comp["n_clear"].values, np.where(original_clear, np.where(b_cloud, 2, 3), 0))


# ----------------------------------------------------------------------------------------- DEM


def test_dem_on_utm_grid_and_slope_chunking_invariant():
    gb = utm_geobox(SAO_TOME_BBOX, 100.0)
    assert gb.crs.epsg == 32632
    dem = load_dem([dem_item()], gb, 50)
    assert dem.odc.geobox == gb and dem.dtype == np.float32
    heights = dem.values
    assert np.isfinite(heights).all() and 1000 < heights.max() < 2100  # Pico de Sao Tome 2024 m
    chunked = slope_degrees(dem.chunk(37), 100.0).values
    whole = slope_degrees(dem.chunk(-1), 100.0).values
    assert chunked.dtype == np.float32
    assert np.array_equal(chunked, whole)
    assert 0 <= np.nanmin(whole) and np.nanmax(whole) < 90


@pytest.mark.parametrize("gx,gy", [(0.1, 0.0), (0.03, -0.04), (-0.5, 0.2)])
def test_slope_of_plane_geotiff_is_atan_gradient(tmp_path, gx, gy):
    """A UTM GeoTIFF plane ``z = gx * E + gy * N``: slope = atan(hypot(gx, gy)) to 1e-3 degrees."""
    gb = utm_geobox(S2_BBOX, 30.0)
    east, north = gb.coords["x"].values, gb.coords["y"].values
    heights = gx * (east[None, :] - east.mean()) + gy * (north[:, None] - north.mean()) + 500.0
    profile = dict(driver="GTiff", width=gb.shape.x, height=gb.shape.y, count=1, dtype="float32",
                   crs=str(gb.crs), transform=gb.affine)  # fmt: skip
    with rasterio.open(tmp_path / "plane_utm.tif", "w", **profile) as f:
        f.write(heights.astype("float32"), 1)
    dem = rioxarray.open_rasterio(tmp_path / "plane_utm.tif", chunks={"x": 50, "y": 50})
    dem = dem.squeeze("band", drop=True)
    slope = slope_degrees(dem, 30.0).values
    expected = math.degrees(math.atan(math.hypot(gx, gy)))
    assert np.abs(slope - expected).max() < 1e-3


@pytest.mark.parametrize("gx,gy", [(0.1, 0.0), (-0.5, 0.2)])
def test_slope_of_plane_through_odc_stac_reprojection(tmp_path, gx, gy):
    """Same plane written in EPSG:4326 at 1 arcsec and reprojected by odc-stac onto a 100 m UTM grid.

    GDAL's warp (approximate transformer, 0.125 px tolerance; scale-aware bilinear kernel) adds
    a little noise: measured median 0.006-0.024 degrees, interior max < 0.09 degrees.
    """
    path = _plane_dem(tmp_path / "plane.tif", (-11.52, 24.58, -11.28, 24.82), gx, gy, 32629)
    gb = utm_geobox(S2_BBOX, 100.0)
    slope = slope_degrees(load_dem([dem_item(path)], gb, 64), 100.0).values
    error = np.abs(slope - math.degrees(math.atan(math.hypot(gx, gy))))
    assert np.median(error) < 0.03 and error[1:-1, 1:-1].max() < 0.1


def test_slope_numpy_plane_exact_including_edges():
    y, x = np.mgrid[0:20, 0:30].astype(np.float64)
    dem = xr.DataArray(da.from_array(3.0 * x * 10 - 4.0 * y * 10, chunks=7), dims=("y", "x"))
    slope = slope_degrees(dem, 10.0).values
    assert np.allclose(slope, math.degrees(math.atan(5.0)), atol=1e-4)


def test_nan_seam_is_filled(tmp_path):
    with rasterio.open(DEM_TIF) as src:
        window = Window(1800, 1800, 720, 720)  # rows/cols of Sao Tome
        heights, transform = src.read(1, window=window), src.window_transform(window)
    seam = heights.copy()
    seam[:, 360] = np.nan
    path = _write_dem(tmp_path / "seam.tif", seam, transform)
    west, north = transform * (0, 0)
    gb = utm_geobox((west + 0.02, north - 0.18, west + 0.18, north - 0.02), 30.0)
    unfilled = load_dem([dem_item(path)], gb, 128, fill_px=0).values
    filled = load_dem([dem_item(path)], gb, 128).values
    gaps = np.isnan(unfilled)
    assert gaps.any() and gaps.sum(axis=0).max() == gb.shape.y  # a whole column of the grid
    assert np.isfinite(filled).all()
    assert np.array_equal(filled[~gaps], unfilled[~gaps])
    original = _write_dem(tmp_path / "original.tif", heights, transform)
    truth = load_dem([dem_item(original)], gb, 128).values
    error = np.abs(filled - truth)[gaps]
    # Filled like a 1-pixel interpolation: measured mean 2.7 m where neighbours differ by 2.2 m.
    assert error.mean() < 5.0 and error.max() < 50.0


# ----------------------------------------------------------------------------------------- cube


class _TaskCounter(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.tasks = 0

    def _pretask(self, key, dsk, state) -> None:
        self.tasks += 1


@pytest.fixture(scope="module")
def plane_dem(tmp_path_factory) -> Path:
    west, south, east, north = ALIGNED.geographic_extent.boundingbox
    bbox = (west - 0.02, south - 0.02, east + 0.02, north + 0.02)
    return _plane_dem(tmp_path_factory.mktemp("dem") / "plane.tif", bbox, 0.2, 0.1, 32629)


def test_build_cube_is_lazy_scaled_and_masked(plane_dem):
    item = s2_item()
    with _TaskCounter() as counter:
        cube = build_cube([item], [dem_item(plane_dem)], ALIGNED, 32, dilate_px=2)
    assert counter.tasks == 0  # building the graph ran no task (no read, no compute)
    for name in [*SWEEP_BANDS, "valid", "slope_deg", "n_clear"]:
        assert isinstance(cube[name].data, da.Array), name
        assert cube[name].dims == ("y", "x")
        assert cube[name].data.chunksize == (32, 32)
    assert set(SWEEP_BANDS) <= set(cube.data_vars)
    assert cube.odc.geobox == ALIGNED
    assert cube.rio.crs.to_epsg() == 32629
    assert cube.attrs["landslide:scene_ids"] == [item.id]
    assert cube["valid"].dtype == bool and cube["n_clear"].dtype == np.uint8
    assert all(cube[b].dtype == np.float32 for b in SWEEP_BANDS)

    cube = cube.compute()
    ds = load_s2([item], ALIGNED, 32)
    clear = clear_mask(ds["SCL"], 2).values[0]
    valid = cube["valid"].values
    assert np.array_equal(valid, clear)  # DEM covers everything; clouds do not
    assert valid.any() and (~valid).any()
    dn = ds["B04"].values[0].astype(np.float32)
    assert np.array_equal(cube["B04"].values[valid], (dn / np.float32(L4S_DIVISORS["B04"]))[valid])
    for name in SWEEP_BANDS:
        assert np.isnan(cube[name].values[~valid]).all(), name
    slope = cube["slope_deg"].values
    assert np.allclose(slope[1:-1, 1:-1], math.degrees(math.atan(math.hypot(0.2, 0.1))), atol=0.1)
    assert np.allclose(cube["slope"].values[valid], slope[valid] / L4S_DIVISORS["slope"])
    dem_m = load_dem([dem_item(plane_dem)], ALIGNED, 32).values
    assert np.allclose(cube["dem"].values[valid], dem_m[valid] / L4S_DIVISORS["dem"])


def test_stack_bands_order_and_missing_band(plane_dem):
    cube = build_cube([s2_item()], [dem_item(plane_dem)], ALIGNED, 32)
    stack = stack_bands(cube, ["B04", "slope", "B02"])
    assert isinstance(stack, da.Array) and stack.dtype == np.float32
    assert stack.shape == (3, *ALIGNED.shape.yx)
    got = stack[:, 10:20, 10:20].compute()
    assert np.array_equal(got[1], cube["slope"].values[10:20, 10:20], equal_nan=True)
    with pytest.raises(CubeError, match="B10"):
        stack_bands(cube, ["B04", "B10"])


# ----------------------------------------------------------------------------------------- errors


def test_wrong_collection_missing_asset_crs_dtype_raise_one_line_user_errors():
    gb = ALIGNED
    wrong = s2_item()
    wrong.collection_id = "landsat-c2-l2"
    missing = s2_item()
    del missing.assets["B11"]
    crs = s2_item()
    crs.assets["B02"].extra_fields["proj:epsg"] = 4326
    dtype = s2_item()
    dtype.assets["B03"].extra_fields["raster:bands"] = [{"data_type": "float32"}]
    cases = [(wrong, "collection"), (missing, "'B11'"), (crs, "'B02'.*CRS"), (dtype, "'B03'.*data type")]
    for item, pattern in cases:
        with pytest.raises(CubeError, match=pattern) as info:
            load_s2([item], gb, 32)
        message = str(info.value)
        assert isinstance(info.value, UserError) and "\n" not in message and item.id in message
    with pytest.raises(CubeError, match="cop-dem-glo-30"):
        load_dem([s2_item()], gb, 32)
    with pytest.raises(CubeError, match="no sentinel-2-l2a items"):
        load_s2([], gb, 32)


def test_cube_chunking_spectral_exact_dem_bounded(plane_dem):
    """Spectral bands, masks and counts do not depend on the chunk size.

    The DEM does, slightly: odc-stac warps each chunk separately with GDAL (approximate
    transformer, scale-aware bilinear kernel cut at the read window), so reprojected heights
    differ by up to ~1 m in steep terrain between chunkings (known limitation, see the report).
    """
    small = build_cube([s2_item()], [dem_item(plane_dem)], ALIGNED, 17).compute()
    large = build_cube([s2_item()], [dem_item(plane_dem)], ALIGNED, 80).compute()
    for name in [*SWEEP_BANDS[:-2], "valid", "n_clear"]:
        assert np.array_equal(small[name].values, large[name].values, equal_nan=True), name
    gb = utm_geobox(SAO_TOME_BBOX, 100.0)
    heights_small = load_dem([dem_item()], gb, 50).values
    heights_large = load_dem([dem_item()], gb, 256).values
    assert np.abs(heights_small - heights_large).max() < 2.0


def test_real_planetary_computer_items_pass_the_item_checks(shared_data: Path) -> None:
    """The real PC sentinel-2-l2a and cop-dem-glo-30 items are accepted as they come."""
    import json

    import pystac

    from pipeline.cube import _native_grid, check_dem_items, check_s2_items

    s2 = [
        pystac.Item.from_dict(json.loads(p.read_text()))
        for p in sorted((shared_data / "stac" / "sentinel-2-l2a").glob("*__S2*.json"))
    ]
    s2 = [it for it in s2 if it.collection_id == "sentinel-2-l2a"]
    assert len(s2) >= 30
    check_s2_items(s2)
    dem = [
        pystac.Item.from_dict(json.loads(p.read_text()))
        for p in sorted((shared_data / "stac" / "cop-dem-glo-30").glob("*_DEM.json"))
    ]
    check_dem_items(dem)
    # The DEM's own grid is anchored like the tiles: pixel edges at half arcseconds.
    box = utm_geobox((-177.9, -89.5, -177.1, -89.1), 30.0)
    native = _native_grid(dem, box)
    res = abs(native.transform.a)
    assert native.crs.epsg == 4326
    assert abs((native.transform.c / res) % 1.0 - 0.5) < 1e-6


# ----------------------------------------------------------------------------------------- kernels


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 30), st.integers(1, 30)),
    radius=st.integers(0, 6),
    density=st.floats(0.0, 0.3),
)
def test_dilate_disk_equals_binary_dilation(seed, shape, radius, density):
    from scipy import ndimage

    from pipeline.cube import dilate_disk

    mask = np.random.default_rng(seed).random(shape) < density
    expected = ndimage.binary_dilation(mask, structure=disk(radius)[None]) if radius else mask
    assert np.array_equal(dilate_disk(mask, radius), expected)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(1, 7),
    clear_p=st.floats(0.0, 1.0),
    nodata_p=st.floats(0.0, 0.3),
)
def test_composite_block_is_the_nanmedian_of_clear_harmonised_observations(seed, t, clear_p, nodata_p):
    """The sorting-network median equals bottleneck's nanmedian of the masked values, exactly."""
    import warnings

    import bottleneck as bn

    from pipeline.cube import composite_block

    rng = np.random.default_rng(seed)
    dn = rng.integers(1, 4000, size=(t, 23, 19)).astype(np.uint16)
    dn[rng.random(dn.shape) < nodata_p] = 0
    clear = rng.random(dn.shape) < clear_p
    offsets = [int(v) for v in rng.choice([0, 1000], size=t)]
    out = composite_block(dn, clear, offsets, np.empty((23, 19), np.float32))
    harmonised = np.maximum(dn.astype(np.float32) - np.array(offsets, np.float32)[:, None, None], 0)
    masked = np.where(clear & (dn != 0), harmonised, np.float32(np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = bn.nanmedian(np.moveaxis(masked, 0, -1), axis=-1).astype(np.float32)
    assert np.array_equal(out, expected, equal_nan=True)


def _fill_reference(block: np.ndarray, iterations: int) -> np.ndarray:
    """The seam fill's definition by 3 x 3 convolutions (the previous implementation)."""
    from scipy import ndimage

    values = block.astype("float32", copy=True)
    kernel = np.ones((3, 3))
    for _ in range(iterations):
        missing = np.isnan(values)
        total = ndimage.convolve(np.where(missing, 0.0, values), kernel, mode="constant", cval=0.0)
        count = ndimage.convolve((~missing).astype(float), kernel, mode="constant", cval=0.0)
        fill = missing & (count > 0)
        values[fill] = (total[fill] / count[fill]).astype("float32")
    return values


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), iterations=st.integers(0, 4), holes=st.integers(0, 6))
def test_fill_seams_equals_the_convolution_definition(seed, iterations, holes):
    from pipeline.cube import fill_seams

    rng = np.random.default_rng(seed)
    heights = (rng.random((40, 50)) * 2000).astype(np.float32)
    for _ in range(holes):
        r, c = rng.integers(0, 40), rng.integers(0, 50)
        heights[r : r + rng.integers(1, 12), c : c + rng.integers(1, 3)] = np.nan  # seams and holes
    got = fill_seams(heights, iterations)
    expected = _fill_reference(heights, iterations)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.allclose(got, expected, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize(
    "shift,res", [((0.0, 0.0), 10.0), ((3.3, -2.7), 10.0), ((1.0, 4.0), 30.0), ((0.5, 0.25), 7.0)]
)
def test_separable_resampling_equals_map_coordinates(shift, res):
    """Same CRS, axis-aligned: the separable bilinear equals scipy's map_coordinates (order 1)."""
    from scipy import ndimage

    from pipeline.cube import resample_block

    rng = np.random.default_rng(1)
    native = (rng.random((60, 70)) * 1000).astype(np.float32)
    native_box = GeoBox((60, 70), Affine(res, 0, 500000.0, 0, -res, 4000000.0), "EPSG:32629")
    out_box = GeoBox((40, 45), Affine(10.0, 0, 500000.0 + 10 * res + shift[0], 0, -10.0,
                                      4000000.0 - 10 * res - shift[1]), "EPSG:32629")  # fmt: skip
    got = resample_block(native, native_box, out_box, (5, 40), (0, 45))
    t, inv = out_box.transform, ~native_box.transform
    cc, rr = np.meshgrid(np.arange(0, 45) + 0.5, np.arange(5, 40) + 0.5)
    col, row = inv * (t * (cc, rr))
    expected = ndimage.map_coordinates(native, [row - 0.5, col - 0.5], order=1, mode="constant", cval=np.nan)
    inside = np.isfinite(expected)
    assert inside.mean() > 0.5
    assert np.allclose(got[inside], expected[inside], rtol=1e-6, atol=1e-3)


# ----------------------------------------------------------------------------------------- fused cube


@pytest.fixture(scope="module")
def cloudy_scene(tmp_path_factory):
    """Four cloudy acquisitions of the real demo scene (bench.scene), different baselines."""
    from bench.scene import build_multi_scene

    return build_multi_scene(tmp_path_factory.mktemp("four"), 1, 1, acquisitions=4, level=1)


def _scene_items(scene):
    from pipeline import catalog
    from pipeline.cube import DEM_COLLECTION, S2_COLLECTION
    from pipeline.demo import scene as demo

    cat = catalog.open_catalog(str(scene.catalog))
    s2 = cat.search(S2_COLLECTION, scene.bbox, demo.DEMO_START, demo.DEMO_END)
    dem = cat.search(DEM_COLLECTION, scene.bbox, demo.DEMO_DEM_START, demo.DEMO_DEM_END)
    return s2, dem


def test_fused_cube_equals_the_step_by_step_definition(cloudy_scene):
    """build_cube (one fused task per block) == load -> harmonise -> mask -> bottleneck median ->
    DEM -> slope -> scale, composed from the module's step functions; and chunk-invariant."""
    s2, dem_items = _scene_items(cloudy_scene)
    assert len(s2) == 4
    gb = utm_geobox(cloudy_scene.bbox, 10.0)
    gb = GeoBox((gb.shape.y + 40, gb.shape.x + 40), gb.transform * Affine.translation(-20, -20), gb.crs)
    fused = build_cube(s2, dem_items, gb, 128).compute()
    other = build_cube(s2, dem_items, gb, 1000).compute()

    raw = load_s2(s2, gb, 256)
    clear = clear_mask(raw["SCL"], 3)
    comp = composite(harmonise(raw, s2)[[b for b in SWEEP_BANDS if b.startswith("B")]], clear).compute()
    dem = load_dem(dem_items, gb, 256).compute()
    slope = slope_degrees(dem, 10.0).values
    valid = (comp["n_clear"].values > 0) & np.isfinite(dem.values) & np.isfinite(slope)
    physical = {b: comp[b].values for b in SWEEP_BANDS if b.startswith("B")}
    physical |= {"slope": slope, "dem": dem.values}
    for b in SWEEP_BANDS:
        valid &= np.isfinite(physical[b])
    assert 0.1 < valid.mean() < 0.9  # clouds and the margin outside the scene are not valid
    assert np.array_equal(fused["valid"].values, valid)
    assert np.array_equal(fused["n_clear"].values, comp["n_clear"].values)
    assert comp["n_clear"].values.max() == 4 and (comp["n_clear"].values[valid] < 4).any()
    for b in SWEEP_BANDS:
        expected = np.where(valid, physical[b] / np.float32(L4S_DIVISORS[b]), np.float32(np.nan))
        assert np.array_equal(fused[b].values, expected, equal_nan=True), b
    for name in [*SWEEP_BANDS, "valid", "n_clear", "slope_deg"]:
        assert np.array_equal(fused[name].values, other[name].values, equal_nan=True), name
    stack = stack_bands(build_cube(s2, dem_items, gb, 128), SWEEP_BANDS)
    assert np.array_equal(stack.compute(), np.stack([fused[b].values for b in SWEEP_BANDS]), equal_nan=True)


def test_cloud_jitter_and_baselines_are_removed_by_the_composite(cloudy_scene):
    """The composite of the cloudy, jittered, offset acquisitions is close to the clean scene."""
    from pipeline.demo import scene as demo

    s2, dem_items = _scene_items(cloudy_scene)
    gb = utm_geobox(cloudy_scene.bbox, 10.0)
    cube = build_cube(s2, dem_items, gb, 256).compute()
    with rasterio.open(demo.DEMO_DIR / "B04.tif") as src:
        win = src.window(*gb.boundingbox)
        clean = src.read(1, window=win.round_offsets().round_lengths()).astype(np.float32)
    got = cube["B04"].values[: clean.shape[0], : clean.shape[1]] * np.float32(L4S_DIVISORS["B04"])
    ok = np.isfinite(got) & (clean > 0)
    assert ok.mean() > 0.5
    rel = np.abs(got[ok] - clean[ok]) / np.maximum(clean[ok], 100)
    assert np.median(rel) < 0.05  # bright clouds (5000+ DN) and +1000 offsets would be far off
