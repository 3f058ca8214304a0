"""Lazy analysis-ready cube: Sentinel-2 L2A composite + Copernicus DEM terrain on one UTM grid.

The cube is the only place pixels are read. Everything here builds a Dask graph; nothing is read
or computed until the caller asks (``.compute()``, ``to_zarr`` or ``map_overlap`` in the sweep).

Pipeline, per output pixel ``(y, x)`` of a UTM :class:`~odc.geo.geobox.GeoBox`:

1. ``load_s2``: odc-stac reads the spectral bands and SCL of every item onto the grid
   (bilinear for reflectance, nearest for the class map), one time slice per solar day.
2. ``harmonise``: ``DN_h = max(DN - offset(baseline), 0)`` with ``offset = 1000`` from
   processing baseline 04.00 on (``pipeline.bands.dn_offset``); nodata (``DN == 0``) -> NaN.
3. ``clear_mask``: ``clear = SCL not in SCL_INVALID and not within dilate_px of SCL_DILATE``.
4. ``composite``: per-pixel median over the clear observations; ``n_clear`` counts them.
5. ``load_dem`` + ``slope_degrees``: DEM bilinear onto the same grid, small NaN seams filled,
   ``slope = degrees(atan(hypot(dz/dx, dz/dy)))`` with central differences.
6. ``build_cube``: everything in Landslide4Sense scaling ``value / L4S_DIVISORS[name]``,
   NaN where ``valid`` is False.

Neighbourhood operations (dilation, seam fill, slope) run through ``dask.array.map_overlap``
with a halo equal to their reach and ``boundary="none"``: the array edge is treated exactly like
an unchunked computation treats it, so results do not depend on the chunking.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from affine import Affine
from dask.delayed import delayed
from odc.geo import Resolution, geom, xy_
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from pyproj import Transformer
from scipy import ndimage

from pipeline.bands import L4S_DIVISORS, S2_L2A_ASSETS, SCL_DILATE, SCL_INVALID, SWEEP_BANDS, dn_offset
from pipeline.errors import UserError

#: STAC collection ids accepted for each input.
S2_COLLECTION: Final[str] = "sentinel-2-l2a"
DEM_COLLECTION: Final[str] = "cop-dem-glo-30"
#: Asset keys (Planetary Computer naming).
SCL_ASSET: Final[str] = "SCL"
DEM_ASSET: Final[str] = "data"
#: Digital number that marks "no data" in L2A COGs (and in the loaded uint16 cube).
S2_NODATA: Final[int] = 0
#: Largest NaN gap (pixels of the output grid, from the gap edge) that the DEM seam fill closes.
DEM_FILL_PX: Final[int] = 3

#: Data types a well-formed item may declare in ``raster:bands`` (checked when declared).
_S2_DTYPES: Final[frozenset[str]] = frozenset({"uint16", "uint8"})
_DEM_DTYPES: Final[frozenset[str]] = frozenset({"float32"})


class CubeError(UserError):
    """Inputs the cube cannot be built from (wrong collection, missing asset, unexpected CRS/dtype)."""


# --------------------------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------------------------


def utm_zone_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing a point.

    ``zone = floor((lon + 180) / 6) + 1`` (clamped to 1..60); ``EPSG = 32600 + zone`` north of
    the equator (``lat >= 0``), ``32700 + zone`` south of it. The Norway/Svalbard exceptions are
    ignored on purpose: the grid only has to be a conformal metric grid near the bbox.
    """
    zone = min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60)
    return (32600 if lat >= 0 else 32700) + zone


def _densified_ring(bbox: tuple[float, float, float, float], points_per_edge: int = 64) -> geom.Geometry:
    """Build the bbox outline in EPSG:4326 with ``points_per_edge`` vertices per edge.

    Projected to UTM, the straight lon/lat edges become curves; densifying first keeps the
    projected outline (and so its envelope) within a fraction of a metre of the true edge.
    """
    west, south, east, north = bbox
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    xs = np.concatenate([west + (east - west) * t, np.full_like(t, east),
                         east - (east - west) * t, np.full_like(t, west)])  # fmt: skip
    ys = np.concatenate([np.full_like(t, south), south + (north - south) * t,
                         np.full_like(t, north), north - (north - south) * t])  # fmt: skip
    coords = [*zip(xs.tolist(), ys.tolist(), strict=True)]
    return geom.polygon([*coords, coords[0]], crs="EPSG:4326")


