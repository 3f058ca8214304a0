"""Our reprojection (pipeline/cube/reproject.py) against GDAL's warp and odc-stac's read.

The reference is GDAL's warper with an exact transformer (a ``WarpedVRT`` whose approximation
tolerance is 1e-9 px, so every pixel is transformed) and its 4-sample bilinear kernel
(``XSCALE=YSCALE=1``: what GDAL picks itself whenever the source window is within 5 % of the
destination's size); the data are the Planetary-Computer-shaped scene's tile of the next UTM
zone with a swath edge and holes of no data added, on an output grid past all its edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from odc.loader._rio import rio_read
from odc.loader.types import RasterLoadParams, RasterSource
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from pipeline import catalog, cube
from pipeline.cube import reproject
from pipeline.cube.direct import WarpedAsset, plan_bands
from pipeline.cube.reproject import (
    LATTICE_ERROR_PX,
    SourceGrid,
    reproject_into,
    source_pixels,
    supported,
)
from pipeline.demo.pc_scene import PCScene, build_pc_scene

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

BANDS = ("B02", "B05", "B01", "SCL")  # 10, 20 and 60 m bilinear; 20 m nearest


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> PCScene:
    return build_pc_scene(tmp_path_factory.mktemp("pc"), acquisitions=1, size_px=(256, 320), level=1)


@pytest.fixture(scope="module")
def east(pc: PCScene, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The next zone's assets, with a swath edge (no data west of a diagonal) and holes added."""
    cat = catalog.open_catalog(str(pc.catalog))
    items = [i for i in cat.search(cube.S2_COLLECTION, pc.bbox, pc.start, pc.end)
             if i.properties["proj:code"] == f"EPSG:{pc.epsg + 1}"]  # fmt: skip
    assert len(items) == 1
    out = tmp_path_factory.mktemp("east")
    paths = {}
    for band in BANDS:
        with rasterio.open(items[0].assets[band].get_absolute_href()) as src:
            profile, data = src.profile, src.read(1)
        h, w = data.shape
        rr, cc = np.mgrid[0:h, 0:w]
        data[cc < 0.4 * w - 0.3 * rr * w / h] = 0  # the swath edge, moving west down the tile
        data[np.random.default_rng(len(band)).random(data.shape) < 0.02] = 0  # scattered no data
        profile.update(driver="GTiff", nodata=0)
        paths[band] = out / f"{band}.tif"
        with rasterio.open(paths[band], "w", **profile) as dst:
            dst.write(data, 1)
    return paths


def _grid_around(path: Path, epsg: int, margin: int = 12) -> GeoBox:
    """A 10 m grid of ``epsg`` over the raster's whole footprint and ``margin`` pixels beyond."""
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        to = Transformer.from_crs(src.crs, CRS.from_epsg(epsg), always_xy=True)
    xs, ys = to.transform([left, right, right, left], [bottom, bottom, top, top])
    x0, y1 = 10 * (np.floor(min(xs) / 10) - margin), 10 * (np.ceil(max(ys) / 10) + margin)
    w = int(np.ceil((max(xs) - x0) / 10)) + margin
    h = int(np.ceil((y1 - min(ys)) / 10)) + margin
    return GeoBox((h, w), Affine(10.0, 0.0, x0, 0.0, -10.0, y1), f"EPSG:{epsg}")


def _ours(path: Path, box: GeoBox, nearest: bool) -> np.ndarray:
    with rasterio.open(path) as src:
        grid = SourceGrid(str(src.crs), tuple(src.transform)[:6], src.shape)  # type: ignore[arg-type]
        assert supported(grid, box)
        out = np.zeros(box.shape, dtype=np.uint16)
        window = lambda a, b, c, d: src.read(1, window=Window(c, a, d - c, b - a))  # noqa: E731
        reproject_into(out, grid, box, (0, box.shape[0]), (0, box.shape[1]), window, nearest=nearest)
    return out


def _gdal_exact(path: Path, box: GeoBox, nearest: bool) -> np.ndarray:
    resampling = Resampling.nearest if nearest else Resampling.bilinear
    h, w = box.shape
    with rasterio.open(path) as src, WarpedVRT(
        src, crs=CRS.from_string(str(box.crs)), transform=box.transform, width=w, height=h,
        resampling=resampling, tolerance=1e-9, src_nodata=0, nodata=0, XSCALE=1, YSCALE=1,
    ) as vrt:  # fmt: skip
        return vrt.read(1)


