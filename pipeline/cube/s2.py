"""Sentinel-2 L2A: reading, harmonisation, the SCL clear mask and the median composite.

The block kernels (:func:`dilate_disk`, :func:`clear_block`, :func:`composite_block`) are plain
numpy functions on whole blocks; the xarray functions around them (:func:`clear_mask`,
:func:`composite`) and :func:`pipeline.cube.build_cube` run them per Dask block.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Final

import bottleneck as bn
import dask.array as da
import numpy as np
import odc.geo.xr
import odc.stac
import pystac
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox

from pipeline.bands import S2_L2A_ASSETS, SCL_DILATE, SCL_INVALID, dn_offset
from pipeline.cube import kernels
from pipeline.cube.items import S2_NODATA, SCL_ASSET, CubeError, _options, check_s2_items
from pipeline.cube.median import NETWORK_MAX_T, median_block


def load_s2(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    chunk: int,
    bands: Sequence[str] = S2_L2A_ASSETS,
    *,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    gdal_options: Mapping[str, str] | None = None,
    time_chunk: int = 1,
) -> xr.Dataset:
    """Lazy Sentinel-2 L2A digital numbers on ``geobox``, one time slice per solar day.

    Spectral bands are resampled bilinearly, SCL with nearest neighbour (it is a class map).
    Everything is loaded as uint16 with nodata 0; items of one solar day are fused (first valid
    pixel wins, items ordered by time then id).

    Args:
        items: ``sentinel-2-l2a`` items with Planetary-Computer-style asset keys.
        geobox: Output grid (see :func:`pipeline.cube.utm_geobox`).
        chunk: Spatial chunk size in pixels; chunks are ``{"time": time_chunk, "y": chunk, "x": chunk}``.
        bands: Spectral asset keys to load (SCL is always added).
        fail_on_error: Passed to odc-stac. ``False`` turns an unreadable asset into nodata
            (0) instead of failing the computation; SCL 0 is invalid, so those pixels end up
            not valid downstream.
        patch_url: Optional href rewrite (e.g. URL signing) applied by odc-stac at read time.
        gdal_options: GDAL configuration for the reads (default: the read policy's options,
            HTTP retries with exponential backoff). odc-stac captures the active rasterio
            environment into the graph, so the options apply on every Dask worker.
        time_chunk: Time slices per chunk (-1: all of them, so one task reads every date of a
            band's block and nothing is concatenated along time later).

    Returns:
        Dataset with one uint16 variable per band plus ``SCL``, dims ``(time, y, x)``.

    Raises:
        CubeError: On items that do not fit (see :func:`pipeline.cube.check_s2_items`).

    """
    items = list(items)
    check_s2_items(items, bands)
    names = [*bands, SCL_ASSET]
    resampling = {band: "bilinear" for band in bands} | {SCL_ASSET: "nearest"}
    with rasterio.Env(**_options(gdal_options)):
        return odc.stac.load(
            items,
            bands=names,
            geobox=geobox,
            chunks={"time": time_chunk, "y": chunk, "x": chunk},
            groupby="solar_day",
            resampling=resampling,
            dtype="uint16",
            nodata=S2_NODATA,
            fail_on_error=fail_on_error,
            patch_url=patch_url,
            fuse_func={"*": f"{__name__}.first_valid_fuser"},
        )


def first_valid_fuser(dst: np.ndarray, src: np.ndarray) -> None:
    """odc-stac fuser for nodata 0: copy ``src`` where ``dst`` is still 0 (first valid pixel wins).

    The same result as odc-stac's default fuser, but a chunk that is still empty (the first
    source, the usual case of one item per solar day) takes a plain copy instead of a masked one.
    """
    if not dst.any():
        np.copyto(dst, src)
    else:
        np.copyto(dst, src, where=dst == S2_NODATA)


def _geobox_mid_lon(geobox: GeoBox) -> float:
    """Longitude of the grid centre: odc-stac's reference for ``groupby="solar_day"``."""
    ((lon, _),) = geobox.extent.centroid.to_crs("EPSG:4326").points
    return float(lon)


#: Items of each time slice with their parsed form, as :func:`solar_day_slices` returns them.
DaySlices = list[list[tuple[pystac.Item, odc.stac.ParsedItem]]]


