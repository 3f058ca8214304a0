"""The DEM on the Sentinel-2 grid and the slope: read once at native resolution, seams filled.

The DEM is read once per call (per region of a sweep) on its **own** grid, its NaN seams filled
where they are (:func:`fill_seams`), and then sampled bilinearly at the centre of every output
pixel (:func:`resample_block`), so a height does not depend on how the output is chunked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import dask.array as da
import numpy as np
import odc.stac
import pystac
import rasterio
import xarray as xr
from dask.delayed import delayed
from odc.geo import Resolution, xy_
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from scipy import ndimage

from pipeline.cube import kernels
from pipeline.cube.items import DEM_ASSET, DEM_FILL_PX, _declared_epsg, _options, check_dem_items, transformer
from pipeline.cube.lattice import AnchoredLattice

#: Output pixels between the nodes of the lattice on which output pixel centres are transformed
#: into a DEM in another CRS (:func:`lattice_coordinates`); measured error 6e-5 native pixel.
DEM_LATTICE: Final[int] = 32
#: The 8 neighbours of a pixel, ``(dy, dx)``.
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _one_group(item: pystac.Item, parsed: Any, idx: int) -> int:
    """odc-stac groupby key putting every DEM tile into one plane (tiles do not overlap)."""
    return 0


def fill_seams(heights: np.ndarray, iterations: int = DEM_FILL_PX) -> np.ndarray:
    """Fill NaN pixels with the mean of their finite 8-neighbours, ``iterations`` times.

    Each pass fills the NaN pixels that touch at least one finite pixel, so gaps up to
    ``2 * iterations`` pixels wide close; larger holes keep a NaN core. Pixels outside the array
    count as absent. Only the pixels on the edge of a gap are visited (gathered by index), so a
    DEM without seams costs one ``isnan`` pass and a large NaN area costs its perimeter.

    Returns:
        A float32 copy of ``heights`` (the input itself when it has no NaN and is float32).
    """
    values = heights if heights.dtype == np.float32 else heights.astype(np.float32)
    missing = np.isnan(values)
    if iterations <= 0 or not missing.any():
        return values
    values = values.copy()
    h, w = values.shape
    for _ in range(iterations):
        finite = ~missing
        touch = np.zeros_like(missing)
        for dy, dx in _NEIGHBOURS:
            ys, yd = (slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0)))
            xs, xd = (slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
            touch[yd, xd] |= finite[ys, xs]
        rows, cols = np.nonzero(missing & touch)
        if rows.size == 0:
            break
        total = np.zeros(rows.size, dtype=np.float64)
        count = np.zeros(rows.size, dtype=np.float64)
        for dy, dx in _NEIGHBOURS:
            r, c = rows + dy, cols + dx
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            v = np.zeros(rows.size, dtype=np.float64)
            v[inside] = values[r[inside], c[inside]]
            ok = inside & np.isfinite(v)
            total += np.where(ok, v, 0.0)
            count += ok
        values[rows, cols] = (total / count).astype(np.float32)
        missing[rows, cols] = False
    return values


def fill_small_gaps(dem: xr.DataArray, max_px: int = DEM_FILL_PX) -> xr.DataArray:
    """Close small NaN gaps (tile seams) in a 2-D DEM by iterated neighbour means (:func:`fill_seams`).

    The whole array is one block (a DEM is read once per region), so the result does not depend
    on chunking.
    """
    if max_px <= 0:
        return dem
    data = dem.data if isinstance(dem.data, da.Array) else da.from_array(dem.data, chunks=-1)
    filled = data.rechunk(-1).map_blocks(fill_seams, max_px, dtype=np.float32)
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


def _is_run(idx: np.ndarray) -> bool:
    """Whether ``idx`` is ``a, a+1, ..., a+n-1`` (n >= 1)."""
    return idx.size > 0 and int(idx[-1]) - int(idx[0]) == idx.size - 1 and bool((np.diff(idx) == 1).all())


def _bilinear_separable(native: np.ndarray, row_f: np.ndarray, col_f: np.ndarray) -> np.ndarray:
    """Bilinear sample at the outer product of 1-D fractional rows and columns (pixel-centre units).

    Taps with zero weight are not read, so a sample that falls exactly on a native pixel centre is
    that pixel's value even beside a NaN; outside the array is NaN.
    """
    h, w = native.shape
    pr, pc = row_f - 0.5, col_f - 0.5
    r0, c0 = np.floor(pr).astype(np.intp), np.floor(pc).astype(np.intp)
    wr, wc = pr - r0, pc - c0
    r1, c1 = np.where(wr > 0, r0 + 1, r0), np.where(wc > 0, c0 + 1, c0)
    rows_ok = (r0 >= 0) & (r1 < h)
    cols_ok = (c0 >= 0) & (c1 < w)
    r0c, r1c = np.clip(r0, 0, h - 1), np.clip(r1, 0, h - 1)
    c0c, c1c = np.clip(c0, 0, w - 1), np.clip(c1, 0, w - 1)
    if not (wr.any() or wc.any()):  # the grids coincide: a gather (a slice when contiguous)
        if _is_run(r0c) and _is_run(c0c):
            out = native[r0c[0] : r0c[-1] + 1, c0c[0] : c0c[-1] + 1].astype(np.float32, copy=True)
        else:
            out = native[np.ix_(r0c, c0c)].astype(np.float32)
    else:
        top = native[np.ix_(r0c, c0c)] * (1.0 - wc) + np.where(wc > 0, native[np.ix_(r0c, c1c)] * wc, 0.0)
        bottom = native[np.ix_(r1c, c0c)] * (1.0 - wc) + np.where(wc > 0, native[np.ix_(r1c, c1c)] * wc, 0.0)
        wr2 = wr[:, None]
        out = (top * (1.0 - wr2) + np.where(wr2 > 0, bottom * wr2, 0.0)).astype(np.float32)
    out[~rows_ok, :] = np.nan
    out[:, ~cols_ok] = np.nan
    return out


def lattice_coordinates(
    native_box: GeoBox,
    out_box: GeoBox,
    rows: tuple[int, int],
    cols: tuple[int, int],
    step: int = DEM_LATTICE,
    shift: float = 0.0,
) -> np.ndarray:
    """Native fractional ``(row, col)`` of the output pixel centres of a window, via a coarse lattice.

    The centres of the lattice nodes (every ``step`` output pixels, anchored to the CRS's pixel
    lattice, not to the window) are transformed exactly with pyproj; every pixel's coordinates
    are interpolated bilinearly from its four nodes. A pixel's result depends only on
    its nodes, so it does not depend on the window (block or region) that asks for it. The error
    against the exact transform is below 1e-4 native pixel for a UTM grid and a 1 arc-second DEM
    (measured 6e-5; ``tests/test_cube_pc_scene.py`` checks <= 0.01): bilinear interpolation of the
    smooth projection over ``step`` pixels errs by about ``step**2 / 8`` times its second
    derivative. float64 throughout: float32 coordinates (1e-3 px) moved heights by centimetres on
    steep slopes between two regions' DEM windows.

    Args:
        native_box: The DEM's grid.
        out_box: The output grid (north-up).
        rows: Output rows ``[start, stop)``.
        cols: Output columns ``[start, stop)``.
        step: Output pixels between lattice nodes.
        shift: Subtracted from both coordinates (0.5 gives pixel-centre units).

    Returns:
        float64 ``(2, h, w)``: native row and column coordinates in pixel-edge units (the centre
        of native pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``), less ``shift``.
    """
    lattice = AnchoredLattice.of(str(native_box.crs), native_box.transform, out_box, rows, cols, step, shift)
    out = np.empty((2, rows[1] - rows[0], cols[1] - cols[0]), dtype=np.float64)
    for r0, r1 in lattice.bands():
        lattice.fill(out[:, r0:r1], r0, r1)
    return out


def resample_block(
    native: np.ndarray, native_box: GeoBox, out_box: GeoBox, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Bilinear sample of ``native`` at the pixel centres of a window of ``out_box``.

    Each output pixel centre is mapped to the native grid and interpolated from its four native
    neighbours, so a pixel's value does not depend on how the output is chunked. When both grids
    share a CRS and are axis-aligned (a UTM DEM, the demo's), the mapping is separable and the
    interpolation runs on 1-D coordinates (a plain gather when the grids coincide); otherwise (a
    GLO-30 DEM in EPSG:4326) the centres are located through a coarse lattice
    (:func:`lattice_coordinates`) and interpolated with ``scipy.ndimage.map_coordinates``'s
    rule (``order=1, mode="constant"``), bit for bit, by a compiled loop that computes each
    pixel's coordinates from its nodes on the fly (:func:`pipeline.cube.kernels.sample_bilinear`).
    NaN outside the native array or next to NaN.
    """
    t = out_box.transform
    inv = ~native_box.transform
    assert out_box.crs is not None and native_box.crs is not None
    if out_box.crs == native_box.crs and t.b == t.d == 0 and inv.b == inv.d == 0:
        x = t.c + t.a * (np.arange(*cols) + 0.5)
        y = t.f + t.e * (np.arange(*rows) + 0.5)
        return _bilinear_separable(native, inv.e * y + inv.f, inv.a * x + inv.c)
    if t.b == t.d == 0:
        crs = str(native_box.crs)
        lattice = AnchoredLattice.of(crs, native_box.transform, out_box, rows, cols, DEM_LATTICE, 0.5)
        out = np.empty((rows[1] - rows[0], cols[1] - cols[0]), dtype=np.float32)
        fr0, fr1 = lattice.fr0.ravel(), lattice.fr1.ravel()
        kernels.sample_bilinear(native, *lattice.across, lattice.left_r, fr0, fr1, out)
        return out
    # a rotated output grid: every centre transformed
    cc, rr = np.meshgrid(np.arange(*cols) + 0.5, np.arange(*rows) + 0.5)
    x = t.c + t.a * cc + t.b * rr
    y = t.f + t.d * cc + t.e * rr
    lon, lat = transformer(str(out_box.crs), str(native_box.crs)).transform(x, y)
    col_f, row_f = inv * (lon, lat)
    coords = np.stack([np.asarray(row_f) - 0.5, np.asarray(col_f) - 0.5])
    return ndimage.map_coordinates(native, coords, order=1, mode="constant", cval=np.nan).astype(np.float32)


