"""Block kernels of the cube against plain reference arithmetic (upsampling, median, DEM sampling).

Each kernel is a faster arrangement of a simple formula; these tests state the formula directly,
pixel by pixel, and require the kernel to give the same numbers.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
    seed=st.integers(0, 2**16),
)
def test_bilinear_upsampling_is_the_exact_integer_rule(k, src_shape, shift, out_shape, nodata, extreme, seed):
    """Every pixel, no-data holes and edges included, is the exact rounded bilinear value."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 65536, src_shape).astype(np.uint16)
    if extreme is not None:
        src[rng.random(src_shape) < 0.5] = extreme
    src[rng.random(src_shape) < nodata] = 0
    got = np.zeros(out_shape, dtype=np.uint16)
    rt = axis_taps(0, out_shape[0], shift[0], k, src_shape[0])
    ct = axis_taps(0, out_shape[1], shift[1], k, src_shape[1])
    if rt is not None and ct is not None:
        window = src[rt.start : rt.stop, ct.start : ct.stop]
        upsample_bilinear(window, rt, ct, shift[0], shift[1], k, out=got[rt.lo : rt.hi, ct.lo : ct.hi])
    assert np.array_equal(got, _bilinear_reference(src, k, shift, out_shape))
