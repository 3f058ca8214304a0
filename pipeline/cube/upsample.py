"""Bilinear upsampling by a whole factor, the way GDAL's warper (and so odc-stac) computes it.

A Sentinel-2 20 m or 60 m asset in the output's CRS, whose pixel edges lie on the 10 m output
lattice, needs no general warp: output pixel ``o`` (along one axis, ``shift`` output pixels
between the source's edge and the grid's, ``k`` the size ratio) has its centre at source
coordinate ``s = (o + shift + 0.5) / k``; its two bilinear taps are source pixels
``i0 = floor(s - 0.5)`` and ``i0 + 1`` with weights ``1 - f`` and ``f``, ``f = s - 0.5 - i0``.
So ``f`` takes only ``k`` values (one per phase ``(o + shift) mod k``), and each phase is a pair of
shifted slices: the resampling is separable, two short passes of slices, no gathers.

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


def _pad(a: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    """Replicate the edge rows (``axis`` 0) or columns (1) of ``a`` ``before``/``after`` times."""
    if not (before or after):
        return a
    width = [(0, 0), (0, 0)]
    width[axis] = (before, after)
    return np.pad(a, width, mode="edge")


def _pass(a: np.ndarray, taps: AxisTaps, shift: int, k: int, axis: int, bias: float = 0.0) -> np.ndarray:
    """``2k x`` the upsampled ``a`` (index 0 is source index ``taps.first``) along ``axis``, plus ``bias``.

    Integer weights ``2k - r`` and ``r`` (``r = (2 (o + shift) + 1 - k) mod 2k``, the tap fraction
    times ``2k``) in float32: every value is an integer below ``(2k)^2 * 65536 <= 2^24`` for
    ``k <= 8``, so the arithmetic is exact (and float32 multiplies faster than uint32 in numpy).
    """
    n_out = taps.hi - taps.lo
    shape = (n_out, a.shape[1]) if axis == 0 else (a.shape[0], n_out)
    out = np.empty(shape, dtype=np.float32)
    tmp: np.ndarray | None = None
    for p in range(k):
        o = taps.lo + (p - (taps.lo + shift)) % k
        if o >= taps.hi:
            continue
        count = len(range(o, taps.hi, k))
        t = 2 * (o + shift) + 1 - k
        j = t // (2 * k) - taps.first
        r = t % (2 * k)
        step = slice(o - taps.lo, None, k)
        dst = out[step] if axis == 0 else out[:, step]
        a0 = a[j : j + count] if axis == 0 else a[:, j : j + count]
        a1 = a[j + 1 : j + 1 + count] if axis == 0 else a[:, j + 1 : j + 1 + count]
        w0, w1 = 2 * k - r, r
        if w1 == 0:
            np.multiply(a0, np.float32(w0), out=dst)
        elif w1 == 1 or w0 == 1:  # one weight is 1: no temporary
            big, one = (a0, a1) if w1 == 1 else (a1, a0)
            np.multiply(big, np.float32(max(w0, w1)), out=dst)
            np.add(dst, one, out=dst)
        else:
            if tmp is None:
                tmp = np.empty_like(out)
            scratch = tmp[: dst.shape[0]] if axis == 0 else tmp[:, : dst.shape[1]]
            np.multiply(a0, np.float32(w0), out=dst)
            np.multiply(a1, np.float32(w1), out=scratch)
            np.add(dst, scratch, out=dst)
        if bias:
            np.add(dst, np.float32(bias), out=dst)
    return out


def upsample_bilinear(
    window: np.ndarray, rows: AxisTaps, cols: AxisTaps, row_shift: int, col_shift: int, k: int,
    out: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Output pixels ``[rows.lo, rows.hi) x [cols.lo, cols.hi)`` from the source window that holds them.

    Computed as ``(2k)^2`` times the bilinear value in exact integer arithmetic, so rounding half
    up is exact.

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
    pad_r = (rows.start - rows.first, rows.last - (rows.stop - 1))
    pad_c = (cols.start - cols.first, cols.last - (cols.stop - 1))
    scale = 4 * k * k
    valid = window != 0
    # (2k)^2 * value + (2k)^2 / 2 (the half folded into the column pass as k per column value),
    # times 1 / (2k)^2 and truncated: floor(value + 0.5). The product of an integer-valued
    # float32 below 2^24 and the rounded 1 / (2k)^2 stays on the right side of every integer.
    # No-data pixels are 0, so this is also the numerator wherever every tap is valid.
    a = _pad(_pad(window, 0, *pad_r), 1, *pad_c)
    total = _pass(_pass(a, cols, col_shift, k, 1, bias=k), rows, row_shift, k, 0)
    np.multiply(total, np.float32(1.0 / scale), out=out, casting="unsafe")
    if valid.all():
        return out
    _fix_partial(out, a, valid, rows, cols, row_shift, col_shift, k)
    # The source pixel under each output centre must be valid (GDAL skips the pixel otherwise).
    qr = (np.arange(rows.lo, rows.hi) + row_shift) // k - rows.start
    c0 = cols.lo + col_shift - cols.start * k  # column of output cols.lo in the repeated columns
    np.multiply(out, _repeat_columns(valid, k)[qr, c0 : c0 + shape[1]], out=out)
    return out


def _repeat_columns(mask: np.ndarray, k: int) -> np.ndarray:
    """Each column of a 2-D boolean array ``k`` times (``np.repeat(mask, k, axis=1)``).

    For k = 2, 4 or 8 by one multiply: a 0 or 1 byte widened to k bytes and times ``0x0101...``
    is k copies of itself.
    """
    if k not in (2, 4, 8):
        return np.repeat(mask, k, axis=1)
    word = np.dtype(f"=u{k}")
    wide = mask.view(np.uint8).astype(word)
    np.multiply(wide, np.array(int("01" * k, 16), dtype=word), out=wide)
    return wide.view(np.bool_).reshape(mask.shape[0], mask.shape[1] * k)


def _axis_weights(o: np.ndarray, taps: AxisTaps, shift: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index ``o``: the first tap's index in the padded window and its weight ``2k - r``."""
    t = 2 * (o + shift) + 1 - k
    return t // (2 * k) - taps.first, 2 * k - t % (2 * k)


