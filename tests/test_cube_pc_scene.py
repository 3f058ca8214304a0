"""The Planetary-Computer-shaped scene (pipeline/demo/pc_scene.py) and the cube's reads of it.

Native 10/20/60 m bands, two overlapping MGRS tiles and one of the next UTM zone, a swath edge,
GLO-30 DEM tiles in EPSG:4326: the direct reads (on-lattice upsampling, the next zone reprojected
by pipeline/cube/reproject.py, or warped by GDAL on fixed tiles) against odc-stac, their chunk
independence, and the DEM lattice's error bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import pystac
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from pipeline import catalog, cube
from pipeline.bands import L4S_DIVISORS, S2_L2A_ASSETS
from pipeline.cube import direct, kernels
from pipeline.cube.dem import lattice_coordinates
from pipeline.cube.direct import WARP_TILE, AlignedAsset, WarpedAsset, plan_bands
from pipeline.demo.pc_scene import NATIVE_RES, PCScene, build_pc_scene
from pipeline.sweep import DEM_WINDOW
from tests.test_cube_direct import assert_within_one_dn

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

#: One warp tile of the CRS's pixel lattice in UTM 54N, just west of 144 E, across 43 N.
TILE_X0, TILE_Y1 = 144 * 5120.0, 931 * 5120.0
GRID = GeoBox((WARP_TILE, WARP_TILE), Affine(10.0, 0.0, TILE_X0, 0.0, -10.0, TILE_Y1), "EPSG:32654")
REAL_ITEM = Path(
    "stac/sentinel-2-l2a/stac-geoparquet__S2B_MSIL2A_20240419T095549_R122_T46XER_20240419T124342.json"
)


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> PCScene:
    """Two acquisitions (clouds, baselines 02.09 / 03.01) over an area inside :data:`GRID`."""
    lon, lat = Transformer.from_crs(32654, 4326, always_xy=True).transform(TILE_X0 + 2560, TILE_Y1 - 2560)
    return build_pc_scene(
        tmp_path_factory.mktemp("pc"), acquisitions=2, size_px=256, center=(lon, lat), level=1
    )


def _items(pc: PCScene) -> tuple[list[pystac.Item], list[pystac.Item]]:
    cat = catalog.open_catalog(str(pc.catalog))
    s2 = cat.search(cube.S2_COLLECTION, pc.bbox, pc.start, pc.end)
    dem = cat.search(cube.DEM_COLLECTION, pc.bbox, *DEM_WINDOW)
    return s2, dem


def test_items_are_shaped_like_planetary_computers(pc: PCScene, shared_data: Path) -> None:
    real = json.loads((shared_data / REAL_ITEM).read_text())
    features = json.loads(pc.catalog.read_text())["features"]
    s2 = [f for f in features if f["collection"] == "sentinel-2-l2a"]
    assert len(s2) == 6 and len({f["properties"]["datetime"] for f in s2}) == 2
    assert {f["properties"]["proj:code"] for f in s2} == {"EPSG:32654", "EPSG:32655"}
    for f in s2:
        props = f["properties"]
        assert props["s2:processing_baseline"] in ("02.09", "03.01")
        assert 0 <= props["eo:cloud_cover"] <= 100 and props["s2:mgrs_tile"] in f["id"]
        for band in (*S2_L2A_ASSETS, "SCL"):
            asset, like = f["assets"][band], real["assets"][band]
            res = NATIVE_RES[band]
            assert asset["proj:transform"][0] == res == like["proj:transform"][0]
            assert asset["proj:transform"][2] % 60 == 0 and asset["title"] == like["title"]
            assert asset["proj:shape"][0] * res == f["assets"]["B02"]["proj:shape"][0] * 10
    dem = [f for f in features if f["collection"] == "cop-dem-glo-30"]
    assert len(dem) >= 2
    _, south, _, north = pc.bbox
    seams = set()
    for f in dem:
        t = f["properties"]["proj:transform"]
        assert f["properties"]["proj:code"] == "EPSG:4326" and t[0] == pytest.approx(1 / 3600)
        edge = t[2] * 3600 + 0.5  # pixel centres on whole arc-seconds: edges half a second off
        assert edge == pytest.approx(round(edge), abs=1e-6)
        seams |= {round(f["bbox"][1] + 1 / 7200, 6), round(f["bbox"][3] - 1 / 7200, 6)}
    assert any(south < s < north for s in seams)  # a DEM seam crosses the area


def test_plan_upsamples_the_own_zone_and_warps_the_other(pc: PCScene) -> None:
    s2, _ = _items(pc)
    plans = plan_bands(s2, GRID, ("B02", "B05", "B01", "SCL"), nearest=("SCL",))
    for band, plan in plans.items():
        assert plan is not None
        for day in plan.slices:
            kinds = {(type(a).__name__, getattr(a, "factor", None)) for a in day}
            assert kinds == {("AlignedAsset", NATIVE_RES[band] // 10), ("WarpedAsset", None)}, band
    b05 = plans["B05"]
    assert b05 is not None
    shifts = {(a.row_shift % 2, a.col_shift % 2) for a in b05.slices[0] if isinstance(a, AlignedAsset)}
    assert shifts and all(isinstance(a, AlignedAsset | WarpedAsset) for a in b05.slices[0])


def test_direct_reads_equal_odc_stac_and_do_not_depend_on_the_chunking(
    pc: PCScene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overlapping tiles, swath edge, the other zone, clouds: within a stated bound of odc-stac.

    The grid is one warp tile, so with GDAL's warp (the fallback, forced here) odc-stac's 512-px
    chunk is the direct reader's warp tile and the warped part is identical; the on-lattice part
    is GDAL's bilinear within 1 DN. Our reprojection (the default) differs from GDAL's
    approximate transformer by up to 0.004 px: a SCL centre that close to a class edge changes
    class (bound: 1e-4 of the pixels valid or clear differently, measured 1 pixel of 262,144),
    and a band may move by 1 DN more (bound: within 2 DN everywhere, 1 DN on 99.9 %).
    """
    s2, dem = _items(pc)
    reference = cube.build_cube(s2, dem, GRID, WARP_TILE, direct_reads=False).compute()
    with monkeypatch.context() as m:
        m.setattr(direct, "supported", lambda *_: False)
        assert_within_one_dn(cube.build_cube(s2, dem, GRID, WARP_TILE).compute(), reference)
    direct_cube = cube.build_cube(s2, dem, GRID, WARP_TILE).compute()
    valid, ref_valid = direct_cube["valid"].values, reference["valid"].values
    assert (valid != ref_valid).mean() <= 1e-4
    assert (direct_cube["n_clear"].values != reference["n_clear"].values).mean() <= 1e-4
    both = valid & ref_valid
    for name in S2_L2A_ASSETS:
        diff = np.abs(direct_cube[name].values - reference[name].values)[both] * np.float32(
            L4S_DIVISORS[name]
        )
        assert diff.max() <= 2.001 and (diff <= 1.001).mean() >= 0.999, name
    for name in ("slope", "dem"):  # NaN where not valid
        assert np.array_equal(direct_cube[name].values[both], reference[name].values[both]), name
    assert 0.05 < valid.mean() < 0.6 and (direct_cube["n_clear"].values == 2).any()
    again = cube.build_cube(s2, dem, GRID, 200).compute()
    for name in ("layers", "n_clear", "valid"):
        assert np.array_equal(again[name].values, direct_cube[name].values, equal_nan=True), name
    # The swath edge: no data west of a diagonal (SCL 0), moving east down the area.
    scl = plan_bands(s2, GRID, ["SCL"], nearest=["SCL"])["SCL"]
    assert scl is not None
    data = scl.read((0, WARP_TILE), (0, WARP_TILE))[0] != 0
    rows = np.nonzero(data.any(axis=1))[0]
    first = [int(np.argmax(data[r])) for r in rows[len(rows) // 4 : 3 * len(rows) // 4]]
    assert first[-1] > first[0] + 10 and np.all(np.diff(first) >= -1)


def test_dem_lattice_is_within_a_hundredth_of_a_pixel_of_the_exact_transform() -> None:
    """Bound 0.01 native pixel (measured ~6e-5), and each pixel independent of the window."""
    native = GeoBox(
        (3600, 3600), Affine(1 / 3600, 0, 143 - 0.5 / 3600, 0, -1 / 3600, 44 + 0.5 / 3600), "EPSG:4326"
    )
    to_wgs84 = Transformer.from_crs(32654, 4326, always_xy=True)
    for x0 in (560_000.0, 740_000.0):  # mid-zone and at the zone's eastern edge (144 E)
        out = GeoBox((700, 900), Affine(10.0, 0.0, x0, 0.0, -10.0, 4_800_000.0), "EPSG:32654")
        rows, cols = lattice_coordinates(native, out, (0, 700), (0, 900))
        cc, rr = np.meshgrid(np.arange(900) + 0.5, np.arange(700) + 0.5)
        lon, lat = to_wgs84.transform(x0 + 10 * cc, 4_800_000.0 - 10 * rr)
        inv = ~native.transform
        exact_c, exact_r = inv * (np.asarray(lon), np.asarray(lat))
        err = max(np.abs(rows - exact_r).max(), np.abs(cols - exact_c).max())
        assert err <= 0.01
        full = lattice_coordinates(native, out, (0, 700), (0, 900))
        for r, c in (
            ((123, 457), (61, 899)),
            ((0, 1), (32, 33)),
            ((31, 65), (0, 64)),
            ((699, 700), (0, 900)),
        ):
            sub = lattice_coordinates(native, out, r, c)
            assert np.array_equal(sub, full[:, r[0] : r[1], c[0] : c[1]]), (r, c)


def test_reads_do_not_depend_on_the_grid_they_are_made_for(pc: PCScene) -> None:
    """A region's grid (another origin and size on the same pixel lattice) reads the same pixels.

    Sweeps build one cube per region, each on its own grid: the warp tiles are anchored to the
    CRS's pixel lattice and the DEM lattice too, so digital numbers agree exactly and heights
    to float32 rounding (native coordinates count from each region's own DEM window).
    """
    s2, dem = _items(pc)
    top, left = 100, 137
    sub = GeoBox((312, 300), GRID.transform * Affine.translation(left, top), GRID.crs)
    names = (*S2_L2A_ASSETS, "SCL")
    whole = plan_bands(s2, GRID, names, nearest=("SCL",))
    part = plan_bands(s2, sub, names, nearest=("SCL",))
    for name in names:
        a, b = whole[name], part[name]
        assert a is not None and b is not None
        big = a.read((0, WARP_TILE), (0, WARP_TILE))[:, top : top + 312, left : left + 300]
        assert np.array_equal(b.read((0, 312), (0, 300)), big), name
        assert (big != 0).any() and any(isinstance(x, WarpedAsset) for x in a.slices[0])
    native, native_box = cube.load_native_dem(dem, GRID)
    native_sub, native_sub_box = cube.load_native_dem(dem, sub)
    heights = cube.resample_block(native.compute(), native_box, GRID, (top, top + 312), (left, left + 300))
    heights_sub = cube.resample_block(native_sub.compute(), native_sub_box, sub, (0, 312), (0, 300))
    inner = (slice(8, -8), slice(8, -8))  # the seam fill reaches a few native pixels from the read's edge
    assert np.isfinite(heights[inner]).all()
    np.testing.assert_allclose(heights[inner], heights_sub[inner], rtol=1e-6, atol=0)


def test_the_compiled_loops_get_only_contiguous_arrays(pc: PCScene, monkeypatch: pytest.MonkeyPatch) -> None:
    """numba vectorises a loop only over arrays it knows are C-contiguous (``kernels.contiguous``):
    a block's sub-boxes, the clear mask's crop and the lattice reach every loop as such, on
    blocks smaller than the tiles (so the reads land in sub-boxes)."""
    s2, dem = _items(pc)
    calls: dict[str, list[bool]] = {}

    def recording(name: str, kernel: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object) -> object:
            layouts = [a.flags.c_contiguous for a in args if isinstance(a, np.ndarray)]
            calls.setdefault(name, []).extend(layouts)
            return kernel(*args)

        return call

    for name in dir(kernels):
        if isinstance(getattr(kernels, name), numba.core.registry.CPUDispatcher):
            monkeypatch.setattr(kernels, name, recording(name, getattr(kernels, name)))
    cube.build_cube(s2, dem, GRID, 200).compute(scheduler="synchronous")
    used = {"reproject_bilinear", "upsample_bilinear", "sample_bilinear", "fill_empty", "median_rows"}
    assert used <= set(calls)
    assert {name: all(flags) for name, flags in calls.items()} == dict.fromkeys(calls, True)
