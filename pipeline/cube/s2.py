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
from typing import Any

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
from pipeline.cube.items import S2_NODATA, SCL_ASSET, CubeError, _options, check_s2_items

#: Largest number of time slices the composite sorts with a sorting network; more use bottleneck.
NETWORK_MAX_T = 16


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


def solar_day_slices(
    items: Sequence[pystac.Item], geobox: GeoBox
) -> list[list[tuple[pystac.Item, odc.stac.ParsedItem]]]:
    """Items grouped into time slices as odc-stac's ``groupby="solar_day"`` does.

    Groups are keyed by the solar date at the grid centre's longitude and sorted by it; items
    within a group are sorted by nominal time, then id (odc-stac's fuse order).
    """
    lon = _geobox_mid_lon(geobox)
    parsed = [(item, odc.stac.parse_item(item)) for item in items]
    keyed = sorted(
        ((p.solar_date_at(lon).date(), p.nominal_datetime, p.id, i) for i, (_, p) in enumerate(parsed))
    )  # fmt: skip
    slices: list[list[tuple[pystac.Item, odc.stac.ParsedItem]]] = []
    last = None
    for day, _, _, i in keyed:
        if day != last:
            slices.append([])
            last = day
        slices[-1].append(parsed[i])
    return slices


def _solar_day_groups(items: Iterable[pystac.Item], geobox: GeoBox) -> dict[date, tuple[int, np.datetime64]]:
    """Solar day -> (DN offset, earliest nominal time) of each time slice (:func:`solar_day_slices`).

    odc-stac stamps each time slice with the earliest item time of its group (UTC,
    timezone-naive).

    Raises:
        CubeError: When items of one solar day have processing baselines with different offsets.

    """
    out: dict[date, tuple[int, np.datetime64]] = {}
    lon = _geobox_mid_lon(geobox)
    for group in solar_day_slices(list(items), geobox):
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


def solar_day_offsets(items: Iterable[pystac.Item], geobox: GeoBox) -> dict[date, int]:
    """DN offset (0 or 1000) of each solar day, in time-slice order.

    Raises:
        CubeError: When items of one solar day have processing baselines with different offsets.

    """
    return {day: offset for day, (offset, _) in _solar_day_groups(items, geobox).items()}


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


def clear_block(scl: np.ndarray, radius: int) -> np.ndarray:
    """``clear = scl not in SCL_INVALID and not dilate_disk(scl in SCL_DILATE, radius)`` on a block."""
    lut_invalid = np.zeros(256, dtype=bool)
    lut_invalid[list(SCL_INVALID)] = True
    lut_dilate = np.zeros(256, dtype=bool)
    lut_dilate[list(SCL_DILATE)] = True
    classes = scl if scl.dtype == np.uint8 else np.minimum(scl, 255).astype(np.uint8)
    invalid = lut_invalid[classes]
    if radius > 0:
        cloudy = lut_dilate[classes]
        if cloudy.any():
            invalid |= dilate_disk(cloudy, radius)
    return ~invalid


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


#: Optimal sorting networks (compare-exchange pairs) for 2, 3 and 4 inputs.
_NETWORKS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 1),),
    3: ((0, 1), (1, 2), (0, 1)),
    4: ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2)),
}


def _sort_network(values: list[np.ndarray]) -> None:
    """Sort a list of equal-shape arrays element-wise in place.

    Optimal networks up to 4 inputs, odd-even transposition beyond.
    """
    n = len(values)
    pairs = _NETWORKS.get(n) or tuple((i, i + 1) for rnd in range(n) for i in range(rnd % 2, n - 1, 2))
    for i, j in pairs:
        lo = np.minimum(values[i], values[j])
        np.maximum(values[i], values[j], out=values[j])
        values[i] = lo


