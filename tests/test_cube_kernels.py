"""Block kernels of the cube against plain reference arithmetic (upsampling, median, clear mask, DEM).

Each kernel is a faster arrangement of a simple formula; these tests state the formula directly,
pixel by pixel, and require the kernel to give the same numbers.
"""

from __future__ import annotations

import warnings

import bottleneck as bn
import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from scipy import ndimage

from pipeline.bands import SCL_DILATE, SCL_INVALID
from pipeline.cube.dem import lattice_coordinates, resample_block
from pipeline.cube.median import NETWORK_MAX_T, median_block, median_network
from pipeline.cube.s2 import clear_block, composite_block, disk
from pipeline.cube.upsample import axis_taps, upsample_bilinear


def _bilinear_reference(
    src: np.ndarray, k: int, shift: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """The upsampling module's rules per output pixel in integers (0: nothing written).

    Taps ``i0 = floor(s - 1/2)`` and ``i0 + 1`` with weights ``2k - r`` and ``r`` (``r`` the
    fraction times ``2k``), outside taps replicating the edge, no-data taps dropped,
    ``floor(num / den + 1/2)`` as ``(2 num + den) // (2 den)``; nothing where the centre is off the
    raster or on a no-data pixel.
    """
    out = np.zeros(shape, dtype=np.uint16)
    n_r, n_c = src.shape

    def taps(o: int, s: int, n: int) -> list[tuple[int, int]]:
        t = 2 * (o + s) + 1 - k
        i0, r = t // (2 * k), t % (2 * k)
        return [(min(max(i0, 0), n - 1), 2 * k - r), (min(max(i0 + 1, 0), n - 1), r)]

    for y in range(shape[0]):
        for x in range(shape[1]):
            cy, cx = (y + shift[0]) // k, (x + shift[1]) // k
            if not (0 <= cy < n_r and 0 <= cx < n_c) or src[cy, cx] == 0:
                continue
            num = den = 0
            for i, wi in taps(y, shift[0], n_r):
                for j, wj in taps(x, shift[1], n_c):
                    if wi * wj and src[i, j]:
                        num += wi * wj * int(src[i, j])
                        den += wi * wj
            out[y, x] = (2 * num + den) // (2 * den)
    return out


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(1, 8),
    src_shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    shift=st.tuples(st.integers(-12, 12), st.integers(-12, 12)),
    out_shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    nodata=st.sampled_from([0.0, 0.1, 0.4, 0.8]),
    extreme=st.sampled_from([None, 1, 65535]),
    swath=st.sampled_from([None, (1, 1), (1, -2), (-3, 1), (0, 1)]),
    seed=st.integers(0, 2**16),
)
def test_bilinear_upsampling_is_the_exact_integer_rule(
    k, src_shape, shift, out_shape, nodata, extreme, swath, seed
):
    """Every pixel, no-data holes, swath edges and raster edges included, is the exact rounded bilinear value.

    ``swath``: no data on one side of a line, as outside a Sentinel-2 swath (the compiled loop
    applies the exact rule only between each row's first and last no-data pixel).
    """
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 65536, src_shape).astype(np.uint16)
    if extreme is not None:
        src[rng.random(src_shape) < 0.5] = extreme
    src[rng.random(src_shape) < nodata] = 0
    if swath is not None:
        r, c = np.indices(src_shape)
        src[swath[0] * r + swath[1] * c > rng.integers(-3, 10)] = 0
    got = np.zeros(out_shape, dtype=np.uint16)
    rt = axis_taps(0, out_shape[0], shift[0], k, src_shape[0])
    ct = axis_taps(0, out_shape[1], shift[1], k, src_shape[1])
    if rt is not None and ct is not None:
        window = src[rt.start : rt.stop, ct.start : ct.stop]
        upsample_bilinear(window, rt, ct, shift[0], shift[1], k, out=got[rt.lo : rt.hi, ct.lo : ct.hi])
    assert np.array_equal(got, _bilinear_reference(src, k, shift, out_shape))


# ------------------------------------------------------------------------------------ median