def utm_geobox(bbox: tuple[float, float, float, float], resolution: float = 10.0) -> GeoBox:
    """North-up UTM grid covering a WGS 84 bounding box, pixel edges on multiples of ``resolution``.

    The zone is that of the bbox centre (:func:`utm_zone_epsg`). The bbox outline is projected
    to that CRS and its envelope snapped outward:
    ``x0 = floor(xmin / r) * r``, ``x1 = ceil(xmax / r) * r`` (same for y), so two runs over the
    same zone produce grids whose pixels coincide.

    Args:
        bbox: ``(west, south, east, north)`` in degrees, ``west <= east``, ``south <= north``.
        resolution: Pixel size in metres (> 0).

    Returns:
        A GeoBox with transform ``Affine(r, 0, x0, 0, -r, y1)`` and shape
        ``((y1 - y0) / r, (x1 - x0) / r)``, at least one pixel each way.

    Raises:
        CubeError: On a malformed bbox or a non-positive resolution.

    """
    west, south, east, north = (float(v) for v in bbox)
    if not (resolution > 0 and math.isfinite(resolution)):
        raise CubeError(f"resolution must be a positive number of metres, got {resolution!r}")
    if not (-180 <= west <= east <= 180 and -90 < south <= north < 90):
        raise CubeError(f"bbox {bbox!r} is not (west, south, east, north) in degrees")
    epsg = utm_zone_epsg((west + east) / 2.0, (south + north) / 2.0)
    xmin, ymin, xmax, ymax = _densified_ring((west, south, east, north)).to_crs(f"EPSG:{epsg}").boundingbox
    x0, x1 = math.floor(xmin / resolution) * resolution, math.ceil(xmax / resolution) * resolution
    y0, y1 = math.floor(ymin / resolution) * resolution, math.ceil(ymax / resolution) * resolution
    width = max(round((x1 - x0) / resolution), 1)
    height = max(round((y1 - y0) / resolution), 1)
    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y0 + height * resolution)
    return GeoBox((height, width), transform, f"EPSG:{epsg}")


# --------------------------------------------------------------------------------------------
# Item checks
# --------------------------------------------------------------------------------------------


def _declared_epsg(item: pystac.Item, asset: str) -> int | None:
    """EPSG code an item declares for an asset (asset-level, then item-level), or None."""
    for fields in (item.assets[asset].extra_fields, item.properties):
        if fields.get("proj:epsg") is not None:
            return int(fields["proj:epsg"])
        code = fields.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
    return None


def _declared_dtype(item: pystac.Item, asset: str) -> str | None:
    """``raster:bands[0].data_type`` of an asset, or None when not declared."""
    bands = item.assets[asset].extra_fields.get("raster:bands") or []
    return bands[0].get("data_type") if bands else None


def _check_items(
    items: Sequence[pystac.Item],
    collection: str,
    assets: Sequence[str],
    epsg_ok: Callable[[int], bool],
    dtypes: frozenset[str],
) -> None:
    """Raise :class:`CubeError` naming the first item/asset that does not fit the cube."""
    if not items:
        raise CubeError(f"no {collection} items to build the cube from")
    for item in items:
        if item.collection_id != collection:
            raise CubeError(f"item {item.id}: collection {item.collection_id!r}, expected {collection!r}")
        for asset in assets:
            if asset not in item.assets:
                raise CubeError(f"item {item.id}: asset {asset!r} missing (has {sorted(item.assets)})")
            epsg = _declared_epsg(item, asset)
            if epsg is not None and not epsg_ok(epsg):
                raise CubeError(f"item {item.id}: asset {asset!r} has unexpected CRS EPSG:{epsg}")
            dtype = _declared_dtype(item, asset)
            if dtype is not None and dtype not in dtypes:
                raise CubeError(f"item {item.id}: asset {asset!r} has unexpected data type {dtype!r}")


def check_s2_items(items: Sequence[pystac.Item], bands: Sequence[str] = S2_L2A_ASSETS) -> None:
    """Check Sentinel-2 L2A items: collection, the bands + SCL present, UTM CRS, integer DNs.

    Raises:
        CubeError: One line naming the offending item and asset.

    """
    _check_items(items, S2_COLLECTION, [*bands, SCL_ASSET], _is_utm_epsg, _S2_DTYPES)


def check_dem_items(items: Sequence[pystac.Item]) -> None:
    """Check Copernicus DEM items: collection, asset ``data``, EPSG:4326 (or UTM), float32.

    Planetary Computer's tiles are EPSG:4326; a UTM DEM (the embedded demo's 10 m DEM) is
    accepted too, since the cube reprojects any DEM onto the sweep's grid.

    Raises:
        CubeError: One line naming the offending item and asset.

    """
    _check_items(items, DEM_COLLECTION, [DEM_ASSET], _is_dem_epsg, _DEM_DTYPES)


