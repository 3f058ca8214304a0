"""The model-input cube: every per-pixel step fused into one task per block.

For each spatial block one task takes the block's uint16 digital numbers of every band and date
(read by odc-stac, all dates of a band in one read), its clear mask (computed with a halo of the
dilation radius) and the region's native DEM, and writes one float32 array ``(LAYERS, h, w)``:
the ``SWEEP_BANDS`` in L4S scaling, then ``slope_deg``. ``valid`` is where the bands are finite
and ``n_clear`` a sum over the clear mask, both computed only when asked for. The DEM of the
block and a one-pixel ring around it is resampled from the native grid inside the task, so the
slope needs no overlap exchange; nothing is concatenated along time or bands, and the model's
stack is a view of the first ``len(SWEEP_BANDS)`` layers.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import dask.array as da
import numpy as np
import pystac
import xarray as xr
from dask.delayed import delayed
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from pipeline.bands import L4S_DIVISORS, SWEEP_BANDS
from pipeline.cube import kernels
from pipeline.cube.dem import bounds, load_native_dem, resample_block, slope_block
from pipeline.cube.direct import BandReads, ClearReads, plan_bands
from pipeline.cube.items import SCL_ASSET, CubeError, check_s2_items
from pipeline.cube.s2 import (
    clear_mask,
    composite_block,
    load_s2,
    slice_offsets,
    solar_day_offsets,
    solar_day_slices,
)

#: Layers of the fused array, in order (the model stack is the leading ``SWEEP_BANDS``).
LAYERS: Final[tuple[str, ...]] = (*SWEEP_BANDS, "slope_deg")
#: Spectral bands of the cube, in ``SWEEP_BANDS`` order.
SPECTRAL: Final[tuple[str, ...]] = tuple(b for b in SWEEP_BANDS if b.startswith("B"))


@dataclass(frozen=True)
class BlockGrid:
    """What a block task needs to know besides its pixels.

    Attributes:
        geobox: The whole output grid.
        native_box: The DEM's native grid.
        offsets: DN offset of each time slice.
        resolution: Output pixel size (metres) for the slope.
    """

    geobox: GeoBox
    native_box: GeoBox
    offsets: tuple[int, ...]
    resolution: float


def cube_block(
    clear: np.ndarray | ClearReads,
    *dn_and_dem: np.ndarray | BandReads,
    grid: BlockGrid,
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> np.ndarray:
    """Compute every layer of one block (see the module docstring); ``dn_and_dem = (*bands, native)``.

    ``clear`` and each band are either arrays (read by odc-stac) or direct reads
    (:mod:`pipeline.cube.direct`), carried out here one band at a time, so only one band's
    digital numbers are in memory at once.
    """
    *dns, native = dn_and_dem
    if isinstance(clear, ClearReads):
        clear = clear.read(rows, cols)
    assert isinstance(native, np.ndarray)
    h, w = rows[1] - rows[0], cols[1] - cols[0]
    full_h, full_w = grid.geobox.shape
    ext_r = (max(rows[0] - 1, 0), min(rows[1] + 1, full_h))
    ext_c = (max(cols[0] - 1, 0), min(cols[1] + 1, full_w))
    dem_ext = resample_block(native, grid.native_box, grid.geobox, ext_r, ext_c)
    inner = (
        slice(rows[0] - ext_r[0], rows[0] - ext_r[0] + h),
        slice(cols[0] - ext_c[0], cols[0] - ext_c[0] + w),
    )
    slope = slope_block(dem_ext, grid.resolution)[inner]
    dem = dem_ext[inner]

    out = np.empty((len(LAYERS), h, w), dtype=np.float32)
    valid = np.isfinite(dem)
    valid &= np.isfinite(slope)
    divisors = [L4S_DIVISORS[name] for name in SWEEP_BANDS]  # the spectral bands lead SWEEP_BANDS
    buffer: np.ndarray | None = None  # one band's digital numbers at a time, in one buffer
    for i, source in enumerate(dns):
        if isinstance(source, BandReads):
            if buffer is None:
                buffer = np.empty((len(source.slices), h, w), dtype=np.uint16)
            dn = source.read(rows, cols, out=buffer)
        else:
            dn = source
        composite_block(
            dn, clear, grid.offsets, out[i], mask=False, divisor=divisors[i], valid=valid
        )  # fmt: skip
    nb = len(SWEEP_BANDS)
    for i, name in enumerate(SWEEP_BANDS):  # the spectral bands are scaled already
        if name in ("slope", "dem"):
            np.divide(slope if name == "slope" else dem, np.float32(L4S_DIVISORS[name]), out=out[i])
    kernels.nan_where_invalid(out[:nb], valid)  # NaN where not valid, in every layer
    out[nb] = slope
    return out


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
    direct_reads: bool = True,
) -> xr.Dataset:
    """Lazy model-input cube on ``geobox`` in Landslide4Sense scaling.

    ``cube[b] = composite_DN[b] / L4S_DIVISORS[b]`` for the Sentinel-2 bands of ``SWEEP_BANDS``,
    ``cube["slope"] = slope_deg / L4S_DIVISORS["slope"]``, ``cube["dem"] = dem_m /
    L4S_DIVISORS["dem"]``; all float32 and NaN where ``valid`` is False, with
    ``valid = n_clear > 0 and all composite bands finite and dem finite and slope finite``.
    ``composite_DN`` is the median of the clear harmonised observations
    (:func:`pipeline.cube.composite_block`), the DEM is resampled per output pixel from one native
    read (:func:`pipeline.cube.resample_block`) and the slope is taken by central differences
    (:func:`pipeline.cube.slope_block`), one-sided on the grid's outer edge.

    Args:
        s2_items: Post-event ``sentinel-2-l2a`` items (signed if needed).
        dem_items: ``cop-dem-glo-30`` tiles covering the grid.
        geobox: Output UTM grid (:func:`pipeline.cube.utm_geobox`).
        chunk: Spatial chunk size of every variable (values do not depend on it).
        dilate_px: Cloud/shadow dilation radius in pixels.
        fail_on_error: odc-stac's switch. With False an unreadable scene loads as nodata
            (SCL 0 -> not clear) and an unreadable DEM tile as NaN, so those pixels are simply
            not valid instead of failing the whole region.
        patch_url: Optional href rewrite applied at read time.
        gdal_options: GDAL configuration for every read (default: the read policy's).
        direct_reads: Read assets that lie on the grid directly (:mod:`pipeline.cube.direct`);
            False sends every read through odc-stac (same values; for comparisons).

    Returns:
        Dataset with dims ``(y, x)``: the ``SWEEP_BANDS`` variables, ``valid`` (bool),
        ``slope_deg`` (float32 degrees), ``n_clear`` (uint8), and ``layers`` (dims
        ``(layer, y, x)``, the fused array the others are views of, see :data:`LAYERS`); a
        ``spatial_ref`` coordinate; attributes ``landslide:scene_ids`` and ``landslide:dem_ids``.

    Raises:
        CubeError: On inputs that do not fit.

    """
    if dilate_px < 0:
        raise CubeError(f"dilate_px must be >= 0, got {dilate_px}")
    s2_items, dem_items = list(s2_items), list(dem_items)
    check_s2_items(s2_items, SPECTRAL)
    names = (*SPECTRAL, SCL_ASSET)
    days = solar_day_slices(s2_items, geobox) if direct_reads else None
    direct = (
        plan_bands(
            s2_items,
            geobox,
            names,
            nearest=(SCL_ASSET,),
            gdal_options=gdal_options,
            fail_on_error=fail_on_error,
            patch_url=patch_url,
            days=days,
        )
        if direct_reads
        else dict.fromkeys(names)
    )
    warped = [band for band in SPECTRAL if direct[band] is None]
    scl_reads = direct[SCL_ASSET]
    if warped or scl_reads is None:  # odc-stac reads (and warps) what is not on the grid
        raw = load_s2(
            s2_items, geobox, chunk, warped, fail_on_error=fail_on_error, patch_url=patch_url,
            gdal_options=gdal_options, time_chunk=-1,
        )  # fmt: skip
        offsets = tuple(slice_offsets(raw, s2_items))
    else:
        offsets = tuple(solar_day_offsets(s2_items, geobox, days=days).values())
    native, native_box = load_native_dem(
        dem_items, geobox, fail_on_error=fail_on_error, patch_url=patch_url, gdal_options=gdal_options
    )
    row_bounds, col_bounds = bounds(geobox.shape[0], chunk), bounds(geobox.shape[1], chunk)
    token = uuid.uuid4().hex  # names the tasks built from this call's reads (see ``shared``)
    if scl_reads is not None:
        clear_reads = ClearReads(scl_reads, dilate_px)
        clear: Any = [[clear_reads] * len(col_bounds) for _ in row_bounds]
        count = delayed(clear_reads.count, name=f"cube-clear-count-{token}", pure=True)
        n_clear = da.block([
            [
                da.from_delayed(
                    count(r, c),
                    shape=(r[1] - r[0], c[1] - c[0]),
                    dtype=np.uint8,
                )
                for c in col_bounds
            ]
            for r in row_bounds
        ])  # fmt: skip
    else:
        clear_mask_da = clear_mask(raw[SCL_ASSET], dilate_px).data
        clear = clear_mask_da.to_delayed(optimize_graph=False)[0]
        n_clear = da.minimum(clear_mask_da.sum(axis=0, dtype=np.uint16), 255).astype(np.uint8)
    bands: list[Any] = [
        direct[b] if direct[b] is not None else raw[b].data.to_delayed(optimize_graph=False)[0]
        for b in SPECTRAL
    ]
    native_d = native.to_delayed(optimize_graph=False).ravel()[0]
    grid = BlockGrid(geobox, native_box, offsets, abs(float(geobox.resolution.x)))

    def source(b: Any, i: int, j: int) -> Any:
        return b if isinstance(b, BandReads | ClearReads) else b[i, j]

    # Direct reads are the same for every block: one function holding them all, its tasks keyed
    # by the block (a plain argument list would be walked and tokenized asset by asset per block).
    shared = None
    if all(isinstance(b, BandReads | ClearReads) for b in (clear[0][0], *bands)):
        reads = functools.partial(cube_block, clear[0][0], *bands, grid=grid)
        shared = delayed(reads, name=f"cube-{token}", pure=True)

    def block_task(i: int, j: int, r: tuple[int, int], c: tuple[int, int]) -> Any:
        """The task of block ``(i, j)`` (output rows ``r``, columns ``c``)."""
        if shared is not None:
            return shared(native_d, rows=r, cols=c)
        return delayed(cube_block, pure=True)(
            clear[i][j], *(source(b, i, j) for b in bands), native_d, grid=grid, rows=r, cols=c
        )

    blocks = [
        [
            da.from_delayed(
                block_task(i, j, r, c),
                shape=(len(LAYERS), r[1] - r[0], c[1] - c[0]),
                dtype=np.float32,
            )
            for j, c in enumerate(col_bounds)
        ]
        for i, r in enumerate(row_bounds)
    ]
    layers = da.block([[[blk for blk in row] for row in blocks]])
    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    yx, gm = ("y", "x"), {"grid_mapping": "spatial_ref"}
    # Variables as (dims, data, attrs) tuples: xarray builds and aligns the coordinates once.
    variables: dict[str, Any] = {
        name: (yx, layers[k], {"units": "L4S", "l4s_divisor": L4S_DIVISORS[name], **gm})
        for k, name in enumerate(SWEEP_BANDS)
    }
    nb = len(SWEEP_BANDS)
    # Every band is NaN exactly where the pixel is not valid, so the first one says which are.
    variables["valid"] = (yx, da.isfinite(layers[0]), gm)
    variables["slope_deg"] = (yx, layers[nb], {"units": "degree", **gm})
    variables["n_clear"] = (yx, n_clear, gm)
    variables["layers"] = (("layer", *yx), layers, gm)
    attrs = {
        "landslide:scene_ids": [item.id for item in s2_items],
        "landslide:dem_ids": [item.id for item in dem_items],
        "landslide:dilate_px": dilate_px,
    }
    return xr.Dataset(variables, coords={**coords, "layer": list(LAYERS)}, attrs=attrs)


def stack_bands(cube: xr.Dataset, bands: Sequence[str]) -> da.Array:
    """Model input stack ``(band, y, x)`` float32 in the order of ``bands``.

    From a cube of :func:`build_cube` this is a view of its fused ``layers`` (no copy when
    ``bands`` is ``SWEEP_BANDS``, one gather per block otherwise); any other Dataset is stacked.

    Raises:
        CubeError: Naming the first band the cube lacks.

    """
    for band in bands:
        if band not in cube.data_vars:
            raise CubeError(f"band {band!r} not in the cube (has {sorted(map(str, cube.data_vars))})")
    if "layers" in cube.data_vars and isinstance(cube["layers"].data, da.Array):
        names = [str(v) for v in cube["layers"].coords["layer"].values]
        idx = [names.index(b) for b in bands]
        layers: da.Array = cube["layers"].data
        if idx == list(range(len(idx))):
            return layers[: len(idx)]
        return layers[idx]
    arrays = [
        cube[b].data if isinstance(cube[b].data, da.Array) else da.from_array(cube[b].data) for b in bands
    ]
    return da.stack([a.astype("float32") for a in arrays], axis=0)
