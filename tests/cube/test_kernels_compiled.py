"""The compiled loops of pipeline/cube/kernels.py against the numpy definitions they replace.

The resampling kernels are checked elsewhere against their references (GDAL's warp in
tests/cube/test_reproject.py, the exact integer rule and ``map_coordinates`` in
tests/test_cube_kernels.py); here: that the reprojection computes each pixel's coordinates
exactly as :meth:`AnchoredLattice.strip` does and, without no data, GDAL's 4-sample rule on
them bit for bit, and the small helpers of the fuse and the mask.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox

from pipeline.cube import kernels
from pipeline.cube.lattice import AnchoredLattice
from pipeline.cube.reproject import SourceGrid, reproject_into


@settings(max_examples=40, deadline=None)
@given(
    res=st.sampled_from([10.0, 20.0, 60.0]),
    origin=st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
    size=st.tuples(st.integers(1, 70), st.integers(1, 70)),
)
def test_reprojection_takes_the_pixel_the_lattice_coordinates_name(res, origin, size) -> None:
    """Nearest neighbour on a source whose values are their own index: the pixel chosen is
    ``floor(coordinate + 1e-10)`` of the numpy lattice's coordinates, everywhere."""
    h, w = 60, 80
    src = (np.arange(h * w, dtype=np.uint32) % 65535 + 1).astype(np.uint16).reshape(h, w)
    src_t = (res, 0.0, 263_000.0, 0.0, -res, 4_768_000.0)
    grid = SourceGrid("EPSG:32655", src_t, (h, w))
    box = GeoBox(size, Affine(10.0, 0.0, 752_000.0 + 10 * origin[1] / 10, 0.0, -10.0,
                              4_768_000.0 - 10 * origin[0] / 10), "EPSG:32654")  # fmt: skip
    rows, cols = (0, size[0]), (0, size[1])
    got = np.zeros(size, dtype=np.uint16)
    reproject_into(got, grid, box, rows, cols, lambda a, b, c, d: src[a:b, c:d], nearest=True)
    sr, sc = AnchoredLattice.of(grid.crs, grid.transform, box, rows, cols, 16).strip(0, size[0])
    ir, ic = np.floor(sr + 1e-10), np.floor(sc + 1e-10)
    inside = (sr >= 0) & (sc >= 0) & (ir < h) & (ic < w)
    expected = np.zeros(size, dtype=np.uint16)
    expected[inside] = src[ir[inside].astype(int), ic[inside].astype(int)]
    assert np.array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(
    res=st.sampled_from([10.0, 20.0, 60.0]),
    origin=st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
    size=st.tuples(st.integers(1, 70), st.integers(1, 90)),
    seed=st.integers(0, 2**16),
)
def test_bilinear_reprojection_is_gdals_four_sample_rule_in_numpy(res, origin, size, seed) -> None:
    """Without no data, bit for bit the 4-sample rule on the numpy lattice's coordinates: rows whose
    taps all lie inside the raster (the compiled loop's branch-free path) and rows at its edges."""
    h, w = 60, 80
    src = np.random.default_rng(seed).integers(1, 65535, (h, w)).astype(np.uint16)
    grid = SourceGrid("EPSG:32655", (res, 0.0, 263_000.0, 0.0, -res, 4_768_000.0), (h, w))
    box = GeoBox(size, Affine(10.0, 0.0, 752_000.0 + origin[1], 0.0, -10.0, 4_768_000.0 - origin[0]),
                 "EPSG:32654")  # fmt: skip
    rows, cols = (0, size[0]), (0, size[1])
    got = np.zeros(size, dtype=np.uint16)
    reproject_into(got, grid, box, rows, cols, lambda a, b, c, d: src[a:b, c:d])
    sr, sc = AnchoredLattice.of(grid.crs, grid.transform, box, rows, cols, 16).strip(0, size[0])
    iy, ix = np.floor(sr - 0.5), np.floor(sc - 0.5)
    ry, rx = 1.5 - (sr - iy), 1.5 - (sc - ix)
    qy, qx = 1.0 - ry, 1.0 - rx
    inside = (sr >= 0) & (sc >= 0) & (np.floor(sr + 1e-10) < h) & (np.floor(sc + 1e-10) < w)
    ya, yb = np.clip(iy, 0, h - 1).astype(int), np.clip(iy + 1, 0, h - 1).astype(int)
    xa, xb = np.clip(ix, 0, w - 1).astype(int), np.clip(ix + 1, 0, w - 1).astype(int)
    v = [src[y, x].astype(np.float64) for y, x in ((ya, xa), (ya, xb), (yb, xa), (yb, xb))]
    num = (rx * ry) * v[0]
    num += (qx * ry) * v[1]  # GDAL's order: upper left, upper right, lower left, lower right
    num += (rx * qy) * v[2]
    num += (qx * qy) * v[3]
    expected = np.where(inside, np.floor(num + 0.5), 0).astype(np.uint16)
    assert np.array_equal(got, expected)