def test_reprojection_is_gdals_exact_warp_within_one_dn(pc: PCScene, east: dict[str, Path]) -> None:
    """Raster edges, the swath edge, holes: the same pixels written, within 1 DN (nearest: equal)."""
    box = _grid_around(east["B02"], pc.epsg)
    for band in BANDS:
        nearest = band == "SCL"
        ours, gdal = _ours(east[band], box, nearest), _gdal_exact(east[band], box, nearest)
        written = gdal != 0
        assert 0.3 < written.mean() < 0.9 and not written[:, :5].any() and not written[-5:].any()
        assert np.array_equal(ours != 0, written), band
        diff = np.abs(ours.astype(np.int32) - gdal)
        assert diff.max() <= (0 if nearest else 1), band
        assert (diff == 0).mean() > 0.999, band  # 1 DN only where the exact value is within ~1e-4 of a half


def test_reprojection_is_odc_stacs_read_within_a_stated_bound(pc: PCScene, east: dict[str, Path]) -> None:
    """odc-stac's read of one source: GDAL's approximate transformer (0.004 px here) and, when
    the source window's bounding box is over 5 % larger than the destination (a 256-px tile
    inside the raster, rotated 4 degrees), GDAL's wider kernel for the 10 m band.

    Bound: the same pixels written but at most 0.1 % (a centre within the transformer's error of
    a raster or no-data edge); bilinear bands within 1 DN on 85 % of them (measured 92 % with the
    wider kernel, 100 % without) and a mean difference below 0.5 % of the band's mean (0.07 %);
    SCL equal on 99.9 % (measured 100 %).
    """
    whole = _grid_around(east["B02"], pc.epsg)
    tile = GeoBox((256, 256), whole.transform, whole.crs)
    for box in (whole, tile):
        for band in BANDS:
            nearest = band == "SCL"
            ours = _ours(east[band], box, nearest)
            odc = np.zeros(box.shape, dtype=np.uint16)
            cfg = RasterLoadParams(
                dtype="uint16", fill_value=0, resampling="nearest" if nearest else "bilinear"
            )
            rio_read(RasterSource(uri=str(east[band]), band=1), cfg, box, dst=odc)
            both = (ours != 0) & (odc != 0)
            assert both.mean() > 0.3 and ((ours != 0) != (odc != 0)).mean() <= 1e-3, band
            diff = np.abs(ours[both].astype(np.int32) - odc[both])
            if nearest:
                assert (diff == 0).mean() >= 0.999
            else:
                assert (diff <= 1).mean() >= 0.85, band
                assert diff.mean() <= 0.005 * odc[both].mean(), band