def load_native_dem(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    *,
    fill_px: int = DEM_FILL_PX,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    gdal_options: Mapping[str, str] | None = None,
) -> tuple[da.Array, GeoBox]:
    """The DEM over ``geobox`` on its own grid, seams filled: one lazy block and its grid.

    Raises:
        CubeError: On items that do not fit (see :func:`pipeline.cube.check_dem_items`).
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
    native = ds[DEM_ASSET].data[0].rechunk(-1)
    return native.map_blocks(fill_seams, max(fill_px, 0), dtype=np.float32), native_box


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

    1. odc-stac reads asset ``data`` of every tile once on the DEM's **own** grid over the area
       (:func:`_native_grid`: no resampling, tiles fused into one plane);
    2. :func:`fill_seams` closes the 1-pixel NaN seams Copernicus DEM tiles can have;
    3. each output chunk is sampled bilinearly at its pixel centres (:func:`resample_block`).

    Resampling per output pixel, rather than letting the reader warp per chunk, makes the DEM
    (and the slope) identical whatever the chunking, so sweeps with different block sizes agree.

    Args:
        items: ``cop-dem-glo-30`` items.
        geobox: The output grid (the Sentinel-2 grid).
        chunk: Spatial chunk size in pixels.
        fill_px: Reach of the seam fill in native pixels (0 disables it).
        fail_on_error: Passed to odc-stac (unreadable tiles become NaN when False).
        patch_url: Optional href rewrite (signing).
        gdal_options: GDAL configuration for the reads (see :func:`pipeline.cube.load_s2`).

    Returns:
        DataArray ``dem`` with dims ``(y, x)``.

    Raises:
        CubeError: On items that do not fit (see :func:`pipeline.cube.check_dem_items`).

    """
    native, native_box = load_native_dem(
        items, geobox, fill_px=fill_px, fail_on_error=fail_on_error, patch_url=patch_url,
        gdal_options=gdal_options,
    )  # fmt: skip
    native_d = native.to_delayed().ravel()[0]
    blocks = [
        [
            da.from_delayed(
                delayed(resample_block)(native_d, native_box, geobox, r, c),
                shape=(r[1] - r[0], c[1] - c[0]),
                dtype=np.float32,
            )
            for c in bounds(geobox.shape[1], chunk)
        ]
        for r in bounds(geobox.shape[0], chunk)
    ]
    dem = xr.DataArray(da.block(blocks), dims=("y", "x"), coords=xr_coords(geobox), name="dem")
    dem.attrs = {"units": "m", "long_name": "height above the EGM2008 geoid"}
    return dem