def _is_dem_epsg(epsg: int) -> bool:
    """Tell whether a DEM's CRS is accepted: EPSG:4326 or a WGS 84 / UTM zone."""
    return epsg == 4326 or _is_utm_epsg(epsg)


def _is_utm_epsg(epsg: int) -> bool:
    """Tell whether ``epsg`` is WGS 84 / UTM north (32601..32660) or south (32701..32760)."""
    return 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760


# --------------------------------------------------------------------------------------------
# Reading policy and pre-flight
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadPolicy:
    """How hard to try reading a remote COG before giving up on it.

    GDAL does the retrying (``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY``): on HTTP 429,
    500, 502, 503 and 504 it waits ``retry_delay_s`` and then doubles the wait (with jitter) for
    each further attempt, so ``max_retry = 5, retry_delay_s = 1`` tolerates about 30 s of
    outage. The same options are used by the pre-flight (in this process) and by the odc-stac
    reads (on the Dask workers, through the rasterio environment odc-stac captures).

    Attributes:
        max_retry: Retries after the first attempt of every HTTP request.
        retry_delay_s: First wait between attempts (seconds; doubles each retry).
        timeout_s: Timeout of one HTTP request (seconds).
        threads: Parallel header reads in :func:`preflight`.
    """

    max_retry: int = 5
    retry_delay_s: float = 1.0
    timeout_s: float = 60.0
    threads: int = 8

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration options for reads under this policy."""
        return {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": str(self.max_retry),
            "GDAL_HTTP_RETRY_DELAY": str(self.retry_delay_s),
            "GDAL_HTTP_TIMEOUT": str(math.ceil(self.timeout_s)),
        }


#: The default policy of sweeps.
READ_POLICY: Final[ReadPolicy] = ReadPolicy()


def _options(gdal_options: Mapping[str, str] | None) -> dict[str, str]:
    return dict(READ_POLICY.gdal_options() if gdal_options is None else gdal_options)


_QUERY = re.compile(r"(?P<url>(?:https?|s3|gs|az)://[^\s?'\"]+)\?[^\s'\"]*")


def redact(text: str) -> str:
    """Remove query strings (where signatures and tokens live) from every URL in ``text``."""
    return _QUERY.sub(lambda m: m.group("url"), text)


@dataclass(frozen=True)
class SkippedScene:
    """An item left out of the cube because one of its assets could not be read.

    Attributes:
        id: Item id.
        collection: Its collection.
        reason: One line: the asset and the error, URLs without their query strings.
    """

    id: str
    collection: str
    reason: str


def _header(href: str, options: Mapping[str, str]) -> tuple[int | None, str]:
    """Open one asset and return ``(EPSG or None, dtype of band 1)`` (header only)."""
    with rasterio.Env(**options), rasterio.open(href) as src:
        return (src.crs.to_epsg() if src.crs else None), str(src.dtypes[0])


#: The function that opens an asset's header (a seam: tests may swap it, the sweep never does).
HeaderReader = Callable[[str, Mapping[str, str]], tuple[int | None, str]]


def preflight(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    epsg_ok: Callable[[int], bool],
    dtypes: frozenset[str],
    policy: ReadPolicy = READ_POLICY,
    reader: HeaderReader = _header,
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """Open the header of every asset of every item (with retries) before a cube is built.

    An item with an asset that stays unreadable after the policy's retries is **skipped** (left
    out, reported); an asset that reads but whose file has an unexpected CRS or data type is an
    input error. Header reads are cheap (one or two HTTP range requests each) and run
    ``policy.threads`` at a time.

    Args:
        items: Items (signed where needed) to check.
        assets: Asset keys to open in each item.
        epsg_ok: Accepts the file's EPSG code.
        dtypes: Accepted data types of band 1.
        policy: Retries and timeouts.
        reader: Opens one header (the seam).

    Returns:
        ``(readable items in input order, skipped scenes)``.

    Raises:
        CubeError: A readable asset with the wrong CRS or data type.
    """
    options = policy.gdal_options()
    jobs = [(item, key) for item in items for key in assets if key in item.assets]

    def check(job: tuple[pystac.Item, str]) -> tuple[str, str | None]:
        item, key = job
        try:
            epsg, dtype = reader(item.assets[key].href, options)
        except (rasterio.errors.RasterioError, OSError) as exc:
            return item.id, redact(f"asset {key!r} unreadable: {' '.join(str(exc).split())}")[:300]
        if epsg is not None and not epsg_ok(epsg):
            raise CubeError(f"item {item.id}: asset {key!r} file has unexpected CRS EPSG:{epsg}")
        if epsg is None:
            raise CubeError(f"item {item.id}: asset {key!r} file has no CRS")
        if dtype not in dtypes:
            raise CubeError(f"item {item.id}: asset {key!r} file has unexpected data type {dtype!r}")
        return item.id, None

    with ThreadPoolExecutor(max(1, policy.threads)) as pool:
        results = list(pool.map(check, jobs))
    reasons: dict[str, str] = {}
    for item_id, reason in results:
        if reason is not None:
            reasons.setdefault(item_id, reason)
    ok = [it for it in items if it.id not in reasons]
    skipped = [SkippedScene(it.id, str(it.collection_id), reasons[it.id]) for it in items if it.id in reasons]
    return ok, skipped


def preflight_s2(
    items: Sequence[pystac.Item], bands: Sequence[str], policy: ReadPolicy = READ_POLICY
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """:func:`preflight` for Sentinel-2 L2A items: bands + SCL, UTM, integer DNs."""
    return preflight(items, [*bands, SCL_ASSET], _is_utm_epsg, _S2_DTYPES, policy)


def preflight_dem(
    items: Sequence[pystac.Item], policy: ReadPolicy = READ_POLICY
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """:func:`preflight` for DEM tiles: asset ``data``, EPSG:4326 or UTM, float32."""
    return preflight(items, [DEM_ASSET], _is_dem_epsg, _DEM_DTYPES, policy)


# --------------------------------------------------------------------------------------------
# Sentinel-2
# --------------------------------------------------------------------------------------------


def load_s2(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    chunk: int,
    bands: Sequence[str] = S2_L2A_ASSETS,
    *,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    gdal_options: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Lazy Sentinel-2 L2A digital numbers on ``geobox``, one time slice per solar day.

    Spectral bands are resampled bilinearly, SCL with nearest neighbour (it is a class map).
    Everything is loaded as uint16 with nodata 0; items of one solar day are fused (first valid
    pixel wins, items ordered by time then id).

    Args:
        items: ``sentinel-2-l2a`` items with Planetary-Computer-style asset keys.
        geobox: Output grid (see :func:`utm_geobox`).
        chunk: Spatial chunk size in pixels; chunks are ``{"time": 1, "y": chunk, "x": chunk}``.
        bands: Spectral asset keys to load (SCL is always added).
        fail_on_error: Passed to odc-stac. ``False`` turns an unreadable asset into nodata
            (0) instead of failing the computation; SCL 0 is invalid, so those pixels end up
            not valid downstream.
        patch_url: Optional href rewrite (e.g. URL signing) applied by odc-stac at read time.
        gdal_options: GDAL configuration for the reads (default :data:`READ_POLICY`'s options:
            HTTP retries with exponential backoff). odc-stac captures the active rasterio
            environment into the graph, so the options apply on every Dask worker.

    Returns:
        Dataset with one uint16 variable per band plus ``SCL``, dims ``(time, y, x)``.

    Raises:
        CubeError: On items that do not fit (see :func:`check_s2_items`).

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
            chunks={"time": 1, "y": chunk, "x": chunk},
            groupby="solar_day",
            resampling=resampling,
            dtype="uint16",
            nodata=S2_NODATA,
            fail_on_error=fail_on_error,
            patch_url=patch_url,
        )


def _geobox_mid_lon(geobox: GeoBox) -> float:
    """Longitude of the grid centre: odc-stac's reference for ``groupby="solar_day"``."""
    ((lon, _),) = geobox.extent.centroid.to_crs("EPSG:4326").points
    return float(lon)


