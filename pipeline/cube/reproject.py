"""Exact, block-independent reprojection of a source raster onto the output grid (numpy, pyproj).

The Sentinel-2 tile of the next UTM zone (and any asset off the output's lattice) is resampled
here instead of by GDAL's warper, with GDAL's own per-pixel rules, in three steps:

1. **coordinates** (:func:`source_pixels`): the centres of lattice nodes every
   :data:`LATTICE_STEP` output pixels, anchored to the output CRS's own pixel lattice (node
   ``n`` where the CRS pixel index ``n + anchor`` is a multiple of the step, whatever the block
   or the region's grid), are transformed exactly with pyproj; every output pixel's source
   coordinates are interpolated bilinearly between its four nodes. A pixel's coordinates depend
   only on its nodes, so on neither the block nor the grid that asks for it. Bilinear
   interpolation of a smooth projection over ``s`` output pixels errs by about ``s**2 / 8`` times
   its second derivative: between two UTM zones at 10 m, a few 1e-6 source pixel at ``s = 16``
   (``tests/cube/test_reproject.py`` asserts <= :data:`LATTICE_ERROR_PX`). GDAL's approximate
   transformer (odc-stac's reads, 0.125 px allowed) interpolates along whole rows: 0.004 px over
   a 512-px row here;
2. **taps and weights** (:func:`plan_taps`), once per source grid and set of output pixels and
   shared by every band on that grid (4 bands at 10 m, 6 at 20 m, 2 at 60 m per item): GDAL's
   ``GWKBilinearResample4Sample`` and the general warp kernel's checks, as
   :mod:`pipeline.cube.upsample` lists them: an output pixel whose centre falls outside the
   source raster is not written (GDAL: ``x < 0`` or ``floor(x + 1e-10) >= width``); its four taps
   are source pixels ``floor(x - 0.5)`` and the next, weights ``r = 1.5 - (x - floor(x - 0.5))`` and
   ``1 - r`` per axis, multiplied; taps outside the raster are dropped. Nearest: the source
   pixel containing the centre (``floor(x + 1e-10)``). The weights go into a CSR matrix, 4
   entries per output pixel in GDAL's order (upper left, upper right, lower left, lower right);
3. **resampling** (:func:`resample`), per band: one sparse product with the source window
   (``scipy``'s compiled loop sums in GDAL's order), and with no-data (0) in the window a
   second one with the validity mask: no-data taps are dropped and the others renormalised,
   ``value = sum(w v valid) / sum(w valid)``, nothing written where that sum is below 1e-5 or
   where the source pixel under the centre is no data; rounded half up to uint16.

This is GDAL's warp with an exact transformer and its 4-sample bilinear kernel, equal pixel for
pixel in the tests. GDAL itself switches to a wider kernel when the source window's bounding
box is over 5 % larger than the destination's (``dfXScale < 0.95``; a 10 m tile of the next
zone, rotated by 4 degrees, is), a property of the window rather than of the pixel, so odc-stac's
reads of those tiles are smoother (the tests bound the difference). Shrinking (a source finer
than the output beyond :data:`MIN_SCALE`: GDAL's wider kernel and odc-stac's overviews) and
rotated output grids are left to GDAL (:func:`supported`).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.sparse
from affine import Affine
from odc.geo.geobox import GeoBox

from pipeline.cube.items import transformer

#: Output pixels between lattice nodes whose centres are transformed exactly.
LATTICE_STEP: Final[int] = 16
#: Largest error (source pixels) of the lattice's coordinates against the exact transform that the
#: tests accept (measured below 1e-5 between UTM zones at 10 m).
LATTICE_ERROR_PX: Final[float] = 1e-3
#: Smallest output-pixels-per-source-pixel ratio resampled here (GDAL's 4-sample bilinear bound).
MIN_SCALE: Final[float] = 0.95
#: GDAL's nudge before taking the source pixel that holds a centre.
SNAP: Final[float] = 1e-10
#: GDAL's smallest sum of valid bilinear weights that still writes a pixel.
MIN_WEIGHT: Final[float] = 1e-5
#: Tap plans kept per thread (one block's bands: 10, 20 and 60 m grids, SCL's halo, a few days).
CACHE_SIZE: Final[int] = 8


@dataclass(frozen=True)
class SourceGrid:
    """A source raster's grid.

    Attributes:
        crs: Its CRS as a string pyproj accepts.
        transform: Its affine transform as six numbers.
        shape: ``(rows, cols)``.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]