def _median_of_sorted(
    values: list[np.ndarray], count: np.ndarray, out: np.ndarray, divisor: float = 1.0
) -> None:
    """Median of the first ``count`` entries of element-wise sorted ``values``, NaN where 0, over ``divisor``.

    ``(s[(c - 1) // 2] + s[c // 2]) / 2`` for each count ``c``: ``s[(c - 1) // 2]`` is ``s[k]``
    for the largest ``k`` with ``c >= 2k + 1``, ``s[c // 2]`` the largest with ``c >= 2k``; each is
    picked by a chain of ``np.where`` (fast on cloud masks, which are spatially coherent;
    ``np.choose`` and masked copies were several times slower). Where every pixel has all
    ``len(values)`` observations the two middle values are taken as they are. The sum of the
    two is exact and halving is exact, so ``sum / (2 * divisor)`` is ``median / divisor`` with
    one rounding, bit for bit.
    """
    t = len(values)
    lowest = int(count.min())
    if lowest == t:
        lo, hi = values[(t - 1) // 2], values[t // 2]
    else:
        lo, hi = values[0], values[0]
        for k in range(1, t // 2 + 1):
            if 2 * k + 1 <= t:
                lo = np.where(count >= 2 * k + 1, values[k], lo)
            hi = np.where(count >= 2 * k, values[k], hi)
    np.add(lo, hi, out=out, dtype=np.float32)  # uint16 inputs: exact in float32
    np.divide(out, np.float32(2) * np.float32(divisor), out=out)
    if lowest == 0:
        np.copyto(out, np.float32(np.nan), where=count == 0)


#: Sorts after every harmonised DN: stands for "no observation" in the sorting network.
_NO_OBSERVATION = np.uint16(np.iinfo(np.uint16).max)


def composite_block(
    dn: np.ndarray,
    clear: np.ndarray,
    offsets: Sequence[int],
    out: np.ndarray,
    *,
    mask: bool = True,
    divisor: float = 1.0,
) -> np.ndarray:
    """Median of the clear, harmonised observations of one band's block, written into ``out``.

    ``out[y, x] = median{ max(dn[t] - offsets[t], 0) : clear[t] and dn[t] != 0 }`` in float32,
    NaN where no observation qualifies. With one time slice this is a cast (no sort). With up to
    :data:`NETWORK_MAX_T` slices the work stays in uint16 (harmonised DNs are integers):
    values that do not qualify become 65535 (so they sort last; a genuine 65535 ties with them
    and is still picked correctly, ranks below the count being qualifying values), a sorting
    network orders them and the median is picked by count (the mean of the two middle values
    for an even count, exact in float32); where at most one observation qualifies anywhere in
    the block nothing is sorted. The result is exactly bottleneck's ``nanmedian``.

    Args:
        dn: ``(T, h, w)`` uint16 digital numbers.
        clear: ``(T, h, w)`` bool clear mask.
        offsets: DN offset of each time slice.
        out: ``(h, w)`` float32 destination.
        mask: With one time slice, set NaN where the observation does not qualify (False leaves
            those pixels to the caller, who masks them anyway).
        divisor: The median is divided by it in the same pass (float32, ``median / divisor``
            rounded once, as a separate division would give): the L4S scaling.

    Returns:
        ``out``.
    """
    t = dn.shape[0]
    d = np.float32(divisor)
    if t == 1:
        if offsets[0] and dn.dtype == np.uint16:  # max(dn - o, 0) == max(dn, o) - o, exact in uint16
            off = np.uint16(offsets[0])
            v = np.maximum(dn[0], off)
            np.subtract(v, off, out=v)
            np.divide(v, d, out=out, dtype=np.float32)
        elif offsets[0]:
            np.subtract(dn[0], np.float32(offsets[0]), out=out)
            np.maximum(out, np.float32(0), out=out)
            np.divide(out, d, out=out)
        else:
            np.divide(dn[0], d, out=out, dtype=np.float32)
        if mask:
            np.copyto(out, np.float32(np.nan), where=~clear[0] | (dn[0] == S2_NODATA))
        return out
    zero = dn == S2_NODATA
    ok = clear & ~zero if zero.any() else clear
    count = ok.view(np.uint8).sum(axis=0, dtype=np.uint8 if t < 256 else np.uint16)
    if t > NETWORK_MAX_T or dn.dtype != np.uint16:
        vals = dn.astype(np.float32) - np.asarray(offsets, dtype=np.float32)[:, None, None]
        vals = np.where(ok, np.maximum(vals, np.float32(0)), np.float32(np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[...] = bn.nanmedian(np.moveaxis(vals, 0, -1), axis=-1)
        np.divide(out, d, out=out)
        return out
    values = []
    for i in range(t):
        if offsets[i]:  # max(dn - o, 0) == max(dn, o) - o, exact in uint16
            off = np.uint16(offsets[i])
            v = np.maximum(dn[i], off)
            np.subtract(v, off, out=v)
            np.copyto(v, _NO_OBSERVATION, where=~ok[i])
        else:
            v = np.where(ok[i], dn[i], _NO_OBSERVATION)
        values.append(v)
    if int(count.max()) <= 1:  # at most one clear observation anywhere: the minimum, no sort
        values[0] = np.minimum.reduce(values)
    else:
        _sort_network(values)
    _median_of_sorted(values, count, out, divisor)
    return out


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