def _solar_day_groups(items: Iterable[pystac.Item], geobox: GeoBox) -> dict[date, tuple[int, np.datetime64]]:
    """Solar day -> (DN offset, earliest nominal time), grouping as ``groupby="solar_day"`` does.

    odc-stac keys each item by ``parse_item(item).solar_date_at(lon).date()`` with ``lon`` the
    grid centre's longitude, sorts the groups by key, and stamps each time slice with the
    earliest item time of its group (UTC, timezone-naive).

    Raises:
        CubeError: When items of one solar day have processing baselines with different offsets.

    """
    lon = _geobox_mid_lon(geobox)
    groups: dict[date, tuple[int, np.datetime64, str]] = {}
    for item in items:
        parsed = odc.stac.parse_item(item)
        day = parsed.solar_date_at(lon).date()
        when = np.datetime64(parsed.nominal_datetime.replace(tzinfo=None), "us")
        offset = dn_offset(item.properties.get("s2:processing_baseline"))
        if day in groups:
            first_offset, first_time, first_id = groups[day]
            if first_offset != offset:
                raise CubeError(
                    f"item {item.id}: processing-baseline offset {offset} differs from {first_offset} "
                    f"of item {first_id} on the same solar day {day}"
                )
            groups[day] = (offset, min(first_time, when), first_id)
        else:
            groups[day] = (offset, when, item.id)
    return {day: (offset, when) for day, (offset, when, _) in sorted(groups.items())}