def _fix_partial(
    out: np.ndarray, a: np.ndarray, valid: np.ndarray, rows: AxisTaps, cols: AxisTaps, row_shift: int,
    col_shift: int, k: int,
) -> None:  # fmt: skip
    """Rewrite the output pixels with a valid centre pixel and some invalid tap: ``round(num / den)``.

    Such a pixel's centre lies in a valid source pixel with an invalid one among its 8 neighbours
    (its taps are that pixel and neighbours of it), so only the output pixels of those source
    pixels are visited: ``num = sum(w * v)`` and ``den = sum(w * valid)`` over the four taps in
    integers (``a`` is the edge-padded window, no data 0), and where ``den < (2k)^2`` the value is
    ``floor(num / den + 1/2)``: ``num < 2^24`` and ``den <= (2k)^2`` are exact in float64, and an
    exact quotient ``m + 1/2`` is representable while any other lies ``>= 1 / (2 den)`` from it,
    far more than float64's rounding, so the floor is exact. Where every tap with a non-zero weight
    is valid (``den == (2k)^2``) the value written already is kept.
    """
    h, w = valid.shape
    invalid = np.zeros((h + 2, w + 2), dtype=bool)
    invalid[1:-1, 1:-1] = ~valid
    near = invalid[:-2] | invalid[1:-1] | invalid[2:]  # 3 x 3 dilation, separable
    near = near[:, :-2] | near[:, 1:-1] | near[:, 2:]
    flat = np.flatnonzero(valid & near)  # (a 2-D nonzero is several times slower)
    if flat.size == 0:
        return
    qi, qj = np.divmod(flat, w)
    # The output pixels whose centre lies in source pixel (qi, qj): k x k of them, clipped.
    d = np.arange(k)
    o_r = ((qi + rows.start) * k - row_shift)[:, None, None] + d[None, :, None]
    o_c = ((qj + cols.start) * k - col_shift)[:, None, None] + d[None, None, :]
    o_r, o_c = np.broadcast_arrays(o_r, o_c)
    keep = (o_r >= rows.lo) & (o_r < rows.hi) & (o_c >= cols.lo) & (o_c < cols.hi)
    o_r, o_c = o_r[keep], o_c[keep]
    i, wr = _axis_weights(o_r, rows, row_shift, k)
    j, wc = _axis_weights(o_c, cols, col_shift, k)
    taps = ((i, j, wr * wc), (i, j + 1, wr * (2 * k - wc)), (i + 1, j, (2 * k - wr) * wc),
            (i + 1, j + 1, (2 * k - wr) * (2 * k - wc)))  # fmt: skip
    num = np.zeros(o_r.size, dtype=np.int64)
    den = np.zeros(o_r.size, dtype=np.int64)
    for ti, tj, weight in taps:
        v = a[np.minimum(ti, a.shape[0] - 1), np.minimum(tj, a.shape[1] - 1)].astype(np.int64)
        weight = np.where(v != 0, weight, 0)  # a zero weight never reads past the padded window
        num += weight * v
        den += weight
    part = den < 4 * k * k
    quotient = num[part].astype(np.float64) / den[part].astype(np.float64)
    out[o_r[part] - rows.lo, o_c[part] - cols.lo] = np.floor(quotient + 0.5).astype(np.uint16)