@settings(max_examples=40, deadline=None)
@given(
    res=st.sampled_from([10.0, 20.0, 60.0]),
    src_shape=st.tuples(st.integers(2, 40), st.integers(2, 40)),
    offset=st.tuples(st.integers(-10, 40), st.integers(-10, 40)),
    out_shape=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    nodata=st.sampled_from([0.0, 0.1, 0.5]),
    nearest=st.booleans(),
    angle=st.sampled_from([0.0, 0.0, 7.5]),
    seed=st.integers(0, 2**16),
)
def test_rules_are_gdals_on_random_sources(
    res, src_shape, offset, out_shape, nodata, nearest, angle, seed
) -> None:
    """A source of the next zone at 10/20/60 m (north-up or rotated), random no data, any offset."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60000, src_shape).astype(np.uint16)
    src[rng.random(src_shape) < nodata] = 0
    # UTM 55 at 144.1 E, 43 N (752_697 m E in 54)
    src_t = Affine.translation(263_760.0, 4_766_700.0) * Affine.rotation(angle) * Affine.scale(res, -res)
    out_t = Affine(10.0, 0.0, 752_600.0 + 10.0 * offset[1], 0.0, -10.0, 4_767_400.0 - 10.0 * offset[0])
    box = GeoBox(out_shape, out_t, "EPSG:32654")
    profile = dict(driver="GTiff", height=src_shape[0], width=src_shape[1], count=1, dtype="uint16",
                   crs=CRS.from_epsg(32655), transform=src_t, nodata=0)  # fmt: skip
    with MemoryFile() as mem:
        with mem.open(**profile) as f:
            f.write(src, 1)
        expected = _gdal_exact(Path(mem.name), box, nearest)
    grid = SourceGrid("EPSG:32655", tuple(src_t)[:6], src_shape)  # type: ignore[arg-type]
    got = np.zeros(out_shape, dtype=np.uint16)
    reproject_into(got, grid, box, (0, out_shape[0]), (0, out_shape[1]), lambda a, b, c, d: src[a:b, c:d],
                   nearest=nearest)  # fmt: skip
    assert np.array_equal(got != 0, expected != 0)
    assert np.abs(got.astype(np.int64) - expected).max(initial=0) <= (0 if nearest else 1)


@settings(max_examples=60, deadline=None)
@given(
    x0=st.integers(50_000, 76_000),  # output column origin (10 m pixels): mid-zone 54 to 144 E
    y1=st.integers(470_000, 490_000),
    size=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    sub=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
    target=st.sampled_from(["EPSG:32655", "EPSG:4326"]),
)
def test_lattice_is_within_its_bound_of_the_exact_transform_and_window_free(
    x0, y1, size, sub, target
) -> None:
    """<= LATTICE_ERROR_PX source pixel of pyproj's per-pixel transform; a sub-window bit-identical."""
    box = GeoBox(size, Affine(10.0, 0.0, 10.0 * x0, 0.0, -10.0, 10.0 * y1), "EPSG:32654")
    if target == "EPSG:4326":
        grid = SourceGrid(
            target, (1 / 3600, 0.0, 140 - 0.5 / 3600, 0.0, -1 / 3600, 45 + 0.5 / 3600), (9000, 25000)
        )
    else:
        grid = SourceGrid(target, (20.0, 0.0, 100_000.0, 0.0, -20.0, 5_000_000.0), (10_000, 10_000))
    rows, cols = source_pixels(grid, box, (0, size[0]), (0, size[1]))
    t = box.transform
    cc, rr = np.meshgrid(np.arange(size[1]) + 0.5, np.arange(size[0]) + 0.5)
    x, y = Transformer.from_crs("EPSG:32654", target, always_xy=True).transform(
        t.c + t.a * cc, t.f + t.e * rr
    )
    exact_c, exact_r = ~Affine(*grid.transform) * (np.asarray(x), np.asarray(y))
    assert max(np.abs(rows - exact_r).max(), np.abs(cols - exact_c).max()) <= LATTICE_ERROR_PX
    r0, c0 = int(sub[0] * (size[0] - 1)), int(sub[1] * (size[1] - 1))
    r1, c1 = r0 + 1 + int(sub[2] * (size[0] - r0 - 1)), c0 + 1 + int(sub[3] * (size[1] - c0 - 1))
    part = source_pixels(grid, box, (r0, r1), (c0, c1))
    assert np.array_equal(part[0], rows[r0:r1, c0:c1]) and np.array_equal(part[1], cols[r0:r1, c0:c1])
    # Another grid on the same pixel lattice (a sweep region's) gives the same coordinates.
    moved = GeoBox((r1 - r0, c1 - c0), t * Affine.translation(c0, r0), box.crs)
    again = source_pixels(grid, moved, (0, r1 - r0), (0, c1 - c0))
    assert np.array_equal(again[0], part[0]) and np.array_equal(again[1], part[1])


@settings(max_examples=12, deadline=None)
@given(cuts=st.tuples(st.integers(1, 255), st.integers(1, 319), st.integers(0, 3)))
def test_reads_are_the_same_whatever_the_block_split(pc: PCScene, cuts: tuple[int, int, int]) -> None:
    """Block reads of the whole scene (own zone first, the next zone's warp where it is left)."""
    cat = catalog.open_catalog(str(pc.catalog))
    s2 = cat.search(cube.S2_COLLECTION, pc.bbox, pc.start, pc.end)
    box = cube.utm_geobox(pc.bbox)
    band = BANDS[cuts[2]]
    reads = plan_bands(s2, box, [band], nearest=["SCL"])[band]
    assert reads is not None and any(isinstance(a, WarpedAsset) for a in reads.slices[0])
    h, w = box.shape
    whole = reads.read((0, h), (0, w))
    r, c = min(cuts[0], h - 1), min(cuts[1], w - 1)
    parts = np.zeros_like(whole)
    for rows in ((0, r), (r, h)):
        for cols in ((0, c), (c, w)):
            parts[:, rows[0] : rows[1], cols[0] : cols[1]] = reads.read(rows, cols)
    assert np.array_equal(parts, whole) and (whole[:, :, -10:] != 0).any()


def test_supported_only_where_gdal_would_use_its_four_sample_kernel() -> None:
    box = GeoBox((10, 10), Affine(10.0, 0.0, 752_600.0, 0.0, -10.0, 4_767_400.0), "EPSG:32654")
    at = (263_760.0, 4_766_700.0)
    for res, ok in ((10.0, True), (20.0, True), (60.0, True), (9.0, False), (5.0, False)):
        grid = SourceGrid("EPSG:32655", (res, 0.0, at[0], 0.0, -res, at[1]), (100, 100))
        assert supported(grid, box) == ok, res
    rotated = GeoBox((10, 10), Affine(10.0, 1.0, 752_600.0, 1.0, -10.0, 4_767_400.0), "EPSG:32654")
    assert not supported(SourceGrid("EPSG:32655", (20.0, 0.0, at[0], 0.0, -20.0, at[1]), (100, 100)), rotated)