@settings(deadline=None)  # the first call may compile
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 70)),
    p=st.sampled_from([0.0, 0.01, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_empty_bounds_is_the_box_of_the_zeros(shape, p, seed) -> None:
    rng = np.random.default_rng(seed)
    block = rng.integers(1, 65536, shape).astype(np.uint16)
    block[rng.random(shape) < p] = 0
    zeros = np.argwhere(block == 0)
    expected = (0, 0, 0, 0) if zeros.size == 0 else (
        zeros[:, 0].min(), zeros[:, 0].max() + 1, zeros[:, 1].min(), zeros[:, 1].max() + 1)  # fmt: skip
    assert tuple(int(v) for v in kernels.empty_bounds(block)) == tuple(int(v) for v in expected)


def test_empty_bounds_counts_no_zeros_modulo_anything() -> None:
    """A row of exactly 256 (or 65536) zeros is a row with zeros (no byte-sized counter wraps)."""
    for n in (256, 65536):
        block = np.ones((3, n + 5), dtype=np.uint16)
        block[1, 2 : n + 2] = 0
        assert tuple(int(v) for v in kernels.empty_bounds(block)) == (1, 2, 2, n + 2)


@settings(deadline=None)
@given(shape=st.tuples(st.integers(1, 30), st.integers(1, 30)), seed=st.integers(0, 2**16))
def test_fill_empty_keeps_the_first_valid_value(shape, seed) -> None:
    rng = np.random.default_rng(seed)
    dst = rng.integers(0, 3, shape).astype(np.uint16)
    src = rng.integers(0, 3, shape).astype(np.uint16)
    expected = np.where(dst == 0, src, dst)
    view = np.zeros((shape[0] + 2, shape[1] + 3), dtype=np.uint16)[1:-1, 2:-1]  # a strided view
    view[...] = dst
    kernels.fill_empty(view, src)
    assert np.array_equal(view, expected)


@settings(deadline=None)
@given(
    n=st.integers(1, 4),
    shape=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    p=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_nan_where_invalid_is_numpys_nan_in_every_layer(n, shape, p, seed) -> None:
    rng = np.random.default_rng(seed)
    layers = rng.random((n, *shape)).astype(np.float32)
    layers[rng.random(layers.shape) < 0.05] = np.nan  # NaN already: stays NaN
    valid = rng.random(shape) >= p
    expected = np.where(valid, layers, np.float32(np.nan)).astype(np.float32)
    kernels.nan_where_invalid(layers, valid)
    assert np.array_equal(layers.view(np.uint32), expected.view(np.uint32))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 300)),
    offset=st.sampled_from([0, 1, 1000, 65535]),
    divisor=st.sampled_from([1.0, 3.7, 10000.0, 1e-3]),
    nan=st.booleans(),
    track=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cast_scaled_is_numpys_harmonise_and_scale(shape, offset, divisor, nan, track, seed) -> None:
    """One observation's composite: ``float32(max(dn - offset, 0)) / divisor`` bit for bit as numpy
    computes it, NaN where DN is 0 or not clear (when asked), ``valid`` ANDed with where it qualifies."""
    rng = np.random.default_rng(seed)
    dn = rng.integers(0, 65536, shape).astype(np.uint16)
    dn[rng.random(shape) < 0.2] = 0
    dn[rng.random(shape) < 0.1] = offset
    clear = rng.random(shape) < 0.8
    valid = rng.random(shape) < 0.9
    d = np.float32(divisor)
    ref = np.maximum(dn.astype(np.float64) - offset, 0).astype(np.float32) / d
    qualifies = (dn != 0) & clear
    if nan:
        ref[~qualifies] = np.nan
    got, got_valid = np.full(shape, 7.0, np.float32), valid.copy()
    kernels.cast_scaled(dn, clear, np.uint16(offset), d, got, got_valid, track, nan)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert np.array_equal(got_valid, valid & qualifies if track else valid)


@settings(max_examples=30, deadline=None)
@given(
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]),
    n=st.integers(1, 5000),
    seed=st.integers(0, 2**16),
)
def test_hypot32_is_numpys_hypot_bit_for_bit(scale, n, seed) -> None:
    """The slope's gradient magnitude, zeros, NaN and infinities included, written in place."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(n) * scale).astype(np.float32)
    b = (rng.standard_normal(n) * scale).astype(np.float32)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf], np.float32)
    a[rng.random(n) < 0.1] = rng.choice(special)
    b[rng.random(n) < 0.1] = rng.choice(special)
    expected = np.hypot(a, b)
    kernels.hypot32(a, b, a)
    assert np.array_equal(a.view(np.uint32), expected.view(np.uint32))