def axis_lattice(start: int, stop: int, anchor: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes and weights of a 1-D lattice over output indices ``[start, stop)``.

    Nodes lie at local indices ``n`` with ``n + anchor`` a multiple of ``step`` (``anchor`` is the
    CRS's own pixel index of local index 0, so every grid on that pixel lattice shares the nodes).

    Returns:
        ``(nodes, left, frac)``: node indices (local), and per output index the position of the
        node at or before it in ``nodes`` and its fraction of the way to the next one.
    """
    first = (start + anchor) // step
    nodes = np.arange(first, (stop - 1 + anchor) // step + 2) * step - anchor  # one past the last pixel
    idx = np.arange(start, stop) + anchor
    left = idx // step - first
    frac = (idx % step) / step
    return nodes, left, frac


def source_pixels(
    grid: SourceGrid, out_box: GeoBox, rows: tuple[int, int], cols: tuple[int, int], step: int = LATTICE_STEP
) -> tuple[np.ndarray, np.ndarray]:
    """Source ``(row, col)`` of the output pixel centres of a window, via the anchored lattice.

    Args:
        grid: The source grid.
        out_box: The output grid (north-up).
        rows: Output rows ``[start, stop)``.
        cols: Output columns ``[start, stop)``.
        step: Output pixels between lattice nodes.

    Returns:
        float64 ``(h, w)`` arrays of source rows and columns in pixel-edge units (the centre of
        source pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``).
    """
    t = out_box.transform
    assert out_box.crs is not None and t.b == 0 and t.d == 0
    anchor_r, anchor_c = round(t.f / t.e), round(t.c / t.a)
    node_r, left_r, frac_r = axis_lattice(rows[0], rows[1], anchor_r, step)
    node_c, left_c, frac_c = axis_lattice(cols[0], cols[1], anchor_c, step)
    gx, gy = np.meshgrid(t.c + t.a * (node_c + 0.5), t.f + t.e * (node_r + 0.5))
    sx, sy = transformer(str(out_box.crs), grid.crs).transform(gx, gy)
    inv = ~Affine(*grid.transform)
    sx, sy = np.asarray(sx, dtype=np.float64), np.asarray(sy, dtype=np.float64)
    fields = (inv.d * sx + inv.e * sy + inv.f, inv.a * sx + inv.b * sy + inv.c)
    fr0, fr1 = (1.0 - frac_r)[:, None], frac_r[:, None]
    out = []
    for field in fields:  # columns, then rows: the same operations for every pixel
        across = field[:, left_c] * (1.0 - frac_c) + field[:, left_c + 1] * frac_c
        dst = across[left_r] * fr0
        dst += across[left_r + 1] * fr1
        out.append(dst)
    return out[0], out[1]


def supported(grid: SourceGrid, out_box: GeoBox) -> bool:
    """Whether :func:`plan_taps` resamples ``grid`` onto ``out_box`` as GDAL's 4-sample kernel would.

    The output grid must be north-up and the source pixels no smaller than :data:`MIN_SCALE`
    output pixels (singular values of the source-to-output Jacobian at the source's centre): a
    property of the pair of grids, never of a block.
    """
    if out_box.crs is None:
        return False
    return _supported(grid, str(out_box.crs), Affine(*tuple(out_box.transform)[:6]))


@functools.lru_cache(maxsize=256)
def _supported(grid: SourceGrid, out_crs: str, t: Affine) -> bool:
    """:func:`supported` on hashable arguments (remembered: it transforms three points)."""
    if t.b != 0 or t.d != 0 or t.a == 0 or t.e == 0:
        return False
    src = Affine(*grid.transform)
    if src.determinant == 0:
        return False
    h, w = grid.shape
    px = np.array([w / 2, w / 2 + 1, w / 2])
    py = np.array([h / 2, h / 2, h / 2 + 1])
    x, y = src.a * px + src.b * py + src.c, src.d * px + src.e * py + src.f
    ox, oy = transformer(grid.crs, out_crs).transform(x, y)
    ox, oy = np.asarray(ox) / t.a, np.asarray(oy) / t.e
    if not (np.isfinite(ox).all() and np.isfinite(oy).all()):
        return False
    jac = np.array([[ox[1] - ox[0], ox[2] - ox[0]], [oy[1] - oy[0], oy[2] - oy[0]]])
    return bool(np.linalg.svd(jac, compute_uv=False).min() >= MIN_SCALE)


@dataclass(frozen=True, eq=False)
class Taps:
    """Where a set of output pixels reads one source grid, shared by every band on that grid.

    Attributes:
        pixels: Flat indices (row-major in the requested window) of the output pixels whose
            centres lie on the source raster (the only ones that may be written).
        window: Source ``(row0, row1, col0, col1)`` holding every tap (it may pass the raster's
            edge by a pixel: :func:`read_window` pads it with no data).
        centre: Per pixel, the flat index (in the window) of the source pixel holding its centre.
        matrix: Bilinear weights, ``(pixels, window pixels)`` CSR, 4 entries a row; None for
            nearest neighbour.
        weight: Per pixel, the sum of its taps' weights (the denominator when every tap is
            valid); None when the window passes the raster's edge (then the padding is no data).
    """

    pixels: np.ndarray
    window: tuple[int, int, int, int]
    centre: np.ndarray
    matrix: scipy.sparse.csr_matrix | None
    weight: np.ndarray | None


def plan_taps(
    grid: SourceGrid, out_box: GeoBox, rows: tuple[int, int], cols: tuple[int, int],
    needed: np.ndarray | None = None, nearest: bool = False, step: int = LATTICE_STEP,
) -> Taps | None:  # fmt: skip
    """Taps and weights of output ``rows x cols`` (only the ``needed`` pixels) on ``grid``.

    Args:
        grid: The source grid.
        out_box: The output grid (north-up; see :func:`supported`).
        rows: Output rows ``[start, stop)``.
        cols: Output columns ``[start, stop)``.
        needed: Optional boolean ``(h, w)``: the pixels still to fill (the others are skipped).
        nearest: Nearest neighbour (else bilinear).
        step: Lattice step (:func:`source_pixels`).

    Returns:
        The taps, or None when no needed pixel's centre lies on the source raster.
    """
    w = cols[1] - cols[0]
    r0, r1, c0, c1 = 0, rows[1] - rows[0], 0, w
    if needed is not None:
        any_r, any_c = np.flatnonzero(needed.any(axis=1)), np.flatnonzero(needed.any(axis=0))
        if any_r.size == 0:
            return None
        r0, r1, c0, c1 = int(any_r[0]), int(any_r[-1]) + 1, int(any_c[0]), int(any_c[-1]) + 1
    sr, sc = source_pixels(grid, out_box, (rows[0] + r0, rows[0] + r1), (cols[0] + c0, cols[0] + c1), step)
    height, width = grid.shape
    ir, ic = np.floor(sr + SNAP), np.floor(sc + SNAP)
    keep = (sr >= 0) & (sc >= 0) & (ir < height) & (ic < width)
    if needed is not None:
        keep &= needed[r0:r1, c0:c1]
    bw = c1 - c0
    if keep.all():
        pixels = (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)).ravel()
        sr, sc, ir, ic = sr.ravel(), sc.ravel(), ir.ravel(), ic.ravel()
    else:
        sel = np.flatnonzero(keep)
        if sel.size == 0:
            return None
        pixels = (sel // bw + r0) * w + (sel % bw + c0)
        sr, sc, ir, ic = sr.ravel()[sel], sc.ravel()[sel], ir.ravel()[sel], ic.ravel()[sel]
    if nearest:
        wr0, wr1, wc0, wc1 = int(ir.min()), int(ir.max()) + 1, int(ic.min()), int(ic.max()) + 1
        centre = ((ir - wr0) * (wc1 - wc0) + (ic - wc0)).astype(np.intp)
        return Taps(pixels, (wr0, wr1, wc0, wc1), centre, None, None)
    iy, ix = np.floor(sr - 0.5), np.floor(sc - 0.5)
    ry, rx = 1.5 - (sr - iy), 1.5 - (sc - ix)  # GDAL's weights of the upper and left taps
    # The window spans every tap; where it passes the raster's edge it is padded with no data,
    # so taps outside the raster drop out like no-data ones (GDAL drops both alike).
    wr0, wr1, wc0, wc1 = int(iy.min()), int(iy.max()) + 2, int(ix.min()), int(ix.max()) + 2
    ww = wc1 - wc0
    n = pixels.size
    index = np.empty((n, 4), dtype=np.int32)
    index[:, 0] = (iy - wr0) * ww + (ix - wc0)
    index[:, 1:] = index[:, :1] + np.array([1, ww, ww + 1], dtype=np.int32)
    data = np.empty((n, 4), dtype=np.float64)
    qy, qx = 1.0 - ry, 1.0 - rx
    np.multiply(rx, ry, out=data[:, 0])  # GDAL's order: upper left, upper right, lower left, lower right
    np.multiply(qx, ry, out=data[:, 1])
    np.multiply(rx, qy, out=data[:, 2])
    np.multiply(qx, qy, out=data[:, 3])
    inside = wr0 >= 0 and wc0 >= 0 and wr1 <= height and wc1 <= width
    weight = ((data[:, 0] + data[:, 1]) + data[:, 2]) + data[:, 3] if inside else None
    matrix = scipy.sparse.csr_matrix(
        (data.reshape(-1), index.reshape(-1), np.arange(0, 4 * n + 1, 4, dtype=np.int32)),
        shape=(n, (wr1 - wr0) * ww),
    )
    centre = ((ir - wr0) * ww + (ic - wc0)).astype(np.intp)
    return Taps(pixels, (wr0, wr1, wc0, wc1), centre, matrix, weight)


def read_window(
    taps: Taps, shape: tuple[int, int], read: Callable[[int, int, int, int], np.ndarray]
) -> np.ndarray:
    """The source pixels of ``taps.window``, no data (0) where it passes the raster's edge.

    Args:
        taps: From :func:`plan_taps`.
        shape: The source raster's ``(rows, cols)``.
        read: Reads source rows ``[r0, r1)`` and columns ``[c0, c1)`` (all inside the raster).
    """
    wr0, wr1, wc0, wc1 = taps.window
    r0, r1, c0, c1 = max(wr0, 0), min(wr1, shape[0]), max(wc0, 0), min(wc1, shape[1])
    if (r0, r1, c0, c1) == taps.window:
        return read(r0, r1, c0, c1)
    window = np.zeros((wr1 - wr0, wc1 - wc0), dtype=np.uint16)
    if r0 < r1 and c0 < c1:
        window[r0 - wr0 : r1 - wr0, c0 - wc0 : c1 - wc0] = read(r0, r1, c0, c1)
    return window


def resample(window: np.ndarray, taps: Taps) -> np.ndarray:
    """uint16 values of ``taps.pixels`` from the source ``window`` (0 where nothing is written).

    Args:
        window: Source pixels ``taps.window`` (uint16, 0 no data).
        taps: From :func:`plan_taps`.
    """
    flat = window.reshape(-1)
    if taps.matrix is None:
        return flat[taps.centre]
    values = flat.astype(np.float64)
    num = taps.matrix @ values
    if taps.weight is not None and flat.all():
        den = taps.weight
        write = None
    else:
        den = taps.matrix @ (flat != 0).astype(np.float64)
        write = (flat[taps.centre] != 0) & (den >= MIN_WEIGHT)
        den = np.where(write, den, 1.0)
    num /= den
    num += 0.5
    out = np.floor(num, out=num).astype(np.uint16)
    if write is not None:
        out[~write] = 0
    return out


_local = threading.local()


def cached_taps(
    grid: SourceGrid, out_box: GeoBox, rows: tuple[int, int], cols: tuple[int, int],
    needed: np.ndarray | None, nearest: bool,
) -> Taps | None:  # fmt: skip
    """:func:`plan_taps`, remembered per thread for the last :data:`CACHE_SIZE` requests.

    A block's bands on one source grid ask for the same pixels (the same ``needed`` mask), so
    the taps are computed once per grid and block. The key holds everything they depend on.
    """
    digest = (
        None if needed is None else hashlib.blake2b(np.packbits(needed).tobytes(), digest_size=16).digest()
    )
    t = out_box.transform
    key = (grid, str(out_box.crs), tuple(t)[:6], rows, cols, None if needed is None else needed.shape,
           digest, nearest)  # fmt: skip
    cache: OrderedDict[tuple[object, ...], Taps | None] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    taps = plan_taps(grid, out_box, rows, cols, needed, nearest)
    cache[key] = taps
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return taps