def solar_day_slices(items: Sequence[pystac.Item], geobox: GeoBox) -> DaySlices:
    """Items grouped into time slices as odc-stac's ``groupby="solar_day"`` does.

    Groups are keyed by the solar date at the grid centre's longitude and sorted by it; items
    within a group are sorted by nominal time, then id (odc-stac's fuse order).
    """
    lon = _geobox_mid_lon(geobox)
    parsed = [(item, odc.stac.parse_item(item)) for item in items]
    keyed = sorted(
        ((p.solar_date_at(lon).date(), p.nominal_datetime, p.id, i) for i, (_, p) in enumerate(parsed))
    )  # fmt: skip
    slices: DaySlices = []
    last = None
    for day, _, _, i in keyed:
        if day != last:
            slices.append([])
            last = day
        slices[-1].append(parsed[i])
    return slices


def _solar_day_groups(
    items: Iterable[pystac.Item], geobox: GeoBox, days: DaySlices | None = None
) -> dict[date, tuple[int, np.datetime64]]:
    """Solar day -> (DN offset, earliest nominal time) of each time slice (:func:`solar_day_slices`).

    odc-stac stamps each time slice with the earliest item time of its group (UTC,
    timezone-naive). ``days``: the items' :func:`solar_day_slices` when the caller has them.

    Raises:
        CubeError: When items of one solar day have processing baselines with different offsets.

    """
    out: dict[date, tuple[int, np.datetime64]] = {}
    lon = _geobox_mid_lon(geobox)
    for group in solar_day_slices(list(items), geobox) if days is None else days:
        (first, first_parsed), *rest = group
        offset = dn_offset(first.properties.get("s2:processing_baseline"))
        for item, _ in rest:
            other = dn_offset(item.properties.get("s2:processing_baseline"))
            if other != offset:
                raise CubeError(
                    f"item {item.id}: processing-baseline offset {other} differs from {offset} "
                    f"of item {first.id} on the same solar day {first_parsed.solar_date_at(lon).date()}"
                )
        when = min(np.datetime64(p.nominal_datetime.replace(tzinfo=None), "us") for _, p in group)
        out[first_parsed.solar_date_at(lon).date()] = (offset, when)
    return out


def solar_day_offsets(
    items: Iterable[pystac.Item], geobox: GeoBox, *, days: DaySlices | None = None
) -> dict[date, int]:
    """DN offset (0 or 1000) of each solar day, in time-slice order.

    Args:
        items: Sentinel-2 items.
        geobox: The output grid (its centre's longitude dates the items).
        days: The items' :func:`solar_day_slices`, when the caller has them (parsing items is
            most of the cost).

    Raises:
        CubeError: When items of one solar day have processing baselines with different offsets.

    """
    return {day: offset for day, (offset, _) in _solar_day_groups(items, geobox, days).items()}


def slice_offsets(ds: xr.Dataset, items: Sequence[pystac.Item]) -> list[int]:
    """DN offset of each time slice of a :func:`load_s2` result, checked against the items.

    Raises:
        CubeError: If the time slices and the items' solar days disagree, or a day mixes offsets.
    """
    groups = _solar_day_groups(items, ds.odc.geobox)
    expected_times = np.array([when for _, when in groups.values()], dtype="datetime64[us]")
    actual_times = ds["time"].values.astype("datetime64[us]")
    if expected_times.shape != actual_times.shape or (expected_times != actual_times).any():
        raise CubeError(
            f"time slices {[str(t) for t in actual_times]} do not match the items' solar days "
            f"{[str(t) for t in expected_times]}: pass the items that were loaded"
        )
    return [offset for offset, _ in groups.values()]