def _nanmedian_reference(dn: np.ndarray, clear: np.ndarray, offsets: list[int]) -> np.ndarray:
    """bottleneck's nanmedian of the clear, harmonised, non-zero observations (float32)."""
    harmonised = np.maximum(dn.astype(np.float64) - np.array(offsets, np.float64)[:, None, None], 0)
    masked = np.where(clear & (dn != 0), harmonised, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bn.nanmedian(np.moveaxis(masked, 0, -1), axis=-1).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(
    t=st.integers(1, 9),
    shape=st.tuples(st.integers(1, 21), st.integers(1, 17)),
    clear_p=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    nodata_p=st.sampled_from([0.0, 0.1, 0.5]),
    high=st.sampled_from([1200, 65536]),
    divisor=st.sampled_from([1.0, 3.0, 10000.0]),
    shared=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_composite_is_the_nanmedian_for_every_count(t, shape, clear_p, nodata_p, high, divisor, shared, seed):
    """Every count from 0 to T, DNs at and below the offset, 65535."""
    rng = np.random.default_rng(seed)
    dn = rng.integers(0, high, size=(t, *shape)).astype(np.uint16)
    dn[rng.random(dn.shape) < 0.1] = 65535
    dn[rng.random(dn.shape) < nodata_p] = 0
    clear = rng.random(dn.shape) < clear_p
    offsets = [int(v) for v in rng.choice([0, 1000], size=t)]
    expected = _nanmedian_reference(dn, clear, offsets) / np.float32(divisor)
    valid = np.ones(shape, dtype=bool)
    got = np.full(shape, -1.0, dtype=np.float32)
    if t > 1 and shared:  # the median alone, as composite_block calls it
        median_block(dn, clear, offsets, got, divisor, valid)
    else:
        composite_block(dn, clear, offsets, got, divisor=divisor, valid=valid)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(valid, np.isfinite(expected))
    unmasked = np.full(shape, -1.0, dtype=np.float32)
    composite_block(dn, clear, offsets, unmasked, mask=False, divisor=divisor)
    assert np.array_equal(unmasked[valid], expected[valid])


@pytest.mark.parametrize("t", range(2, NETWORK_MAX_T + 1))
def test_pruned_network_orders_the_ranks_the_median_reads(t):
    rng = np.random.default_rng(t)
    values = [rng.integers(0, 5, 4000).astype(np.uint16) for _ in range(t)]
    expected = np.sort(np.stack(values), axis=0)
    for i, j, keep_min, keep_max in median_network(t):
        lo, hi = np.minimum(values[i], values[j]), np.maximum(values[i], values[j])
        if keep_min:
            values[i] = lo
        if keep_max:
            values[j] = hi
    for rank in range(t // 2 + 1):
        assert np.array_equal(values[rank], expected[rank])


def test_composite_beyond_the_network_uses_bottleneck():
    rng = np.random.default_rng(3)
    t = NETWORK_MAX_T + 1
    dn = rng.integers(0, 3000, size=(t, 9, 11)).astype(np.uint16)
    clear = rng.random(dn.shape) < 0.5
    offsets = [1000 * (i % 2) for i in range(t)]
    valid = np.ones((9, 11), dtype=bool)
    got = composite_block(dn, clear, offsets, np.empty((9, 11), np.float32), valid=valid)
    assert np.array_equal(got, _nanmedian_reference(dn, clear, offsets), equal_nan=True)
    assert np.array_equal(valid, np.isfinite(got))


# ---------------------------------------------------------------------------------- clear mask


@settings(max_examples=80, deadline=None)
@given(
    dtype=st.sampled_from([np.uint16, np.uint8, np.int64]),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 30), st.integers(1, 30)),
    radius=st.integers(0, 5),
    strip=st.integers(1, 2000),
    wild=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_clear_block_is_classes_and_disk_dilation(dtype, shape, radius, strip, wild, seed):
    """Any class value (16 and above, 65535 too), any strip height: the mask's definition."""
    rng = np.random.default_rng(seed)
    classes = rng.choice([4, 5, 6, 8, 9, 3, 0, 1, 10, 11], size=shape)
    if wild:
        classes = np.where(rng.random(shape) < 0.3, rng.integers(0, np.iinfo(dtype).max, shape), classes)
    scl = classes.astype(dtype)
    cloudy = np.isin(scl, SCL_DILATE)
    grown = np.stack([ndimage.binary_dilation(c, structure=disk(radius)) if radius else c for c in cloudy])
    expected = ~(np.isin(scl, SCL_INVALID) | grown)
    assert np.array_equal(clear_block(scl, radius, strip_pixels=strip), expected)


# ------------------------------------------------------------------------------------ cube, DEM


NATIVE_4326 = GeoBox((240, 330), Affine(1 / 3600, 0, -9.02, 0, -1 / 3600, 30.02), "EPSG:4326")
#: Overlaps NATIVE_4326 but for its top rows and last ~30 columns (rows inside, rows meeting its edges).
OUT_UTM = GeoBox((600, 700), Affine(10.0, 0, 500210.0, 0, -10.0, 3321020.0), "EPSG:32629")


@settings(max_examples=40, deadline=None)
@given(
    r0=st.integers(0, 560), c0=st.integers(0, 660), h=st.integers(1, 120), w=st.integers(1, 120),
    nan_p=st.sampled_from([0.0, 0.02]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_dem_resampling_by_lattice_bands_is_one_map_coordinates_call(r0, c0, h, w, nan_p, seed):
    """Band by band (coordinates in the caches) gives what one call on the whole window gives, bit for bit."""
    rng = np.random.default_rng(seed)
    native = (rng.random(NATIVE_4326.shape) * 3000).astype(np.float32)
    native[rng.random(native.shape) < nan_p] = np.nan
    rows, cols = (r0, min(r0 + h, 600)), (c0, min(c0 + w, 700))
    coords = lattice_coordinates(NATIVE_4326, OUT_UTM, rows, cols, shift=0.5)
    expected = ndimage.map_coordinates(native, coords, order=1, mode="constant", cval=np.nan)
    expected = expected.astype(np.float32)
    got = resample_block(native, NATIVE_4326, OUT_UTM, rows, cols)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