def solar_day_offsets(items: Iterable[pystac.Item], geobox: GeoBox) -> dict[date, int]:
    """DN offset (0 or 1000) of each solar day, in time-slice order.

    Raises:
        CubeError: When items of one solar day have processing baselines with different offsets.

    """
    return {day: offset for day, (offset, _) in _solar_day_groups(items, geobox).items()}


def harmonise(ds: xr.Dataset, items: Sequence[pystac.Item]) -> xr.Dataset:
    """Remove the processing-baseline offset from L2A digital numbers.

    ``DN_h = max(DN - dn_offset(baseline), 0)`` per time slice, as float32; pixels with
    ``DN == 0`` (nodata) become NaN so that they can never pass as dark reflectance. ``SCL`` is
    passed through unchanged.

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
    groups = _solar_day_groups(items, ds.odc.geobox)
    expected_times = np.array([when for _, when in groups.values()], dtype="datetime64[us]")
    actual_times = ds["time"].values.astype("datetime64[us]")
    if expected_times.shape != actual_times.shape or (expected_times != actual_times).any():
        raise CubeError(
            f"time slices {[str(t) for t in actual_times]} do not match the items' solar days "
            f"{[str(t) for t in expected_times]}: pass the items that were loaded"
        )
    offsets = {day: offset for day, (offset, _) in groups.items()}
    offset = xr.DataArray(np.array(list(offsets.values()), dtype="float32"), dims="time",
                          coords={"time": ds["time"]})  # fmt: skip
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


def disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element: ``dy**2 + dx**2 <= radius**2`` on a ``2r+1`` square."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def _dilate_block(block: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of each time slice of a ``(time, y, x)`` bool block by a disk."""
    structure = disk(radius)[None, :, :]
    return ndimage.binary_dilation(block, structure=structure)


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
    The dilation runs per time slice through ``map_overlap`` with ``depth = dilate_px``, so it
    is exact across chunk borders; outside the array counts as "not cloud".

    Args:
        scl: SCL classes, dims ``(..., y, x)`` (dask- or numpy-backed).
        dilate_px: Dilation radius in output pixels (0: no dilation).

    Returns:
        Boolean DataArray like ``scl``.

    """
    if dilate_px < 0:
        raise CubeError(f"dilate_px must be >= 0, got {dilate_px}")
    data = scl.data if isinstance(scl.data, da.Array) else da.from_array(scl.data, chunks=-1)
    invalid = da.isin(data, list(SCL_INVALID))
    if dilate_px > 0:
        cloudy = da.isin(data, list(SCL_DILATE))
        if cloudy.ndim == 2:
            cloudy = cloudy[None]
            grown = _map_overlap_2d(_dilate_block, cloudy, dilate_px, bool, radius=dilate_px)[0]
        else:
            grown = _map_overlap_2d(_dilate_block, cloudy, dilate_px, bool, radius=dilate_px)
        invalid = invalid | grown
    return xr.DataArray(~invalid, dims=scl.dims, coords=scl.coords, name="clear")


def _nanmedian_last_axis(values: np.ndarray) -> np.ndarray:
    """``nanmedian`` over the last axis, NaN (without a warning) where all values are NaN."""
    if values.shape[-1] == 1:  # one observation: the median is the value (fast path)
        return values[..., 0].astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bn.nanmedian(values, axis=-1).astype("float32")


def composite(spectral: xr.Dataset, clear: xr.DataArray) -> xr.Dataset:
    """Per-pixel median of the clear observations over time.

    ``composite[b](y, x) = median{ spectral[b](t, y, x) : clear(t, y, x), finite }``, NaN where no
    such observation exists. The median, not the mean or a "best pixel": it is robust to the
    residual clouds, haze and shadows that SCL misses (they are a minority of the stack and
    fall in the tails), while a best-pixel pick needs a quality score we do not have. With one
    or two observations it degrades gracefully to the value or their mean.

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


# --------------------------------------------------------------------------------------------
# DEM and slope
# --------------------------------------------------------------------------------------------


def _one_group(item: pystac.Item, parsed: Any, idx: int) -> int:
    """odc-stac groupby key putting every DEM tile into one plane (tiles do not overlap)."""
    return 0