def harmonise(ds: xr.Dataset, items: Sequence[pystac.Item]) -> xr.Dataset:
    """Remove the processing-baseline offset from L2A digital numbers.

    ``DN_h = max(DN - dn_offset(baseline), 0)`` per time slice, as float32; pixels with
    ``DN == 0`` (nodata) become NaN so that they can never pass as dark reflectance. ``SCL`` is
    passed through unchanged. (:func:`pipeline.cube.build_cube` does the same arithmetic inside
    its fused block kernel.)

    Time slices map to items by solar day: odc-stac sorts groups by solar day and stamps each
    slice with its group's earliest item time, which is checked here.

    Args:
        ds: Output of :func:`load_s2`.
        items: The same items that were loaded.

    Returns:
        Dataset with float32 spectral variables and the original ``SCL``.

    Raises:
        CubeError: If the time slices and the items' solar days disagree, or a day mixes offsets.

    """
    offsets = slice_offsets(ds, items)
    offset = xr.DataArray(np.array(offsets, dtype="float32"), dims="time", coords={"time": ds["time"]})
    out: dict[Hashable, xr.DataArray] = {}
    for name, raw in ds.data_vars.items():
        if name == SCL_ASSET:
            out[name] = raw
            continue
        dn = raw.astype("float32")
        out[name] = xr.where(raw == S2_NODATA, np.float32(np.nan), np.maximum(dn - offset, 0)).astype(
            "float32"
        )
        out[name].attrs = {**raw.attrs, "nodata": float("nan")}
    return xr.Dataset(out, coords=ds.coords, attrs=ds.attrs)


# --------------------------------------------------------------------------------------------
# Clear mask
# --------------------------------------------------------------------------------------------


def disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element: ``dy**2 + dx**2 <= radius**2`` on a ``2r+1`` square."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of the last two axes of ``mask`` by :func:`disk`, outside counting as False.

    The disk is a union of horizontal runs: row offset ``dy`` covers ``|dx| <= isqrt(r² - dy²)``.
    So the dilation is a few running ORs along x (one per run half-width) and one OR per row
    offset: ``~4 r`` vectorised boolean operations, equal to
    ``scipy.ndimage.binary_dilation(mask, disk(radius))`` pixel for pixel.
    """
    if radius <= 0:
        return mask.astype(bool, copy=True)
    r = radius
    h, w = mask.shape[-2:]
    padded = np.zeros((*mask.shape[:-2], h + 2 * r, w + 2 * r), dtype=bool)
    padded[..., r : r + h, r : r + w] = mask
    widths = {dy: math.isqrt(r * r - dy * dy) for dy in range(-r, r + 1)}
    runs: dict[int, np.ndarray] = {}
    run = padded[..., :, r : r + w].copy()  # half-width 0
    for k in range(0, max(widths.values()) + 1):
        if k > 0:
            run |= padded[..., :, r - k : r - k + w]
            run |= padded[..., :, r + k : r + k + w]
        if k in widths.values():
            runs[k] = run.copy() if k < max(widths.values()) else run
    out = np.zeros(mask.shape, dtype=bool)
    for dy, k in widths.items():
        out |= runs[k][..., r + dy : r + dy + h, :]
    return out


#: Bit ``c`` set for each SCL class ``c`` in SCL_INVALID / SCL_DILATE (all classes are below 16).
_INVALID_BITS: Final = np.uint16(sum(1 << c for c in SCL_INVALID))
_DILATE_BITS: Final = np.uint16(sum(1 << c for c in SCL_DILATE))
assert max(SCL_INVALID + SCL_DILATE) < 16
#: Pixels (all time slices together) per strip of rows of :func:`clear_block`.
CLEAR_STRIP_PIXELS: Final[int] = 1 << 18


def _class_masks(scl: np.ndarray, ones: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(scl in SCL_INVALID, scl in SCL_DILATE)`` as boolean arrays.

    uint16 classes by a shift: ``1 << scl`` (0 for classes of 16 and more) ANDed with a bit set of
    the classes (a 256-entry lookup is a gather, several times slower); other types by lookup.
    """
    if scl.dtype == np.uint16 and ones is not None:
        bit = np.left_shift(ones[: scl.size].reshape(scl.shape), scl)
        return (bit & _INVALID_BITS) != 0, (bit & _DILATE_BITS) != 0
    lut_invalid = np.zeros(256, dtype=bool)
    lut_invalid[list(SCL_INVALID)] = True
    lut_dilate = np.zeros(256, dtype=bool)
    lut_dilate[list(SCL_DILATE)] = True
    classes = scl if scl.dtype == np.uint8 else np.minimum(scl, 255).astype(np.uint8)
    return lut_invalid[classes], lut_dilate[classes]