def test_lattice_is_shared_within_one_plan_and_bounded_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    box = GeoBox((64, 64), Affine(10.0, 0.0, 752_600.0, 0.0, -10.0, 4_767_400.0), "EPSG:32654")
    grid = SourceGrid("EPSG:32655", (20.0, 0.0, 263_760.0, 0.0, -20.0, 4_766_700.0), (100, 100))
    first = reproject.cached_lattice(1, grid, box, (0, 64), (0, 64))
    assert reproject.cached_lattice(1, grid, box, (0, 64), (0, 64)) is first
    assert reproject.cached_lattice(2, grid, box, (0, 64), (0, 64)) is not first  # another cube
    other = reproject.cached_lattice(1, grid, box, (0, 32), (0, 64))  # another window
    assert other is not first and reproject.cached_lattice(1, grid, box, (0, 64), (0, 64)) is first
    monkeypatch.setattr(reproject, "CACHE_BYTES", 1000)  # smaller than two: only the newest kept
    big = reproject.cached_lattice(3, grid, box, (0, 64), (0, 64))
    assert reproject.cached_lattice(1, grid, box, (0, 64), (0, 64)) is not first
    assert reproject.cached_lattice(1, grid, box, (0, 64), (0, 64)) is not big


@settings(max_examples=40, deadline=None)
@given(
    res=st.sampled_from([10.0, 20.0, 60.0]),
    src_shape=st.tuples(st.integers(2, 40), st.integers(2, 40)),
    out_shape=st.tuples(st.integers(2, 60), st.integers(2, 60)),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
    nodata=st.sampled_from([0.0, 0.2]),
    nearest=st.booleans(),
    seed=st.integers(0, 2**16),
    view=st.booleans(),
)
def test_only_empty_pixels_change_and_the_window_read_is_theirs(
    res, src_shape, out_shape, cut, nodata, nearest, seed, view
) -> None:
    """Pixels already holding a value keep it; empty (0) ones equal the whole window's result; the
    read window holds every tap (the compiled loop refuses a tap outside it) and lies inside the
    raster. Also into a sub-box of a larger block (a view the kernels get a contiguous copy of),
    nothing around it touched."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60000, src_shape).astype(np.uint16)
    src[rng.random(src_shape) < nodata] = 0
    src_t = Affine.translation(263_760.0, 4_766_900.0) * Affine.scale(res, -res)
    box = GeoBox(out_shape, Affine(10.0, 0.0, 752_600.0, 0.0, -10.0, 4_767_400.0), "EPSG:32654")
    grid = SourceGrid("EPSG:32655", tuple(src_t)[:6], src_shape)  # type: ignore[arg-type]
    whole = np.zeros(out_shape, dtype=np.uint16)
    rows, cols = (0, out_shape[0]), (0, out_shape[1])
    reproject_into(whole, grid, box, rows, cols, lambda a, b, c, d: src[a:b, c:d], nearest=nearest)
    h, w = out_shape
    r0, c0 = int(cut[0] * (h - 1)), int(cut[1] * (w - 1))
    r1, c1 = r0 + 1 + int(cut[2] * (h - r0 - 1)), c0 + 1 + int(cut[3] * (w - c0 - 1))
    empty = np.zeros(out_shape, dtype=bool)
    empty[r0:r1, c0:c1] = rng.random((r1 - r0, c1 - c0)) < 0.7
    reads: list[tuple[int, int, int, int]] = []

    def read(a: int, b: int, c: int, d: int) -> np.ndarray:
        reads.append((a, b, c, d))
        assert 0 <= a < b <= src_shape[0] and 0 <= c < d <= src_shape[1]
        return src[a:b, c:d]

    values = np.where(empty, 0, 7).astype(np.uint16)  # 7: what earlier items of the day wrote
    block = np.full((h + 3, w + 5), 9, dtype=np.uint16)
    part = block[1 : 1 + h, 2 : 2 + w] if view else values
    part[...] = values
    written = reproject_into(part, grid, box, rows, cols, read, nearest=nearest)
    assert len(reads) <= 1
    assert np.array_equal(part, np.where(empty, whole, 7))
    if view:
        block[1 : 1 + h, 2 : 2 + w] = 9
        assert (block == 9).all()
    assert written == int(np.count_nonzero(empty & (whole != 0)))