def _fill_nan_block(block: np.ndarray, iterations: int) -> np.ndarray:
    """Fill NaN pixels with the mean of their finite 8-neighbours, ``iterations`` times.

    Each pass fills the NaN pixels that touch at least one finite pixel, so gaps up to
    ``2 * iterations`` pixels wide close; larger holes keep a NaN core. Pixels outside the block
    count as absent (zero weight).
    """
    values = block.astype("float32", copy=True)
    kernel = np.ones((3, 3), dtype="float64")
    for _ in range(iterations):
        missing = np.isnan(values)
        if not missing.any():
            break
        finite = (~missing).astype("float64")
        total = ndimage.convolve(np.where(missing, 0.0, values), kernel, mode="constant", cval=0.0)
        count = ndimage.convolve(finite, kernel, mode="constant", cval=0.0)
        fill = missing & (count > 0)
        values[fill] = (total[fill] / count[fill]).astype("float32")
    return values


def fill_small_gaps(dem: xr.DataArray, max_px: int = DEM_FILL_PX) -> xr.DataArray:
    """Close small NaN gaps (tile seams) in a 2-D DEM by iterated neighbour means.

    Runs through ``map_overlap`` with ``depth = max_px`` (one pixel of reach per pass), so the
    result does not depend on chunking.
    """
    data = dem.data if isinstance(dem.data, da.Array) else da.from_array(dem.data, chunks=-1)
    if max_px <= 0:
        return dem
    filled = _map_overlap_2d(_fill_nan_block, data, max_px, np.float32, iterations=max_px)
    return dem.copy(data=filled)


def _native_grid(items: Sequence[pystac.Item], geobox: GeoBox, margin_px: int = 4) -> GeoBox:
    """The DEM's own pixel grid over ``geobox`` (plus a margin), snapped like its tiles.

    CRS and the finest resolution come from the items' ``proj:*`` metadata (Copernicus GLO-30:
    EPSG:4326, 1 arcsec); the grid is anchored so pixels coincide with the tiles' pixels, so the
    read involves no resampling.
    """
    first = items[0]
    epsg = _declared_epsg(first, DEM_ASSET) or 4326
    res_x, res_y, anchor = 1 / 3600, 1 / 3600, (0.5, 0.5)
    transforms: list[list[float]] = []
    for it in items:
        t = it.properties.get("proj:transform") or it.assets[DEM_ASSET].extra_fields.get("proj:transform")
        if t:
            transforms.append([float(v) for v in t])
    if transforms:
        res_x = min(abs(float(t[0])) for t in transforms)
        res_y = min(abs(float(t[4])) for t in transforms)
        t0 = transforms[0]
        anchor = ((float(t0[2]) / res_x) % 1.0, (float(t0[5]) / res_y) % 1.0)
    bbox = geobox.extent.to_crs(f"EPSG:{epsg}").boundingbox
    pad_x, pad_y = margin_px * res_x, margin_px * res_y
    return GeoBox.from_bbox(
        (bbox.left - pad_x, bbox.bottom - pad_y, bbox.right + pad_x, bbox.top + pad_y),
        f"EPSG:{epsg}", resolution=Resolution(res_x, -res_y), anchor=xy_(*anchor),
    )  # fmt: skip


