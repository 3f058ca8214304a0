"""Lazy analysis-ready cube: Sentinel-2 L2A composite + Copernicus DEM terrain on one UTM grid.

The cube is the only place pixels are read. Everything here builds a Dask graph; nothing is read
or computed until the caller asks (``.compute()``, ``to_zarr`` or ``map_overlap`` in the sweep).

Pipeline, per output pixel ``(y, x)`` of a UTM :class:`~odc.geo.geobox.GeoBox`:

1. ``load_s2``: odc-stac reads the spectral bands and SCL of every item onto the grid
   (bilinear for reflectance, nearest for the class map), one time slice per solar day; the
   cube reads all dates of a band's block in one task.
2. ``harmonise``: ``DN_h = max(DN - offset(baseline), 0)`` with ``offset = 1000`` from
   processing baseline 04.00 on (``pipeline.bands.dn_offset``); nodata (``DN == 0``) -> NaN.
3. ``clear_mask``: ``clear = SCL not in SCL_INVALID and not within dilate_px of SCL_DILATE``.
4. ``composite``: per-pixel median over the clear observations; ``n_clear`` counts them.
5. ``load_dem`` + ``slope_degrees``: the DEM read once on its own grid, small NaN seams filled,
   bilinear per output pixel onto the same grid;
   ``slope = degrees(atan(hypot(dz/dx, dz/dy)))`` with central differences.
6. ``build_cube``: everything in Landslide4Sense scaling ``value / L4S_DIVISORS[name]``,
   NaN where ``valid`` is False.

``build_cube`` runs steps 2-6 as one fused task per block (:mod:`pipeline.cube.fused`): the
block's digital numbers go straight into the final float32 layers, nothing is concatenated along
time or bands, and the model stack is a view of the result. Neighbourhood operations see the
true neighbours of every pixel: the cloud dilation through ``map_overlap`` with a halo of its
radius and ``boundary="none"``, the slope from DEM values resampled for the block plus a
one-pixel ring, the seam fill on the whole native DEM. The array edge is treated exactly like an
unchunked computation treats it, so results do not depend on the chunking.

Modules: :mod:`~pipeline.cube.items` (collections, item checks, read policy, pre-flight),
:mod:`~pipeline.cube.grid` (the UTM grid), :mod:`~pipeline.cube.s2` (reading, harmonisation,
clear mask, composite), :mod:`~pipeline.cube.dem` (DEM and slope), :mod:`~pipeline.cube.fused`
(the cube). Everything public is re-exported here.
"""

from pipeline.cube.dem import (
    _native_grid,
    bounds,
    fill_seams,
    fill_small_gaps,
    load_dem,
    load_native_dem,
    resample_block,
    slope_block,
    slope_degrees,
)
from pipeline.cube.fused import LAYERS, BlockGrid, build_cube, cube_block, stack_bands
from pipeline.cube.grid import utm_geobox, utm_zone_epsg
from pipeline.cube.items import (
    DEM_ASSET,
    DEM_COLLECTION,
    DEM_FILL_PX,
    READ_POLICY,
    S2_COLLECTION,
    S2_NODATA,
    SCL_ASSET,
    CubeError,
    HeaderReader,
    ReadPolicy,
    SkippedScene,
    check_dem_items,
    check_s2_items,
    preflight,
    preflight_dem,
    preflight_s2,
    redact,
)
from pipeline.cube.s2 import (
    clear_block,
    clear_mask,
    composite,
    composite_block,
    dilate_disk,
    disk,
    harmonise,
    load_s2,
    slice_offsets,
    solar_day_offsets,
)

__all__ = [
    "DEM_ASSET", "DEM_COLLECTION", "DEM_FILL_PX", "LAYERS", "READ_POLICY", "S2_COLLECTION", "S2_NODATA",
    "SCL_ASSET", "BlockGrid", "CubeError", "HeaderReader", "ReadPolicy", "SkippedScene", "_native_grid",
    "bounds", "build_cube", "check_dem_items", "check_s2_items", "clear_block", "clear_mask", "composite",
    "composite_block", "cube_block", "dilate_disk", "disk", "fill_seams", "fill_small_gaps", "harmonise",
    "load_dem", "load_native_dem", "load_s2", "preflight", "preflight_dem", "preflight_s2", "redact",
    "resample_block", "slice_offsets", "slope_block", "slope_degrees", "solar_day_offsets", "stack_bands",
    "utm_geobox", "utm_zone_epsg",
]  # fmt: skip