def bounds(size: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of consecutive chunks of ``chunk`` along an axis of ``size``."""
    return [(a, min(a + chunk, size)) for a in range(0, size, chunk)]


def slope_block(block: np.ndarray, resolution: float) -> np.ndarray:
    """Slope in degrees of a 2-D height block: ``degrees(atan(hypot(dz/dy, dz/dx)))``, float32.

    Central differences ``(z[i+1] - z[i-1]) / (2 r)`` inside the block and one-sided
    ``(z[1] - z[0]) / r`` at its edges (``np.gradient``'s rule), all in float32: the heights are
    float32 already, so the differences are exact and the slope differs from a float64
    computation by a few 1e-6 degrees (measured max 1.5e-5), for half the time.
    """
    if min(block.shape) < 2:
        return np.full(block.shape, np.nan, dtype="float32")
    z = block if block.dtype == np.float32 else block.astype(np.float32)
    r = np.float32(resolution)
    gy = np.empty(z.shape, dtype=np.float32)  # C-contiguous, as kernels.hypot32 wants
    gx = np.empty(z.shape, dtype=np.float32)
    np.subtract(z[2:], z[:-2], out=gy[1:-1])
    np.divide(gy[1:-1], np.float32(2) * r, out=gy[1:-1])
    np.divide(z[1] - z[0], r, out=gy[0])
    np.divide(z[-1] - z[-2], r, out=gy[-1])
    np.subtract(z[:, 2:], z[:, :-2], out=gx[:, 1:-1])
    np.divide(gx[:, 1:-1], np.float32(2) * r, out=gx[:, 1:-1])
    np.divide(z[:, 1] - z[:, 0], r, out=gx[:, 0])
    np.divide(z[:, -1] - z[:, -2], r, out=gx[:, -1])
    kernels.hypot32(gx, gy, gx)  # np.hypot's float32 values, ~10x faster
    np.arctan(gx, out=gx)
    np.multiply(gx, np.float32(180.0 / np.pi), out=gx)
    return gx


def _map_overlap_2d(func: Callable[..., np.ndarray], arr: da.Array, depth: int, **kwargs: Any) -> da.Array:
    meta = np.array((), dtype=np.float32)
    out = da.map_overlap(func, arr, depth=depth, boundary="none", dtype=np.float32, meta=meta, **kwargs)
    return out if out.chunks == arr.chunks else out.rechunk(arr.chunks)


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
    slope = _map_overlap_2d(slope_block, data, 1, resolution=abs(float(resolution)))
    return xr.DataArray(slope, dims=dem.dims, coords=dem.coords, name="slope_deg", attrs={"units": "degree"})
