"""Compiled per-pixel loops (numba) for the cube's work that numpy can only do in many passes.

* **Resampling at lattice coordinates.** Two kinds of resampling read a source raster at
  coordinates interpolated from an :class:`~pipeline.cube.lattice.AnchoredLattice` (a coarse
  lattice of exactly transformed nodes): the reprojection of Sentinel-2 assets in another UTM
  zone (:func:`reproject_bilinear`, :func:`reproject_nearest`: GDAL's 4-sample bilinear or
  nearest rules on uint16, for :mod:`pipeline.cube.reproject`) and the DEM in EPSG:4326
  (:func:`sample_bilinear`: ``scipy.ndimage.map_coordinates(order=1, mode="constant")``'s rule,
  for :mod:`pipeline.cube.dem`). In numpy each needed a dozen full-size float64 temporaries per
  pixel (coordinates, floors, weights, flat indices, a sparse matrix); here a row's coordinates
  and taps are computed from its nodes in one vectorised loop, then each pixel's value from its
  four taps.
* **Upsampling** 20 m / 60 m bands on the output lattice (:func:`upsample_bilinear`, for
  :mod:`pipeline.cube.upsample`): one pass along each source row's columns, one along the rows,
  GDAL's no-data rule only between a row's first and last no-data pixel (a swath edge).
* **Fusing a day's items** (:func:`empty_bounds`, :func:`fill_empty`), **masking** the layers
  where a block is not valid (:func:`nan_where_invalid`), **one observation's composite**
  (:func:`cast_scaled`: harmonise, scale, mask), the **multi-date median** (:func:`median_rows`,
  for :mod:`pipeline.cube.median`) and the slope's **gradient magnitude** (:func:`hypot32`, ~10x
  numpy's ``hypot`` on float32, the same values).

Every floating-point operation is the one the numpy or scipy code it replaced performs, in the
same order (numba does not contract ``a * b + c`` into a fused multiply-add without
``fastmath``), so the results are bit for bit theirs: tested here against
:meth:`AnchoredLattice.strip`, GDAL's warp, ``map_coordinates``, the exact integer upsampling
rule and bottleneck's ``nanmedian`` (``tests/cube/test_kernels_compiled.py``,
``tests/cube/test_reproject.py``, ``tests/test_cube_kernels.py``), and on the bench scenes'
whole cubes against the numpy code (``python -m bench.cube_snapshot``).

The functions are compiled on first use and cached on disk beside this module (``cache=True``),
so a Dask worker loads them in milliseconds; they release the GIL (``nogil``), so a worker's
threads run them side by side. The price is LLVM in every process that builds a cube: ~280 MB
of resident memory (mostly the pages of ``libllvmlite.so``, measured with psutil on the first
call), which the sweep's memory figures include.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

#: GDAL's nudge before taking the source pixel that holds a centre.
SNAP = 1e-10
#: GDAL's smallest sum of valid bilinear weights that still writes a pixel.
MIN_WEIGHT = 1e-5


@contextmanager
def contiguous(a: np.ndarray, *, keep: bool = True) -> Iterator[np.ndarray]:
    """``a`` itself when C-contiguous, else a C-contiguous copy that is written back into ``a`` after.

    numba compiles a loop over an array it cannot prove contiguous (a block's sub-box: rows with
    gaps between them, layout ``"A"``; or a Fortran-ordered one) without vector instructions:
    ``python -m bench.kernel_time`` re-times the PC-shaped scene's calls in those layouts (the
    reprojection, the DEM's sample and the upsampling ran 1.4x to 2.4x slower); copying a box in
    and out costs a fraction of that. ``keep=False``: the copy starts empty (the loop writes
    every pixel). Nothing is written back when the block raises.
    """
    if a.flags.c_contiguous:
        yield a
        return
    work = np.ascontiguousarray(a) if keep else np.empty(a.shape, a.dtype)
    yield work
    a[...] = work


@numba.njit(cache=True, nogil=True, inline="always")
def _coord(across: np.ndarray, lr: int, f0: float, f1: float, j: int) -> float:  # pragma: no cover
    """A pixel's coordinate from the node rows above and below it (``AnchoredLattice.fill``'s order)."""
    return across[lr, j] * f0 + across[lr + 1, j] * f1


@numba.njit(cache=True, nogil=True)
def reproject_bilinear(
    across_r: np.ndarray, across_c: np.ndarray, left_r: np.ndarray, fr0: np.ndarray, fr1: np.ndarray,
    r0: int, r1: int, c0: int, c1: int, window: np.ndarray, win_r0: int, win_c0: int, height: int,
    width: int, out: np.ndarray,
) -> int:  # pragma: no cover  # fmt: skip
    """GDAL's 4-sample bilinear warp of ``window`` into ``out`` at lattice rows/cols ``[r0, r1) x [c0, c1)``.

    Args:
        across_r: Source rows of the node rows at every output column (``AnchoredLattice.across[0]``).
        across_c: Source columns likewise (``across[1]``).
        left_r: Per output row, its node row (``AnchoredLattice.left_r``).
        fr0: Per output row, the weight of the node row above (``fr0.ravel()``).
        fr1: Per output row, the weight of the node row below.
        r0: First local row to compute.
        r1: One past the last.
        c0: First local column.
        c1: One past the last.
        window: Source pixels (uint16, 0 no data) from row ``win_r0`` and column ``win_c0`` of
            the source raster; it holds every tap inside the raster (taps past the raster's edge
            take the edge pixel, which is GDAL's drop-and-renormalise for a product of weights).
        win_r0: Source row of ``window[0]``.
        win_c0: Source column of ``window[:, 0]``.
        height: Source raster rows.
        width: Source raster columns.
        out: uint16 destination of the window (C-contiguous, so the loops vectorise: see
            :func:`contiguous`): its pixels ``[r0, r1) x [c0, c1)`` holding 0 (no data: what
            earlier items of the day left empty) are computed, the others kept; a pixel GDAL does
            not write keeps its value.

    Returns:
        Pixels written, or -1 when a tap falls outside ``window`` (nothing past it is read).
    """
    wh, ww = window.shape
    has_zero = False  # GDAL's renormalisation runs only where some tap is no data; this mirrors
    for a in range(wh):  # the window-wide switch of the numpy code it replaces (bit for bit)
        row, zero = window[a], np.uint8(0)
        for b in range(ww):  # branch-free: vectorised
            zero |= np.uint8(row[b] == 0)
        if zero:
            has_zero = True
            break
    written = 0
    n = c1 - c0
    flat = window.ravel()
    row_r, row_c = np.empty(n), np.empty(n)  # a row's coordinates and taps, computed in a loop
    tap_r, tap_c = np.empty(n, np.int64), np.empty(n, np.int64)  # the compiler vectorises
    at = np.empty(n, np.int64)  # a branch-free row's flat window offsets and its four taps' values
    taps = np.empty((4, n), np.uint16)
    g0, g1, g2, g3 = taps[0], taps[1], taps[2], taps[3]
    for i in range(r1 - r0):
        li = r0 + i
        lr, f0, f1 = left_r[li], fr0[li], fr1[li]
        ar0, ar1 = across_r[lr, c0:c1], across_r[lr + 1, c0:c1]
        ac0, ac1 = across_c[lr, c0:c1], across_c[lr + 1, c0:c1]
        for j in range(n):
            row_r[j] = ar0[j] * f0 + ar1[j] * f1  # AnchoredLattice.fill's order
            row_c[j] = ac0[j] * f0 + ac1[j] * f1
            tap_r[j] = math.floor(row_r[j] - 0.5)
            tap_c[j] = math.floor(row_c[j] - 0.5)
        dst = out[li, c0:c1]
        lo_y, hi_y, lo_x, hi_x = tap_r[0], tap_r[0], tap_c[0], tap_c[0]
        for j in range(n):
            lo_y, hi_y = min(lo_y, tap_r[j]), max(hi_y, tap_r[j])
            lo_x, hi_x = min(lo_x, tap_c[j]), max(hi_x, tap_c[j])
        if (
            not has_zero and lo_y >= 0 and lo_x >= 0 and hi_y <= height - 2 and hi_x <= width - 2
            and lo_y >= win_r0 and hi_y + 1 < win_r0 + wh and lo_x >= win_c0 and hi_x + 1 < win_c0 + ww
        ):  # fmt: skip
            # The whole row's taps lie inside the raster and the window, with no data nowhere: no
            # pixel is skipped or clamped, so the same arithmetic runs without a branch, in three
            # loops: offsets (vectorised), the taps' values (a scalar gather: uint16 has no vector
            # gather), the weights and sum (vectorised). One loop doing all three ran scalar,
            # ~1.5x slower (a hand measurement on the bench's captured calls).
            for j in range(n):
                at[j] = (tap_r[j] - win_r0) * ww + (tap_c[j] - win_c0)
            for j in range(n):
                a = at[j]
                g0[j], g1[j], g2[j], g3[j] = flat[a], flat[a + 1], flat[a + ww], flat[a + ww + 1]
            for j in range(n):
                iy, ix = tap_r[j], tap_c[j]
                ry, rx = 1.5 - (row_r[j] - iy), 1.5 - (row_c[j] - ix)
                qy, qx = 1.0 - ry, 1.0 - rx
                num = (rx * ry) * float(g0[j])
                num += (qx * ry) * float(g1[j])
                num += (rx * qy) * float(g2[j])
                num += (qx * qy) * float(g3[j])
                ok = dst[j] == 0
                dst[j] = np.uint16(int(num + 0.5)) if ok else dst[j]
                written += 1 if ok else 0
            continue
        for j in range(n):
            if dst[j] != 0:
                continue
            sr, sc = row_r[j], row_c[j]
            if not (sr >= 0 and sc >= 0):
                continue
            ir, ic = int(sr + SNAP), int(sc + SNAP)  # floor: both are >= 0
            if ir >= height or ic >= width:
                continue
            iy, ix = tap_r[j], tap_c[j]
            ry, rx = 1.5 - (sr - iy), 1.5 - (sc - ix)
            qy, qx = 1.0 - ry, 1.0 - rx
            ya = max(iy, 0) - win_r0
            yb = min(iy + 1, height - 1) - win_r0
            xa = max(ix, 0) - win_c0
            xb = min(ix + 1, width - 1) - win_c0
            if ya < 0 or yb >= wh or xa < 0 or xb >= ww:
                return -1  # a tap outside the window read: the caller's window is wrong
            v0, v1, v2, v3 = window[ya, xa], window[ya, xb], window[yb, xa], window[yb, xb]
            w0, w1, w2, w3 = rx * ry, qx * ry, rx * qy, qx * qy  # GDAL's order: UL, UR, LL, LR
            num = 0.0
            num += w0 * float(v0)
            num += w1 * float(v1)
            num += w2 * float(v2)
            num += w3 * float(v3)
            if has_zero:
                if window[ir - win_r0, ic - win_c0] == 0:
                    continue  # the source pixel under the centre is no data
                den = 0.0
                den += w0 * (1.0 if v0 != 0 else 0.0)
                den += w1 * (1.0 if v1 != 0 else 0.0)
                den += w2 * (1.0 if v2 != 0 else 0.0)
                den += w3 * (1.0 if v3 != 0 else 0.0)
                if not den >= MIN_WEIGHT:
                    continue
                num /= den
            dst[j] = np.uint16(int(num + 0.5))  # num >= 0
            written += 1
    return written


@numba.njit(cache=True, nogil=True)
def reproject_nearest(
    across_r: np.ndarray, across_c: np.ndarray, left_r: np.ndarray, fr0: np.ndarray, fr1: np.ndarray,
    r0: int, r1: int, c0: int, c1: int, window: np.ndarray, win_r0: int, win_c0: int, height: int,
    width: int, out: np.ndarray,
) -> int:  # pragma: no cover  # fmt: skip
    """GDAL's nearest-neighbour warp (the source pixel holding the centre, unless no data).

    Arguments and result as :func:`reproject_bilinear`.
    """
    written = 0
    for i in range(r1 - r0):
        li = r0 + i
        lr, f0, f1 = left_r[li], fr0[li], fr1[li]
        for j in range(c1 - c0):
            if out[li, c0 + j] != 0:
                continue
            sr = _coord(across_r, lr, f0, f1, c0 + j)
            sc = _coord(across_c, lr, f0, f1, c0 + j)
            ir, ic = math.floor(sr + SNAP), math.floor(sc + SNAP)
            if not (sr >= 0 and sc >= 0 and ir < height and ic < width):
                continue
            y, x = int(ir) - win_r0, int(ic) - win_c0
            if y < 0 or y >= window.shape[0] or x < 0 or x >= window.shape[1]:
                return -1  # outside the window read: the caller's window is wrong
            if window[y, x] != 0:  # no data is not written (GDAL's nodata rule)
                out[li, c0 + j] = window[y, x]
                written += 1
    return written


@numba.njit(cache=True, nogil=True)
def sample_bilinear(
    native: np.ndarray, across_r: np.ndarray, across_c: np.ndarray, left_r: np.ndarray, fr0: np.ndarray,
    fr1: np.ndarray, out: np.ndarray,
) -> None:  # pragma: no cover  # fmt: skip
    """``scipy.ndimage.map_coordinates(native, coords, order=1, mode="constant", cval=nan)`` into ``out``.

    ``coords`` are the lattice's (pixel-centre units: the lattice made with ``shift=0.5``) at every
    pixel of ``out``. scipy's rules: a coordinate outside ``[0, n - 1]`` on either axis gives NaN;
    otherwise the taps are ``floor(x)`` and the next (the next is the edge pixel again at
    ``x = n - 1``), weights ``1 - t`` and ``t``, summed over the taps with the column fastest,
    each term the value times the row weight times the column weight; a NaN tap (whatever its
    weight) gives NaN. Computed in float64, stored as ``out``'s dtype.
    """
    h, w = native.shape
    n = out.shape[1]
    top, right = float(h - 1), float(w - 1)
    ys, xs = np.empty(n), np.empty(n)  # a row's coordinates (vectorised loops, as reproject_bilinear)
    iy, ix, at = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    taps = np.empty((4, n), native.dtype)
    g0, g1, g2, g3 = taps[0], taps[1], taps[2], taps[3]
    flat = native.ravel()
    for i in range(out.shape[0]):
        lr, f0, f1 = left_r[i], fr0[i], fr1[i]
        ar0, ar1, ac0, ac1 = across_r[lr], across_r[lr + 1], across_c[lr], across_c[lr + 1]
        inside = 0
        for j in range(n):
            ys[j] = ar0[j] * f0 + ar1[j] * f1  # _coord's order
            xs[j] = ac0[j] * f0 + ac1[j] * f1
            inside += (ys[j] >= 0.0) & (ys[j] < top) & (xs[j] >= 0.0) & (xs[j] < right)  # NaN: not
        dst = out[i]
        if inside == n:
            # Every pixel of the row has both taps inside on each axis: no NaN from the bounds, no
            # edge clamp, so the same arithmetic runs in branch-free loops (the values' gather
            # scalar, the rest vectorised).
            for j in range(n):
                iy[j], ix[j] = math.floor(ys[j]), math.floor(xs[j])
                at[j] = iy[j] * w + ix[j]
            for j in range(n):
                a = at[j]
                g0[j], g1[j], g2[j], g3[j] = flat[a], flat[a + 1], flat[a + w], flat[a + w + 1]
            for j in range(n):
                ty, tx = ys[j] - iy[j], xs[j] - ix[j]
                wy0, wy1, wx0, wx1 = 1.0 - ty, ty, 1.0 - tx, tx
                t = 0.0
                t += float(g0[j]) * wy0 * wx0
                t += float(g1[j]) * wy0 * wx1
                t += float(g2[j]) * wy1 * wx0
                t += float(g3[j]) * wy1 * wx1
                dst[j] = t
            continue
        for j in range(n):
            y, x = ys[j], xs[j]
            if not (y >= 0.0 and y <= top and x >= 0.0 and x <= right):
                dst[j] = np.nan
                continue
            ya, xa = math.floor(y), math.floor(x)
            ty, tx = y - ya, x - xa
            iya, ixa = int(ya), int(xa)
            iyb, ixb = min(iya + 1, h - 1), min(ixa + 1, w - 1)
            wy0, wy1, wx0, wx1 = 1.0 - ty, ty, 1.0 - tx, tx
            t = 0.0
            t += float(native[iya, ixa]) * wy0 * wx0
            t += float(native[iya, ixb]) * wy0 * wx1
            t += float(native[iyb, ixa]) * wy1 * wx0
            t += float(native[iyb, ixb]) * wy1 * wx1
            dst[j] = t


@numba.njit(cache=True, nogil=True)
def upsample_bilinear(
    window: np.ndarray, lo_r: int, hi_r: int, start_r: int, stop_r: int, shift_r: int, lo_c: int,
    hi_c: int, start_c: int, stop_c: int, shift_c: int, k: int, out: np.ndarray,
) -> None:  # pragma: no cover  # fmt: skip
    """GDAL's bilinear upsampling by a whole factor ``k``, exactly (see :mod:`pipeline.cube.upsample`).

    Output pixel ``o`` along an axis has taps ``floor(s - 1/2)`` and the next, ``s = (o + shift +
    1/2) / k``, with integer weights ``2k - r`` and ``r`` (``r = (2 (o + shift) + 1 - k) mod 2k``);
    taps outside ``[start, stop)`` take the edge pixel. Where the four taps with a non-zero
    weight are valid (DN != 0) the value is ``floor(num / (2k)^2 + 1/2)``, computed separably
    (columns, then rows) in int32 and scaled in float32 as the numpy passes did (an integer below
    2^24 times the rounded ``1 / (2k)^2`` truncates to the exact quotient); elsewhere
    ``(2 num + den) // (2 den)`` over the valid taps; 0 where the source pixel under the centre
    is no data. That exact rule runs only on the output columns whose taps meet the span between
    the first and the last no-data pixel of their source rows (at a swath's edge, a fraction of
    the row).

    Args:
        window: Source pixels ``[start_r, stop_r) x [start_c, stop_c)`` (uint16, 0 no data).
        lo_r: First output row (its centre on the source), as ``AxisTaps.lo``.
        hi_r: One past the last.
        start_r: Source row of ``window[0]``.
        stop_r: One past the window's last source row.
        shift_r: Output rows between the source's top edge and the grid's.
        lo_c: First output column.
        hi_c: One past the last.
        start_c: Source column of ``window[:, 0]``.
        stop_c: One past the window's last source column.
        shift_c: Output columns between the source's left edge and the grid's.
        k: Size ratio (1 to 8).
        out: ``(hi_r - lo_r, hi_c - lo_c)`` uint16 destination.
    """
    k2 = 2 * k
    nr, nc = hi_r - lo_r, hi_c - lo_c
    wh = window.shape[0]
    ca = np.empty(nc, np.int64)
    cb = np.empty(nc, np.int64)
    wc0 = np.empty(nc, np.int32)
    wc1 = np.empty(nc, np.int32)
    cc = np.empty(nc, np.int64)
    for j in range(nc):
        o = lo_c + j + shift_c
        t = 2 * o + 1 - k
        i0, r = t // k2, t % k2
        ca[j] = min(max(i0, start_c), stop_c - 1) - start_c
        cb[j] = min(max(i0 + 1, start_c), stop_c - 1) - start_c
        wc0[j], wc1[j] = k2 - r, r
        cc[j] = o // k - start_c
    # A column's lowest and highest source column (tap or centre): both non-decreasing in j.
    lo_tap = np.minimum(np.minimum(ca, cb), cc)
    hi_tap = np.maximum(np.maximum(ca, cb), cc)
    # Column pass over every window row, and each row's span of no data [zlo, zhi] (empty: zlo > zhi).
    ww = window.shape[1]
    cols = np.empty((wh, nc), np.int32)
    ga, gb = np.empty(nc, np.uint16), np.empty(nc, np.uint16)
    zlo = np.full(wh, ww, np.int64)
    zhi = np.full(wh, -1, np.int64)
    for a in range(wh):
        src = window[a]
        dst = cols[a]
        for j in range(nc):  # the taps' values (a scalar gather), then the sums (vectorised)
            ga[j], gb[j] = src[ca[j]], src[cb[j]]
        for j in range(nc):
            dst[j] = wc0[j] * np.int32(ga[j]) + wc1[j] * np.int32(gb[j])
        for b in range(ww):
            if src[b] == 0:
                zlo[a] = b
                break
        if zlo[a] < ww:
            for b in range(ww - 1, -1, -1):
                if src[b] == 0:
                    zhi[a] = b
                    break
    inv = np.float32(1.0 / (k2 * k2))
    half = np.int32(2 * k * k)
    for i in range(nr):
        o = lo_r + i + shift_r
        t = 2 * o + 1 - k
        i0, r = t // k2, t % k2
        ya = min(max(i0, start_r), stop_r - 1) - start_r
        yb = min(max(i0 + 1, start_r), stop_r - 1) - start_r
        wy0, wy1 = np.int32(k2 - r), np.int32(r)
        ca_row, cb_row = cols[ya], cols[yb]
        dst = out[i]
        for j in range(nc):
            dst[j] = np.uint16(np.float32(wy0 * ca_row[j] + wy1 * cb_row[j] + half) * inv)
        cy = o // k - start_r
        z0 = min(zlo[ya], zlo[yb], zlo[cy])
        z1 = max(zhi[ya], zhi[yb], zhi[cy])
        if z0 > z1:
            continue  # no tap of this row is no data
        # Rows with no data: the exact rule on the columns whose taps or centre meet [z0, z1].
        j0 = np.searchsorted(hi_tap, z0, side="left")
        j1 = np.searchsorted(lo_tap, z1, side="right")
        ra, rb = window[ya], window[yb]
        for j in range(j0, j1):
            if window[cy, cc[j]] == 0:
                dst[j] = 0
                continue
            v00, v01, v10, v11 = ra[ca[j]], ra[cb[j]], rb[ca[j]], rb[cb[j]]
            if v00 != 0 and v01 != 0 and v10 != 0 and v11 != 0:
                continue
            num = np.int64(0)
            den = np.int64(0)
            for v, w in ((v00, wy0 * wc0[j]), (v01, wy0 * wc1[j]), (v10, wy1 * wc0[j]), (v11, wy1 * wc1[j])):
                if v != 0:
                    num += np.int64(w) * np.int64(v)
                    den += np.int64(w)
            dst[j] = np.uint16((2 * num + den) // (2 * den))


@numba.njit(cache=True, nogil=True)
def empty_bounds(block: np.ndarray) -> tuple[int, int, int, int]:  # pragma: no cover
    """``(row0, row1, col0, col1)`` bounding the zeros (no data) of a 2-D block; ``(0, 0, 0, 0)`` if none.

    Branch-free loops (an OR per row and per column) that the compiler vectorises.
    """
    h, w = block.shape
    cols = np.zeros(w, np.uint8)
    r0, r1 = h, 0
    for i in range(h):
        row = block[i]
        any_zero = np.uint8(0)
        for j in range(w):
            z = np.uint8(row[j] == 0)
            any_zero |= z
            cols[j] |= z
        if any_zero:
            r0, r1 = min(r0, i), i + 1
    if r1 == 0:
        return 0, 0, 0, 0
    c0, c1 = 0, w
    while cols[c0] == 0:
        c0 += 1
    while cols[c1 - 1] == 0:
        c1 -= 1
    return r0, r1, c0, c1


@numba.njit(cache=True, nogil=True)
def fill_empty(dst: np.ndarray, src: np.ndarray) -> None:  # pragma: no cover
    """``dst`` takes ``src``'s value where it holds no data (0): the first valid item of a day wins."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            if dst[i, j] == 0:
                dst[i, j] = src[i, j]


@numba.njit(cache=True, nogil=True)
def nan_where_invalid(layers: np.ndarray, valid: np.ndarray) -> None:  # pragma: no cover
    """Set every layer of ``layers`` ``(n, h, w)`` to NaN where ``valid`` ``(h, w)`` is False.

    Per row only the span between its first and last invalid pixel is visited (a no-data swath
    edge or a cloud is a small part of most rows), so a mostly valid block costs one pass over
    ``valid``.
    """
    n, h, w = layers.shape
    nan = np.float32(np.nan)
    for i in range(h):
        row = valid[i]
        a = 0
        while a < w and row[a]:
            a += 1
        if a == w:
            continue
        b = w
        while row[b - 1]:
            b -= 1
        for k in range(n):
            dst = layers[k, i]
            for j in range(a, b):
                if not row[j]:
                    dst[j] = nan


@numba.njit(cache=True, nogil=True)
def hypot32(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``np.hypot`` of two C-contiguous float32 arrays into ``out`` (which may be ``a``), ~10x faster.

    The squares of float32 values are exact in float64 and their sum is rounded once, so
    ``float32(sqrt(a**2 + b**2))`` in float64 is libm's ``hypotf`` (the same computation; equal
    bit for bit on 120 million random pairs over 60 orders of magnitude), with IEEE's rule that
    an infinite side wins over NaN.
    """
    fa, fb, fo = a.ravel(), b.ravel(), out.ravel()
    for i in range(fa.size):
        x, y = np.float64(fa[i]), np.float64(fb[i])
        if math.isinf(x) or math.isinf(y):
            fo[i] = np.float32(np.inf)
        else:
            fo[i] = np.float32(math.sqrt(x * x + y * y))


@numba.njit(cache=True, nogil=True)
def cast_scaled(
    dn: np.ndarray, clear: np.ndarray, offset: np.uint16, divisor: np.float32, out: np.ndarray,
    valid: np.ndarray, track_valid: bool, nan: bool,
) -> None:  # pragma: no cover  # fmt: skip
    """One observation's composite in one pass: ``out = float32(max(dn, offset) - offset) / divisor``.

    The numpy passes it replaces, bit for bit (the harmonised DN is exact in uint16 and in
    float32, the division is one float32 division): NaN where the observation does not qualify
    (DN 0 or not ``clear``) when ``nan``; ``valid`` ANDed with where it does when ``track_valid``.

    Args:
        dn: ``(h, w)`` uint16 digital numbers.
        clear: ``(h, w)`` bool clear mask.
        offset: The slice's DN offset.
        divisor: The L4S divisor (float32).
        out: ``(h, w)`` float32 destination.
        valid: ``(h, w)`` bool, updated when ``track_valid``.
        track_valid: AND ``valid`` with "the observation qualifies".
        nan: Write NaN where it does not.
    """
    h, w = dn.shape
    nan32 = np.float32(np.nan)
    for i in range(h):
        src, ok, dst = dn[i], clear[i], out[i]
        for j in range(w):
            v = src[j]
            r = np.float32(max(v, offset) - offset) / divisor
            qualifies = v != 0 and ok[j]
            dst[j] = nan32 if (nan and not qualifies) else r
        if track_valid:
            row = valid[i]
            for j in range(w):
                row[j] = row[j] and src[j] != 0 and ok[j]


@numba.njit(cache=True, nogil=True)
def median_rows(
    dn: np.ndarray, clear: np.ndarray, offsets: np.ndarray, ops: np.ndarray, out: np.ndarray,
    scale: np.float32, valid: np.ndarray, track_valid: bool, nan: bool,
) -> None:  # pragma: no cover  # fmt: skip
    """The multi-date median of :func:`pipeline.cube.median.median_block`, a row at a time.

    Per row, in uint16 on ``T`` row buffers that stay in the L1 cache: an observation that does
    not qualify (not ``clear``, or DN 0) becomes 0xFFFF by an OR, so it sorts after every
    harmonised DN ``max(dn, o) - o``; the pruned sorting network ``ops`` (rows ``(i, j,
    keep_min, keep_max)``, :func:`pipeline.cube.median.median_network`) orders the ranks the
    median reads; with ``c`` qualifying observations the median is ``(s[(c - 1) // 2] + s[c //
    2]) / 2``, written as ``(float32(lo) + float32(hi)) / scale`` (``scale = 2 * divisor``);
    ``c = 0`` gives NaN when ``nan`` (else the finite ``2 * 65535 / scale``, for a caller who
    masks it) and clears ``valid`` when ``track_valid``.

    Args:
        dn: ``(T, h, w)`` uint16 digital numbers.
        clear: ``(T, h, w)`` bool clear mask.
        offsets: ``(T,)`` uint16 DN offsets.
        ops: ``(n, 4)`` int64 compare-exchanges.
        out: ``(h, w)`` float32 destination.
        scale: ``2 * divisor`` in float32.
        valid: ``(h, w)`` bool, ANDed with "some observation qualifies" when ``track_valid``.
        track_valid: Whether to update ``valid``.
        nan: Whether to write NaN where no observation qualifies.
    """
    t, h, w = dn.shape
    vals = np.empty((t, w), np.uint16)
    count = np.empty(w, np.uint16)
    lo = np.empty(w, np.uint16)
    hi = np.empty(w, np.uint16)
    full = np.uint16(0xFFFF)
    one = np.uint16(1)
    nan32 = np.float32(np.nan)
    for i in range(h):
        count[:] = 0
        for s in range(t):
            o = np.uint16(offsets[s])
            d_row, c_row, v = dn[s, i], clear[s, i], vals[s]
            for j in range(w):
                d = d_row[j]
                miss = np.uint16((d == 0) | (not c_row[j])) * full  # 0xFFFF: does not qualify
                v[j] = (max(d, o) - o) | miss
                count[j] += one + miss  # + 1, or + 0 (wraps)
        for k in range(ops.shape[0]):
            va, vb = vals[ops[k, 0]], vals[ops[k, 1]]
            if ops[k, 2] and ops[k, 3]:
                for j in range(w):
                    x, y = va[j], vb[j]
                    va[j], vb[j] = min(x, y), max(x, y)
            elif ops[k, 2]:
                for j in range(w):
                    va[j] = min(va[j], vb[j])
            else:
                for j in range(w):
                    vb[j] = max(va[j], vb[j])
        # s[(c - 1) // 2] is s[k] for the largest k with c >= 2k + 1, s[c // 2] the largest with
        # c >= 2k; the ranks rise with k, so each is a running maximum of s[k] AND [c >= bound]
        # (branch-free, so the loops vectorise; c = 0 leaves s[0] in both).
        lo[:] = vals[0]
        hi[:] = vals[0]
        for k in range(1, t // 2 + 1):
            vk = vals[k]
            for j in range(w):
                c = count[j]
                lo[j] = max(lo[j], vk[j] & (np.uint16(c >= 2 * k + 1) * full))
                hi[j] = max(hi[j], vk[j] & (np.uint16(c >= 2 * k) * full))
        dst = out[i]
        for j in range(w):
            none = count[j] == 0
            r = (np.float32(lo[j]) + np.float32(hi[j])) / scale
            dst[j] = nan32 if (none and nan) else r
        if track_valid:
            row = valid[i]
            for j in range(w):
                row[j] = row[j] and count[j] != 0


def warm() -> None:
    """Load the loops a cube uses on every path now (LLVM starts, ~0.3 s; the code from the disk cache).

    A worker calls it when it starts (with its model, :class:`pipeline.predict.ModelPlugin`), so
    the sweep's first block does not pay for it.
    """
    layers = np.zeros((1, 2, 2), np.float32)
    nan_where_invalid(layers, np.ones((2, 2), np.bool_))
    hypot32(layers[0], layers[0], layers[0])
    cast_scaled(np.ones((2, 2), np.uint16), np.ones((2, 2), np.bool_), np.uint16(0), np.float32(2.0),
                layers[0], np.ones((2, 2), np.bool_), True, True)  # fmt: skip
    dn = np.ones((2, 2, 2), np.uint16)
    ops = np.array([[0, 1, 1, 1]], np.int64)
    median_rows(dn, np.ones((2, 2, 2), np.bool_), np.zeros(2, np.uint16), ops, layers[0],
                np.float32(2.0), np.ones((2, 2), np.bool_), True, True)  # fmt: skip
    upsample_bilinear(dn[0], 0, 2, 0, 2, 0, 0, 2, 0, 2, 0, 1, np.empty((2, 2), np.uint16))
