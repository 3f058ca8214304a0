"""Bilinear upsampling by a whole factor, the way GDAL's warper (and so odc-stac) computes it.

A Sentinel-2 20 m or 60 m asset in the output's CRS, whose pixel edges lie on the 10 m output
lattice, needs no general warp: output pixel ``o`` (along one axis, ``shift`` output pixels
between the source's edge and the grid's, ``k`` the size ratio) has its centre at source
coordinate ``s = (o + shift + 0.5) / k``; its two bilinear taps are source pixels
``i0 = floor(s - 0.5)`` and ``i0 + 1`` with weights ``1 - f`` and ``f``, ``f = s - 0.5 - i0``.
So ``f`` takes only ``k`` values (one per phase ``(o + shift) mod k``), and the resampling is
separable: a pass along the columns of each source row, then one along the output rows.

GDAL's rules (``GWKBilinearResample4Sample`` and the general warp kernel, checked pixel for pixel
against ``rasterio.warp.reproject`` in the tests) that this reproduces:

* an output pixel whose centre falls outside the source raster is not written (no data);
* taps outside the raster are dropped and the others renormalised, which is the same as
  replicating the edge pixel (the weights of one axis factor out);
* no-data source pixels (DN 0) are dropped and the others renormalised:
  ``value = sum(w * v * valid) / sum(w * valid)``, no data where that sum is 0 (GDAL: below
  1e-5; the smallest non-zero sum here is ``1 / (2k)^2``);
* an output pixel whose centre lies in a no-data source pixel is not written;
* the result is rounded half up to the integer type.

The arithmetic is in integers (the weights are multiples of ``1 / 2k``), so the result is the
exact bilinear value rounded half up; GDAL's double precision can land 1 DN away where the exact
value is a half (the tests allow 1 DN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.cube import kernels


@dataclass(frozen=True)
class AxisTaps:
    """Where one output range meets an upsampled source along one axis.

    Attributes:
        lo: First output index whose centre lies on the source.
        hi: One past the last one.
        first: Source index of the first tap (may be -1: before the raster's edge).
        last: Source index of the last tap (may be ``n``: past the edge).
        start: First source index to read (``max(first, 0)``).
        stop: One past the last source index to read (``min(last, n - 1) + 1``).
    """

    lo: int
    hi: int
    first: int
    last: int
    start: int
    stop: int


def axis_taps(o0: int, o1: int, shift: int, k: int, n: int) -> AxisTaps | None:
    """Taps of output ``[o0, o1)`` on a source of ``n`` pixels, ``k`` output pixels each.

    Args:
        o0: First output index.
        o1: One past the last.
        shift: Output pixels between the source's first edge and the grid's (output pixel ``o``
            lies in source pixel ``(o + shift) // k``).
        k: Source pixel size over output pixel size (>= 1).
        n: Source pixels along the axis.

    Returns:
        The taps, or None when no output centre of the range lies on the source.
    """
    lo, hi = max(o0, -shift), min(o1, n * k - shift)
    if lo >= hi:
        return None
    first = (2 * (lo + shift) + 1 - k) // (2 * k)
    last = (2 * (hi - 1 + shift) + 1 - k) // (2 * k) + 1
    return AxisTaps(lo, hi, first, last, max(first, 0), min(last, n - 1) + 1)


def upsample_bilinear(
    window: np.ndarray, rows: AxisTaps, cols: AxisTaps, row_shift: int, col_shift: int, k: int,
    out: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Output pixels ``[rows.lo, rows.hi) x [cols.lo, cols.hi)`` from the source window that holds them.

    Computed as ``(2k)^2`` times the bilinear value in exact integer arithmetic, so rounding half
    up is exact (a compiled loop, :func:`pipeline.cube.kernels.upsample_bilinear`: one pass over
    the window's columns, one over the output rows, the exact no-data rule only on rows whose
    taps hold no data).

    Args:
        window: Source pixels ``[rows.start, rows.stop) x [cols.start, cols.stop)`` (uint16, 0 no data).
        rows: Row taps (:func:`axis_taps`).
        cols: Column taps.
        row_shift: Output rows between the source's top edge and the grid's.
        col_shift: Output columns between the source's left edge and the grid's.
        k: Size ratio (1 to 8).
        out: uint16 destination of that shape (written in place; a new array when None).

    Returns:
        ``out``: digital numbers, 0 where GDAL writes nothing.
    """
    shape = (rows.hi - rows.lo, cols.hi - cols.lo)
    if out is None:
        out = np.empty(shape, dtype=np.uint16)
    with kernels.contiguous(out, keep=False) as work:  # every pixel is written
        kernels.upsample_bilinear(
            window, rows.lo, rows.hi, rows.start, rows.stop, row_shift, cols.lo, cols.hi, cols.start,
            cols.stop, col_shift, k, work,
        )  # fmt: skip
    return out