def _resample_bilinear(
    native: np.ndarray, native_box: GeoBox, out_box: GeoBox, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Bilinear sample of ``native`` at the pixel centres of a window of ``out_box``.

    Each output pixel centre is transformed to the native CRS (pyproj) and interpolated from its
    four native neighbours (``scipy.ndimage.map_coordinates``, order 1), so a pixel's value does
    not depend on how the output is chunked. NaN outside the native array or next to NaN.
    """
    t = out_box.transform
    cc, rr = np.meshgrid(np.arange(*cols) + 0.5, np.arange(*rows) + 0.5)
    x = t.c + t.a * cc + t.b * rr
    y = t.f + t.d * cc + t.e * rr
    assert out_box.crs is not None and native_box.crs is not None
    transformer = Transformer.from_crs(out_box.crs.proj, native_box.crs.proj, always_xy=True)
    lon, lat = transformer.transform(x, y)
    inv = ~native_box.transform
    col_f, row_f = inv * (lon, lat)
    coords = np.stack([np.asarray(row_f) - 0.5, np.asarray(col_f) - 0.5])
    return ndimage.map_coordinates(native, coords, order=1, mode="constant", cval=np.nan).astype(np.float32)


def load_dem(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    chunk: int,
    *,
    fill_px: int = DEM_FILL_PX,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    gdal_options: Mapping[str, str] | None = None,
) -> xr.DataArray:
    """Lazy DEM heights (metres, float32) on the Sentinel-2 grid, small NaN seams filled.

    1. odc-stac reads asset ``data`` of every tile on the DEM's **own** grid over the area
       (:func:`_native_grid`: no resampling, tiles fused into one plane);
    2. :func:`fill_small_gaps` closes the 1-pixel NaN seams Copernicus DEM tiles can have;
    3. each output chunk is sampled bilinearly at its pixel centres (:func:`_resample_bilinear`).

    Resampling per output pixel, rather than letting the reader warp per chunk, makes the DEM
    (and the slope) identical whatever the chunking, so sweeps with different block sizes agree.

    Args:
        items: ``cop-dem-glo-30`` items.
        geobox: The output grid (the Sentinel-2 grid).
        chunk: Spatial chunk size in pixels.
        fill_px: Reach of the seam fill in native pixels (0 disables it).
        fail_on_error: Passed to odc-stac (unreadable tiles become NaN when False).
        patch_url: Optional href rewrite (signing).
        gdal_options: GDAL configuration for the reads (see :func:`load_s2`).

    Returns:
        DataArray ``dem`` with dims ``(y, x)``.

    Raises:
        CubeError: On items that do not fit (see :func:`check_dem_items`).

    """
    items = list(items)
    check_dem_items(items)
    native_box = _native_grid(items, geobox)
    with rasterio.Env(**_options(gdal_options)):
        ds = odc.stac.load(
            items,
            bands=[DEM_ASSET],
            geobox=native_box,
            chunks={"y": -1, "x": -1},
            groupby=_one_group,
            resampling="bilinear",
            dtype="float32",
            nodata=float("nan"),
            fail_on_error=fail_on_error,
            patch_url=patch_url,
        )
    native = fill_small_gaps(ds[DEM_ASSET].isel(time=0, drop=True), fill_px).data.rechunk(-1)
    native_d = native.to_delayed().ravel()[0]
    rows_b = _bounds(geobox.shape[0], chunk)
    cols_b = _bounds(geobox.shape[1], chunk)
    blocks = [
        [
            da.from_delayed(
                delayed(_resample_bilinear)(native_d, native_box, geobox, r, c),
                shape=(r[1] - r[0], c[1] - c[0]),
                dtype=np.float32,
            )
            for c in cols_b
        ]
        for r in rows_b
    ]
    dem = xr.DataArray(da.block(blocks), dims=("y", "x"), coords=xr_coords(geobox), name="dem")
    dem.attrs = {"units": "m", "long_name": "height above the EGM2008 geoid"}
    return dem


def _bounds(size: int, chunk: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk, size)) for a in range(0, size, chunk)]


def _slope_block(block: np.ndarray, resolution: float) -> np.ndarray:
    """Slope in degrees of a 2-D height block: ``degrees(atan(hypot(dz/dy, dz/dx)))``.

    ``np.gradient`` takes central differences ``(z[i+1] - z[i-1]) / (2 r)`` inside the block and
    one-sided ``(z[1] - z[0]) / r`` at its edges.
    """
    if min(block.shape) < 2:
        return np.full(block.shape, np.nan, dtype="float32")
    dz_dy, dz_dx = np.gradient(block.astype("float64"), resolution)
    return np.degrees(np.arctan(np.hypot(dz_dx, dz_dy))).astype("float32")


def slope_degrees(dem: xr.DataArray, resolution: float) -> xr.DataArray:
    """Terrain slope in degrees on the projected grid.

    ``slope = degrees(atan(sqrt((dz/dx)**2 + (dz/dy)**2)))`` with central differences
    ``dz/dx = (z[y, x+1] - z[y, x-1]) / (2 r)``. Computed with ``map_overlap`` (depth 1,
    ``boundary="none"``): inside the array every pixel sees its true neighbours across chunk
    borders, and on the array's outer edge ``np.gradient`` uses one-sided differences
    ``(z[1] - z[0]) / r``, just as an unchunked computation does, so chunked == unchunked.
    NaN heights give NaN slope in their neighbourhood.

    Args:
        dem: Heights in metres, dims ``(y, x)``.
        resolution: Pixel size in metres (the absolute value is used).

    Returns:
        float32 DataArray ``slope_deg`` like ``dem``.

    """
    data = dem.data if isinstance(dem.data, da.Array) else da.from_array(dem.data, chunks=-1)
    slope = _map_overlap_2d(_slope_block, data, 1, np.float32, resolution=abs(float(resolution)))
    return xr.DataArray(slope, dims=dem.dims, coords=dem.coords, name="slope_deg", attrs={"units": "degree"})


# --------------------------------------------------------------------------------------------
# The cube
# --------------------------------------------------------------------------------------------


def build_cube(
    s2_items: Sequence[pystac.Item],
    dem_items: Sequence[pystac.Item],
    geobox: GeoBox,
    chunk: int,
    dilate_px: int = 3,
    *,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    gdal_options: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Lazy model-input cube on ``geobox`` in Landslide4Sense scaling.

    ``cube[b] = composite_DN[b] / L4S_DIVISORS[b]`` for the Sentinel-2 bands of ``SWEEP_BANDS``,
    ``cube["slope"] = slope_deg / L4S_DIVISORS["slope"]``, ``cube["dem"] = dem_m /
    L4S_DIVISORS["dem"]``; all float32 and NaN where ``valid`` is False, with
    ``valid = n_clear > 0 and all composite bands finite and dem finite and slope finite``.

    Args:
        s2_items: Post-event ``sentinel-2-l2a`` items (signed if needed).
        dem_items: ``cop-dem-glo-30`` tiles covering the grid.
        geobox: Output UTM grid (:func:`utm_geobox`).
        chunk: Spatial chunk size of every variable.
        dilate_px: Cloud/shadow dilation radius in pixels.
        fail_on_error: odc-stac's switch. With False an unreadable scene loads as nodata
            (SCL 0 -> not clear) and an unreadable DEM tile as NaN, so those pixels are simply
            not valid instead of failing the whole region.
        patch_url: Optional href rewrite applied at read time.
        gdal_options: GDAL configuration for every read (default: :data:`READ_POLICY`'s).

    Returns:
        Dataset with dims ``(y, x)``: the ``SWEEP_BANDS`` variables, ``valid`` (bool),
        ``slope_deg`` (float32 degrees), ``n_clear`` (uint8); a ``spatial_ref`` coordinate;
        attributes ``landslide:scene_ids`` and ``landslide:dem_ids``.

    Raises:
        CubeError: On inputs that do not fit.

    """
    s2_items, dem_items = list(s2_items), list(dem_items)
    spectral_bands = [b for b in SWEEP_BANDS if b.startswith("B")]
    raw = load_s2(
        s2_items, geobox, chunk, spectral_bands, fail_on_error=fail_on_error, patch_url=patch_url,
        gdal_options=gdal_options,
    )  # fmt: skip
    harmonised = harmonise(raw, s2_items)
    clear = clear_mask(harmonised[SCL_ASSET], dilate_px)
    comp = composite(harmonised[spectral_bands], clear)
    dem = load_dem(
        dem_items, geobox, chunk, fail_on_error=fail_on_error, patch_url=patch_url, gdal_options=gdal_options
    )
    slope = slope_degrees(dem, abs(geobox.resolution.x))

    physical: dict[str, xr.DataArray] = {b: comp[b] for b in spectral_bands}
    physical["slope"], physical["dem"] = slope, dem
    valid = comp["n_clear"] > 0
    for value in physical.values():
        valid = valid & np.isfinite(value)

    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    out: dict[str, xr.DataArray] = {}
    for name in SWEEP_BANDS:
        scaled = (physical[name] / np.float32(L4S_DIVISORS[name])).where(valid).astype("float32")
        out[name] = _on_grid(scaled, coords, {"units": "L4S", "l4s_divisor": L4S_DIVISORS[name]})
    out["valid"] = _on_grid(valid, coords, {})
    out["slope_deg"] = _on_grid(slope.astype("float32"), coords, {"units": "degree"})
    out["n_clear"] = _on_grid(comp["n_clear"], coords, {})
    attrs = {
        "landslide:scene_ids": [item.id for item in s2_items],
        "landslide:dem_ids": [item.id for item in dem_items],
        "landslide:dilate_px": dilate_px,
    }
    return xr.Dataset(out, coords=coords, attrs=attrs)


def _on_grid(arr: xr.DataArray, coords: dict[Any, xr.DataArray], attrs: dict[str, Any]) -> xr.DataArray:
    """Strip stray coordinates (time, band) and attach the grid's coordinates and grid mapping."""
    arr = arr.drop_vars([c for c in arr.coords if c not in ("y", "x")])
    arr = arr.assign_coords({k: v for k, v in coords.items() if k in ("y", "x", "spatial_ref")})
    arr.attrs = {**attrs, "grid_mapping": "spatial_ref"}
    return arr


def stack_bands(cube: xr.Dataset, bands: Sequence[str]) -> da.Array:
    """Model input stack ``(band, y, x)`` float32 in the order of ``bands``.

    Raises:
        CubeError: Naming the first band the cube lacks.

    """
    for band in bands:
        if band not in cube.data_vars:
            raise CubeError(f"band {band!r} not in the cube (has {sorted(map(str, cube.data_vars))})")
    layers = [
        cube[b].data if isinstance(cube[b].data, da.Array) else da.from_array(cube[b].data) for b in bands
    ]
    return da.stack([layer.astype("float32") for layer in layers], axis=0)