def clear_block(scl: np.ndarray, radius: int, strip_pixels: int = CLEAR_STRIP_PIXELS) -> np.ndarray:
    """``clear = scl not in SCL_INVALID and not dilate_disk(scl in SCL_DILATE, radius)`` on a block.

    Computed on strips of rows of about ``strip_pixels`` pixels (each with ``radius`` rows of
    context either side, so the dilation sees what it sees on the whole block): the work stays in
    the CPU caches and the result does not depend on the strips.
    """
    h, w = scl.shape[-2:]
    lead = int(np.prod(scl.shape[:-2], dtype=np.int64))
    out = np.empty(scl.shape, dtype=bool)
    step = max(1, strip_pixels // max(lead * w, 1))
    halo = max(radius, 0)
    ones = np.ones(lead * (min(step, h) + 2 * halo) * w, dtype=np.uint16) if scl.dtype == np.uint16 else None
    for a in range(0, h, step):
        b = min(a + step, h)
        lo, hi = max(a - halo, 0), min(b + halo, h)
        invalid, cloudy = _class_masks(scl[..., lo:hi, :], ones)
        inner = invalid[..., a - lo : b - lo, :]
        if radius > 0 and cloudy.any():
            inner |= dilate_disk(cloudy, radius)[..., a - lo : b - lo, :]
        np.logical_not(inner, out=out[..., a:b, :])
    return out


def _map_overlap_2d(
    func: Callable[..., np.ndarray], arr: da.Array, depth: int, dtype: Any, **kwargs: Any
) -> da.Array:
    """``map_overlap`` over the last two axes with ``boundary="none"``; output keeps input chunks."""
    depths = {arr.ndim - 2: depth, arr.ndim - 1: depth} | {i: 0 for i in range(arr.ndim - 2)}
    meta = np.array((), dtype=dtype)
    out = da.map_overlap(func, arr, depth=depths, boundary="none", dtype=dtype, meta=meta, **kwargs)
    return out if out.chunks == arr.chunks else out.rechunk(arr.chunks)


def clear_mask(scl: xr.DataArray, dilate_px: int = 3) -> xr.DataArray:
    """Pixels whose SCL class is clear, after growing clouds/shadows by ``dilate_px``.

    ``clear = scl not in SCL_INVALID  and  not dilate(scl in SCL_DILATE, disk(dilate_px))``.
    The dilation runs per block through ``map_overlap`` with ``depth = dilate_px`` (over time
    slices at once), so it is exact across chunk borders; outside the array counts as "not cloud".

    Args:
        scl: SCL classes, dims ``(..., y, x)`` (dask- or numpy-backed).
        dilate_px: Dilation radius in output pixels (0: no dilation).

    Returns:
        Boolean DataArray like ``scl``.

    """
    if dilate_px < 0:
        raise CubeError(f"dilate_px must be >= 0, got {dilate_px}")
    data = scl.data if isinstance(scl.data, da.Array) else da.from_array(scl.data, chunks=-1)
    if dilate_px > 0:
        clear = _map_overlap_2d(clear_block, data, dilate_px, bool, radius=dilate_px)
    else:
        clear = da.map_blocks(clear_block, data, radius=0, dtype=bool)
    return xr.DataArray(clear, dims=scl.dims, coords=scl.coords, name="clear")


# --------------------------------------------------------------------------------------------
# Composite
# --------------------------------------------------------------------------------------------


def composite_block(
    dn: np.ndarray,
    clear: np.ndarray,
    offsets: Sequence[int],
    out: np.ndarray,
    *,
    mask: bool = True,
    divisor: float = 1.0,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Median of the clear, harmonised observations of one band's block, written into ``out``.

    ``out[y, x] = median{ max(dn[t] - offsets[t], 0) : clear[t] and dn[t] != 0 }`` in float32,
    NaN where no observation qualifies. With one time slice this is a cast (no sort). With up to
    :data:`NETWORK_MAX_T` slices the work stays in uint16
    (:func:`pipeline.cube.median.median_block`: a compiled loop a row at a time, a pruned
    sorting network, the median picked by count); the result is exactly bottleneck's ``nanmedian``.

    Args:
        dn: ``(T, h, w)`` uint16 digital numbers.
        clear: ``(T, h, w)`` bool clear mask.
        offsets: DN offset of each time slice.
        out: ``(h, w)`` float32 destination.
        mask: Set NaN where no observation qualifies (False may leave a finite value there, for
            a caller who masks those pixels anyway, e.g. through ``valid``).
        divisor: The median is divided by it in the same pass (float32, ``median / divisor``
            rounded once, as a separate division would give): the L4S scaling.
        valid: Optional ``(h, w)`` bool, ANDed in place with "some observation qualifies" (where
            the median is not NaN, whatever ``mask`` says).

    Returns:
        ``out``.
    """
    t = dn.shape[0]
    d = np.float32(divisor)
    if t == 1:
        _cast_block(dn[0], clear[0], offsets[0], out, d, mask, valid)
        return out
    if t > NETWORK_MAX_T or dn.dtype != np.uint16:
        ok = clear & (dn != S2_NODATA)
        vals = dn.astype(np.float32) - np.asarray(offsets, dtype=np.float32)[:, None, None]
        vals = np.where(ok, np.maximum(vals, np.float32(0)), np.float32(np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[...] = bn.nanmedian(np.moveaxis(vals, 0, -1), axis=-1)
        np.divide(out, d, out=out)
        if valid is not None:
            valid &= ok.any(axis=0)
        return out
    median_block(dn, clear, offsets, out, divisor, valid, nan=mask)
    return out


def _cast_block(
    dn: np.ndarray, clear: np.ndarray, offset: int, out: np.ndarray, d: np.float32, mask: bool,
    valid: np.ndarray | None,
) -> None:  # fmt: skip
    """One time slice: ``out = max(dn - offset, 0) / d``.

    NaN where the observation does not qualify if ``mask``; ``valid`` (optional) is ANDed with
    where it does. uint16 digital numbers take one compiled pass
    (:func:`pipeline.cube.kernels.cast_scaled`), anything else the numpy passes.
    """
    if dn.dtype == np.uint16:
        track = _NO_VALID if valid is None else valid
        kernels.cast_scaled(dn, clear, np.uint16(offset), d, out, track, valid is not None, mask)
        return
    if offset:
        np.subtract(dn, np.float32(offset), out=out)
        np.maximum(out, np.float32(0), out=out)
    else:
        np.copyto(out, dn, casting="unsafe")
    np.divide(out, d, out=out)
    if mask or valid is not None:
        qualifies = dn != S2_NODATA
        qualifies &= clear
        if mask:
            np.copyto(out, np.float32(np.nan), where=~qualifies)
        if valid is not None:
            valid &= qualifies


#: Stand-in for ``valid`` when a caller does not track it.
_NO_VALID: Final[np.ndarray] = np.ones((1, 1), dtype=np.bool_)


def composite(spectral: xr.Dataset, clear: xr.DataArray) -> xr.Dataset:
    """Per-pixel median of the clear observations over time (bottleneck, any number of slices).

    ``composite[b](y, x) = median{ spectral[b](t, y, x) : clear(t, y, x), finite }``, NaN where no
    such observation exists. The median, not the mean or a "best pixel": it is robust to the
    residual clouds, haze and shadows that SCL misses (they are a minority of the stack and
    fall in the tails), while a best-pixel pick needs a quality score we do not have. With one
    or two observations it degrades gracefully to the value or their mean.
    :func:`pipeline.cube.build_cube` computes the same median with :func:`composite_block`.

    Args:
        spectral: Harmonised float32 bands, dims ``(time, y, x)``.
        clear: Output of :func:`clear_mask`, same dims.

    Returns:
        Dataset with one float32 variable per band, dims ``(y, x)``, plus ``n_clear`` (uint8,
        number of clear time slices, saturating at 255).

    """
    masked = spectral.where(clear).chunk({"time": -1})
    out = {
        name: xr.apply_ufunc(
            _nanmedian_last_axis,
            band,
            input_core_dims=[["time"]],
            dask="parallelized",
            output_dtypes=[np.float32],
        )
        for name, band in masked.data_vars.items()
    }
    out["n_clear"] = clear.sum("time").clip(max=255).astype("uint8")
    return xr.Dataset(out)


def _nanmedian_last_axis(values: np.ndarray) -> np.ndarray:
    """``nanmedian`` over the last axis, NaN (without a warning) where all values are NaN."""
    if values.shape[-1] == 1:
        return values[..., 0].astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bn.nanmedian(values, axis=-1).astype("float32")
