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
from pipeline.cube.dem import bounds, load_native_dem, resample_block, slope_block
from pipeline.cube.items import S2_NODATA, SCL_ASSET, CubeError
from pipeline.cube.s2 import clear_mask, composite_block, load_s2, slice_offsets

#: Layers of the fused array, in order (the model stack is the leading ``SWEEP_BANDS``).
LAYERS: Final[tuple[str, ...]] = (*SWEEP_BANDS, "slope_deg")
#: Pixels per strip of the multi-date median (about 256 KiB per float32 temporary).
STRIP_PIXELS: Final[int] = 65536
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
    clear: np.ndarray, *dn_and_dem: np.ndarray, grid: BlockGrid, rows: tuple[int, int], cols: tuple[int, int]
) -> np.ndarray:
    """Compute every layer of one block (see the module docstring); ``dn_and_dem = (*bands, native)``."""
    *dns, native = dn_and_dem
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
    t = clear.shape[0]
    if t == 1:
        valid &= clear[0]
        lowest = dns[0][0].copy()
        for dn in dns[1:]:
            np.minimum(lowest, dn[0], out=lowest)
        valid &= lowest != S2_NODATA
    # Several dates: the median works through a dozen temporaries per band, so it runs on strips
    # of rows small enough for the CPU caches (the result does not depend on the strip height).
    step = h if t == 1 else max(1, STRIP_PIXELS // max(w, 1))
    for i, dn in enumerate(dns):
        for r in range(0, h, step):
            rs = slice(r, min(r + step, h))
            composite_block(dn[:, rs], clear[:, rs], grid.offsets, out[i, rs], mask=False)
        if t > 1:
            valid &= np.isfinite(out[i])
    nb = len(SWEEP_BANDS)
    for i, name in enumerate(SWEEP_BANDS):
        source = slope if name == "slope" else dem if name == "dem" else out[i]
        np.divide(source, np.float32(L4S_DIVISORS[name]), out=out[i])
    if not valid.all():  # NaN where not valid, by multiplying with 1 or NaN (a masked copy is ~20x slower)
        nan_or_one = np.array([np.nan, 1.0], dtype=np.float32)[valid.view(np.uint8)]
        np.multiply(out[:nb], nan_or_one, out=out[:nb])
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
    raw = load_s2(
        s2_items, geobox, chunk, SPECTRAL, fail_on_error=fail_on_error, patch_url=patch_url,
        gdal_options=gdal_options, time_chunk=-1,
    )  # fmt: skip
    offsets = tuple(slice_offsets(raw, s2_items))
    native, native_box = load_native_dem(
        dem_items, geobox, fail_on_error=fail_on_error, patch_url=patch_url, gdal_options=gdal_options
    )
    clear_da = clear_mask(raw[SCL_ASSET], dilate_px).data
    clear = clear_da.to_delayed(optimize_graph=False)
    bands = [raw[b].data.to_delayed(optimize_graph=False) for b in SPECTRAL]
    native_d = native.to_delayed(optimize_graph=False).ravel()[0]
    grid = BlockGrid(geobox, native_box, offsets, abs(float(geobox.resolution.x)))
    blocks = [
        [
            da.from_delayed(
                delayed(cube_block, pure=True)(
                    clear[0, i, j], *(b[0, i, j] for b in bands), native_d, grid=grid, rows=r, cols=c
                ),
                shape=(len(LAYERS), r[1] - r[0], c[1] - c[0]),
                dtype=np.float32,
            )
            for j, c in enumerate(bounds(geobox.shape[1], chunk))
        ]
        for i, r in enumerate(bounds(geobox.shape[0], chunk))
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
    variables["n_clear"] = (yx, da.minimum(clear_da.sum(axis=0, dtype=np.uint16), 255).astype(np.uint8), gm)
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
