"""Direct COG reads for the cube: one windowed read per source, straight into the block's buffer.

Sentinel-2 as Planetary Computer serves it has three kinds of asset on a 10 m UTM output grid,
and each is read here without odc-stac's per-chunk machinery:

* **on the grid** (10 m bands in the output's zone, whole-pixel offset): the window is read by
  GDAL into the block's rows and columns; resampling is the identity;
* **on the lattice** (20 m and 60 m bands and the 20 m SCL in the output's zone, pixels a whole
  multiple of the output's with edges on its lattice): the window is read once and upsampled,
  SCL by repeating pixels (nearest), the spectral bands with the fixed separable bilinear weights
  GDAL's warper uses (:mod:`pipeline.cube.upsample`; equal to odc-stac's bilinear read within 1 DN);
* **needing a warp** (another UTM zone, off the lattice, finer than the output): resampled by
  :mod:`pipeline.cube.reproject` (:meth:`BandReads._reproject`): source coordinates from an exact
  transform on a lattice anchored to the CRS's pixel lattice, GDAL's 4-sample bilinear rules (or
  nearest for SCL), taps and weights computed once per source grid and block and shared by the
  bands on that grid, only the pixels earlier assets of the day left empty; each pixel's value
  depends on neither the block nor the region's grid, and is GDAL's exact-transformer warp's
  within 1 DN (tested). What it does not do (a source finer than the output beyond 5 %: GDAL's
  wider kernel and odc-stac's overviews; a rotated output grid; a file without a CRS) falls
  back to odc-stac's own read of one source (``odc.loader``'s ``rio_read``: GDAL's warp with
  the band's resampling and nodata, overviews when shrinking), run on fixed tiles of
  :data:`WARP_TILE` output pixels anchored to the CRS's pixel lattice, so that too does not
  depend on the block (GDAL's warp of a window depends on the window: its approximate
  transformer and its choice of kernel follow the window's extent).

:func:`plan_bands` decides which from the items' STAC ``proj:`` metadata alone (pure code); the
reads run inside the cube's block task (:meth:`BandReads.read`), each file opened once per cube
and thread (:mod:`pipeline.cube.handles`). A file whose real grid turns out
to differ from its metadata is reprojected (or warped) the same way. A band falls back to
odc-stac as a whole only when an item lacks it.

Time slices and the order of items within one are odc-stac's (``groupby="solar_day"``; items
sorted by time, then id; the first valid pixel wins), so the two readers agree: within 1 DN,
and where the next zone is reprojected within the bound its transformer's error allows (tested).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import odc.stac
import pystac
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.loader._rio import _do_read, _reproject_info_from_rio, rio_env, rio_read
from odc.loader.types import RasterLoadParams, RasterSource
from rasterio.windows import Window

from pipeline.cube import handles, kernels
from pipeline.cube.items import S2_NODATA, _options, redact, transformer
from pipeline.cube.reproject import SourceGrid, cached_lattice, reproject_into, supported
from pipeline.cube.s2 import DaySlices, clear_block, solar_day_slices
from pipeline.cube.upsample import axis_taps, upsample_bilinear

log = logging.getLogger(__name__)

#: Largest difference (output pixels) between an asset's origin and a whole pixel still "aligned".
ALIGN_TOL: Final[float] = 1e-6
#: Largest pixel-size ratio upsampled bilinearly without a warp (exact integer arithmetic up to 8).
MAX_FACTOR: Final[int] = 8
#: Side (output pixels) of the fixed tiles that assets needing a warp are warped on.
WARP_TILE: Final[int] = 512
#: Output pixels added around a warped asset's footprint when deciding which tiles it touches.
FOOTPRINT_PAD: Final[int] = 2
#: Numbers the :func:`plan_bands` calls of this process.
_PLANS: Final[Iterator[int]] = itertools.count(1)


@dataclass(frozen=True)
class AlignedAsset:
    """One asset whose pixels fall on the output grid's lattice.

    Output pixel ``(i, j)`` lies in source pixel ``((i + row_shift) // factor, (j + col_shift) //
    factor)``; with nearest-neighbour resampling it takes that pixel's value, with bilinear the
    value of :func:`pipeline.cube.upsample.upsample_bilinear`.

    Attributes:
        href: Where to read it (unsigned or already signed; see ``BandReads.patch_url``).
        row_shift: Output rows between the source's top edge and the grid's (source above: > 0).
        col_shift: Output columns between the grid's left edge and the source's.
        factor: Source pixel size over output pixel size (1 to :data:`MAX_FACTOR`).
        shape: Source ``(rows, cols)``.
        transform: The source's affine transform as six numbers (checked when the file is open).
    """

    href: str
    row_shift: int
    col_shift: int
    factor: int
    shape: tuple[int, int]
    transform: tuple[float, float, float, float, float, float]

    def window(
        self, rows: tuple[int, int], cols: tuple[int, int]
    ) -> tuple[Window, tuple[slice, slice]] | None:
        """Source window covering output ``rows x cols`` and where it lands in the block.

        Returns:
            ``(window, (row_slice, col_slice))``: the window in source pixels and the block slice
            (in output pixels, before any repeat) it fills; ``None`` when they do not overlap.
        """
        k = self.factor
        sr0 = max((rows[0] + self.row_shift) // k, 0)
        sr1 = min((rows[1] - 1 + self.row_shift) // k + 1, self.shape[0])
        sc0 = max((cols[0] + self.col_shift) // k, 0)
        sc1 = min((cols[1] - 1 + self.col_shift) // k + 1, self.shape[1])
        if sr0 >= sr1 or sc0 >= sc1:
            return None
        # Output rows covered by source rows [sr0, sr1), clipped to the block.
        r0 = max(sr0 * k - self.row_shift, rows[0]) - rows[0]
        r1 = min(sr1 * k - self.row_shift, rows[1]) - rows[0]
        c0 = max(sc0 * k - self.col_shift, cols[0]) - cols[0]
        c1 = min(sc1 * k - self.col_shift, cols[1]) - cols[0]
        return Window(sc0, sr0, sc1 - sc0, sr1 - sr0), (slice(r0, r1), slice(c0, c1))

    def upsample(
        self, coarse: np.ndarray, window: Window, rows: tuple[int, int], cols: tuple[int, int],
        where: tuple[slice, slice],
    ) -> np.ndarray:  # fmt: skip
        """Source pixels of ``window`` repeated ``factor`` times each way, cut to ``where``.

        ``coarse`` is what :meth:`window`'s window holds; the result fills ``block[where]``.
        """
        k = self.factor
        if k == 1:
            return coarse
        fine = np.repeat(np.repeat(coarse, k, axis=0), k, axis=1)
        # fine[0, 0] is output pixel (window.row_off * k - row_shift, ...) of the grid.
        r_first = int(window.row_off) * k - self.row_shift - rows[0]
        c_first = int(window.col_off) * k - self.col_shift - cols[0]
        rs, cs = where
        return fine[rs.start - r_first : rs.stop - r_first, cs.start - c_first : cs.stop - c_first]


@dataclass(frozen=True)
class WarpedAsset:
    """One asset that needs a warp onto the output grid (another CRS, or off the lattice).

    Attributes:
        href: Where to read it.
        extent: Output pixels ``(row0, row1, col0, col1)`` its footprint may reach (from its
            ``proj:`` metadata, padded by :data:`FOOTPRINT_PAD`, clipped to the grid); None when
            unknown (then every block warps it).
    """

    href: str
    extent: tuple[int, int, int, int] | None

    def region(self, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[slice, slice] | None:
        """Block slice (relative to ``rows x cols``) the asset may write, or None."""
        if self.extent is None:
            return slice(0, rows[1] - rows[0]), slice(0, cols[1] - cols[0])
        r0, r1 = max(rows[0], self.extent[0]), min(rows[1], self.extent[1])
        c0, c1 = max(cols[0], self.extent[2]), min(cols[1], self.extent[3])
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0 - rows[0], r1 - rows[0]), slice(c0 - cols[0], c1 - cols[0])


def _tiles(start: int, stop: int, size: int, anchor: int) -> list[int]:
    """Starts of the tiles of ``size`` meeting ``[start, stop)``, tile edges at ``anchor`` modulo ``size``."""
    first = start - (start - anchor) % size
    return list(range(first, stop, size))


Asset = AlignedAsset | WarpedAsset


@dataclass(frozen=True)
class BandReads:
    """Every read of one band: per time slice, its assets (on the lattice or warped) in fuse order.

    Attributes:
        band: Asset key.
        slices: Per time slice, the assets of that solar day (first valid pixel wins).
        geobox: The output grid (for warps).
        nearest: Resampling is nearest neighbour (else bilinear).
        gdal_options: GDAL configuration for the reads, as sorted pairs.
        fail_on_error: ``False`` turns an unreadable asset into nodata (0), as odc-stac does.
        patch_url: Optional href rewrite applied just before opening (signing).
        plan: Which :func:`plan_bands` call made it: the reprojection's lattices and the open
            files are shared between the bands of one plan (one cube), never with another
            cube's (:data:`~pipeline.cube.handles.NO_PLAN`: files opened for each read).
    """

    band: str
    slices: tuple[tuple[Asset, ...], ...]
    geobox: GeoBox
    nearest: bool
    gdal_options: tuple[tuple[str, str], ...] = ()
    fail_on_error: bool = True
    patch_url: Callable[[str], str] | None = None
    plan: int = handles.NO_PLAN

    def read(self, rows: tuple[int, int], cols: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
        """Digital numbers ``(T, h, w)`` uint16 of output ``rows x cols``, 0 where no source.

        Args:
            rows: Output rows ``[start, stop)``.
            cols: Output columns ``[start, stop)``.
            out: Optional ``(T, h, w)`` uint16 C-contiguous buffer to read into (overwritten;
                a block reading one band after another reuses one buffer instead of faulting
                in a fresh one per band).
        """
        h, w = rows[1] - rows[0], cols[1] - cols[0]
        shape = (len(self.slices), h, w)
        if out is None:
            out = np.zeros(shape, dtype=np.uint16)
        else:
            if out.shape != shape or out.dtype != np.uint16 or not out.flags.c_contiguous:
                raise ValueError(f"out must be a C-contiguous uint16 array of shape {shape}")
            out.fill(0)
        with handles.read_env(dict(self.gdal_options)):
            for t, assets in enumerate(self.slices):
                first = True
                for asset in assets:
                    if first:
                        region = self._region(asset, rows, cols)
                        if region is None:
                            continue
                        self._read_into(asset, out[t, region[0], region[1]], rows, cols, region)
                        first = False
                        continue
                    # Later items of the day only fill what is still empty: read just its box.
                    er0, er1, ec0, ec1 = kernels.empty_bounds(out[t])
                    if er0 == er1:
                        break  # filled by earlier assets of the day already
                    sub_r, sub_c = (rows[0] + er0, rows[0] + er1), (cols[0] + ec0, cols[0] + ec1)
                    region = self._region(asset, sub_r, sub_c)
                    if region is None:
                        continue
                    self._read_into(asset, out[t, er0:er1, ec0:ec1][region], sub_r, sub_c, region, fill=True)
        return out

    def _region(
        self, asset: Asset, rows: tuple[int, int], cols: tuple[int, int]
    ) -> tuple[slice, slice] | None:
        """Block slice an asset may write (the pixels whose centres lie on it, for aligned ones)."""
        if isinstance(asset, WarpedAsset):
            return asset.region(rows, cols)
        if asset.factor > 1 and not self.nearest:
            rt = axis_taps(rows[0], rows[1], asset.row_shift, asset.factor, asset.shape[0])
            ct = axis_taps(cols[0], cols[1], asset.col_shift, asset.factor, asset.shape[1])
            if rt is None or ct is None:
                return None
            return slice(rt.lo - rows[0], rt.hi - rows[0]), slice(ct.lo - cols[0], ct.hi - cols[0])
        where = asset.window(rows, cols)
        return None if where is None else where[1]

    def _read_into(
        self, asset: Asset, dst: np.ndarray, rows: tuple[int, int], cols: tuple[int, int],
        where: tuple[slice, slice], fill: bool = False,
    ) -> None:  # fmt: skip
        """Write the asset's pixels of block slice ``where`` into ``dst`` (zeros: leave them).

        ``fill``: ``dst`` holds what earlier assets of the day wrote; only its empty (0) pixels
        take this asset's values (a reprojection computes only those, a warp skips the tiles
        already full).
        """

        def signed() -> str:
            return self.patch_url(asset.href) if self.patch_url is not None else asset.href

        try:
            with handles.opened(self.plan, asset.href, signed) as src:  # once per cube and thread
                warp = isinstance(asset, WarpedAsset) or (
                    tuple(src.transform)[:6] != asset.transform or src.shape != asset.shape
                )  # needs a warp, or the file's grid is not what its metadata said
                grid = _source_grid(src) if warp else None
                if grid is not None and supported(grid, self.geobox):
                    self._reproject(src, grid, dst, rows, cols, where)
                    return
                target = np.zeros(dst.shape, dtype=np.uint16) if fill else dst
                if warp:
                    self._warp_tiles(src, signed(), target, rows, cols, where, dst if fill else None)
                else:
                    assert isinstance(asset, AlignedAsset)
                    self._read_aligned(src, asset, target, rows, cols, where)
                if fill:
                    with kernels.contiguous(dst) as work:
                        kernels.fill_empty(work, target)
        except rasterio.errors.RasterioError as e:
            handles.discard(self.plan, asset.href)  # the next read opens it again
            if self.fail_on_error:
                raise
            log.warning("unreadable asset %s (%s) left as nodata", redact(asset.href), redact(str(e)))
            if not fill:
                dst[...] = S2_NODATA

    def _read_aligned(
        self, src: rasterio.io.DatasetReader, asset: AlignedAsset, dst: np.ndarray, rows: tuple[int, int],
        cols: tuple[int, int], where: tuple[slice, slice],
    ) -> None:  # fmt: skip
        """An asset on the output lattice: the window read as is, repeated (nearest) or upsampled."""
        if asset.factor > 1 and not self.nearest:
            k = asset.factor
            rt = axis_taps(rows[0] + where[0].start, rows[0] + where[0].stop, asset.row_shift, k,
                           asset.shape[0])  # fmt: skip
            ct = axis_taps(cols[0] + where[1].start, cols[0] + where[1].stop, asset.col_shift, k,
                           asset.shape[1])  # fmt: skip
            assert rt is not None and ct is not None
            box = Window(ct.start, rt.start, ct.stop - ct.start, rt.stop - rt.start)
            window = src.read(1, window=box)
            _nodata_to_zero(src, window)
            upsample_bilinear(window, rt, ct, asset.row_shift, asset.col_shift, k, out=dst)
            return
        found = asset.window(rows, cols)
        assert found is not None
        box, _ = found
        if asset.factor == 1:
            src.read(1, window=box, out=dst)
            _nodata_to_zero(src, dst)
            return
        coarse = src.read(1, window=box)
        _nodata_to_zero(src, coarse)
        dst[...] = asset.upsample(coarse, box, rows, cols, where)

    def _reproject(
        self, src: rasterio.io.DatasetReader, grid: SourceGrid, dst: np.ndarray, rows: tuple[int, int],
        cols: tuple[int, int], where: tuple[slice, slice],
    ) -> None:  # fmt: skip
        """Resample ``src`` onto block slice ``where`` with :mod:`pipeline.cube.reproject`.

        Only the pixels of ``dst`` still at 0 (all of a fresh block, what earlier assets of the
        day left empty otherwise) are computed, straight into ``dst``; the lattice is shared by
        every band on the same source grid (:func:`cached_lattice`).
        """
        region = ((rows[0] + where[0].start, rows[0] + where[0].stop),
                  (cols[0] + where[1].start, cols[0] + where[1].stop))  # fmt: skip
        lattice = cached_lattice(self.plan, grid, self.geobox, *region)
        read = functools.partial(decode_window, src)
        reproject_into(dst, grid, self.geobox, *region, read, nearest=self.nearest, lattice=lattice)

    def _warp_tiles(
        self, src: rasterio.io.DatasetReader, href: str, dst: np.ndarray, rows: tuple[int, int],
        cols: tuple[int, int], where: tuple[slice, slice], filled: np.ndarray | None,
    ) -> None:  # fmt: skip
        """Warp ``src`` with odc-stac's own read on the fixed :data:`WARP_TILE` tiles meeting ``where``.

        Each tile is read exactly as odc-stac reads a chunk of that extent (``odc.loader``: the
        overlapping source window, GDAL's warp with the band's resampling and nodata, overviews
        when shrinking), so within a tile the result is ``odc.stac.load``'s with chunks of
        ``WARP_TILE``. Tile edges lie at multiples of ``WARP_TILE`` pixels of the CRS's own pixel
        lattice (not of this grid), whole tiles are warped, and so a pixel's value depends neither
        on the block nor on the region's grid. Tiles already filled by earlier assets are skipped.
        """
        a, _, gc, _, e, gf = (float(v) for v in tuple(self.geobox.transform)[:6])
        # Local row r is lattice row r + gf / e (rows count down from y = 0), column c is c + gc / a.
        anchor_r, anchor_c = round(-gf / e) % WARP_TILE, -round(gc / a) % WARP_TILE
        r0, r1 = rows[0] + where[0].start, rows[0] + where[0].stop
        c0, c1 = cols[0] + where[1].start, cols[0] + where[1].stop
        cfg = RasterLoadParams(
            dtype="uint16", fill_value=S2_NODATA, resampling="nearest" if self.nearest else "bilinear",
            fail_on_error=True,
        )  # fmt: skip
        ttol = 0.9 if self.nearest else 0.05  # odc-stac's
        for tr in _tiles(r0, r1, WARP_TILE, anchor_r):
            for tc in _tiles(c0, c1, WARP_TILE, anchor_c):
                ra, rb = max(tr, r0), min(tr + WARP_TILE, r1)
                ca, cb = max(tc, c0), min(tc + WARP_TILE, c1)
                if filled is not None and filled[ra - r0 : rb - r0, ca - c0 : cb - c0].all():
                    continue
                box = GeoBox((WARP_TILE, WARP_TILE), self.geobox.transform * Affine.translation(tc, tr),
                             self.geobox.crs)  # fmt: skip
                tile = np.zeros((WARP_TILE, WARP_TILE), dtype=np.uint16)
                rr = _reproject_info_from_rio(src, box, ttol=ttol)
                if cfg.use_overviews and rr.read_shrink > 1:  # odc-stac reads an overview
                    rio_read(RasterSource(uri=href, band=1), cfg, box, dst=tile)
                else:
                    with rio_env(VSI_CACHE=False):
                        _do_read(rasterio.band(src, 1), cfg, box, rr, dst=tile)
                dst[ra - r0 : rb - r0, ca - c0 : cb - c0] = tile[ra - tr : rb - tr, ca - tc : cb - tc]


def decode_window(src: rasterio.io.DatasetReader, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Source rows ``[r0, r1)`` and columns ``[c0, c1)`` of band 1, the file's nodata as 0."""
    window = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    _nodata_to_zero(src, window)
    return window


def _source_grid(src: rasterio.io.DatasetReader) -> SourceGrid | None:
    """The file's grid, or None when it has no CRS (then GDAL warps it)."""
    if src.crs is None:
        return None
    a, b, c, d, e, f = (float(v) for v in tuple(src.transform)[:6])
    return SourceGrid(str(src.crs), (a, b, c, d, e, f), (int(src.height), int(src.width)))


def _nodata_to_zero(src: rasterio.io.DatasetReader, arr: np.ndarray) -> None:
    """Map the file's own nodata value (when it is not 0) to the cube's nodata, 0."""
    nodata = src.nodata
    if nodata is not None and nodata != S2_NODATA and np.isfinite(nodata):
        np.copyto(arr, np.uint16(S2_NODATA), where=arr == nodata)


def _aligned(parsed: odc.stac.ParsedItem, band: str, geobox: GeoBox, nearest: bool) -> Asset | None:
    """How to read the asset.

    On the lattice (:class:`AlignedAsset`), by a warp (:class:`WarpedAsset`), or None when the
    item lacks the band (odc-stac decides then).
    """
    try:
        src = parsed[band]
    except (KeyError, ValueError):
        return None
    if not isinstance(src, RasterSource) or src.band != 1 or src.subdataset:
        return None
    box = src.geobox
    if not isinstance(box, GeoBox) or box.crs is None or geobox.crs is None:
        return WarpedAsset(href=src.uri, extent=None)
    a, b, c, d, e, f = (float(v) for v in tuple(box.transform)[:6])
    ga, _, gc, _, ge, gf = (float(v) for v in tuple(geobox.transform)[:6])
    same_crs = box.crs == geobox.crs
    if same_crs and b == 0 and d == 0 and ga > 0 and ge < 0 and a > 0 and e < 0 and a == -e:
        ratio = a / ga
        factor = round(ratio)
        col_shift, row_shift = (gc - c) / ga, (f - gf) / ga
        if (
            1 <= factor <= MAX_FACTOR
            and abs(ratio - factor) <= ALIGN_TOL
            and abs(col_shift - round(col_shift)) <= ALIGN_TOL
            and abs(row_shift - round(row_shift)) <= ALIGN_TOL
            and (factor == 1 or nearest or min(box.shape) >= 2)  # GDAL treats 1-pixel rasters apart
        ):
            return AlignedAsset(
                href=src.uri, row_shift=round(row_shift), col_shift=round(col_shift), factor=factor,
                shape=(int(box.shape[0]), int(box.shape[1])), transform=(a, b, c, d, e, f),
            )  # fmt: skip
    return WarpedAsset(href=src.uri, extent=_footprint(box, geobox))


def _footprint(box: GeoBox, geobox: GeoBox, per_side: int = 32) -> tuple[int, int, int, int] | None:
    """Output pixels ``(row0, row1, col0, col1)`` the source grid ``box`` covers, padded and clipped."""
    h, w = box.shape
    t = np.linspace(0.0, 1.0, per_side + 1)
    px = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    py = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    ta = box.transform
    sx, sy = ta.a * px + ta.b * py + ta.c, ta.d * px + ta.e * py + ta.f
    assert box.crs is not None and geobox.crs is not None
    if box.crs != geobox.crs:
        sx, sy = transformer(str(box.crs), str(geobox.crs)).transform(sx, sy)
    inv = ~geobox.transform
    sx, sy = np.asarray(sx), np.asarray(sy)
    cols, rows = inv.a * sx + inv.b * sy + inv.c, inv.d * sx + inv.e * sy + inv.f
    if not (np.isfinite(rows).all() and np.isfinite(cols).all()):
        return None
    full_h, full_w = geobox.shape
    r0 = max(int(np.floor(np.min(rows))) - FOOTPRINT_PAD, 0)
    r1 = min(int(np.ceil(np.max(rows))) + FOOTPRINT_PAD, full_h)
    c0 = max(int(np.floor(np.min(cols))) - FOOTPRINT_PAD, 0)
    c1 = min(int(np.ceil(np.max(cols))) + FOOTPRINT_PAD, full_w)
    return (r0, max(r1, r0), c0, max(c1, c0))


def plan_bands(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    bands: Sequence[str],
    *,
    nearest: Sequence[str] = (),
    gdal_options: Mapping[str, str] | None = None,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    days: DaySlices | None = None,
) -> dict[str, BandReads | None]:
    """Direct reads of each band over ``geobox``; None for a band left to odc-stac.

    Pure: decided from the items' STAC metadata alone (nothing is opened). Each asset is read on
    the lattice or warped (see the module docstring); a band is None when an item lacks it. A
    file whose real grid turns out to differ from its metadata is warped when it is read.

    Args:
        items: Items with the bands as assets.
        geobox: Output grid.
        bands: Asset keys.
        nearest: Bands resampled with nearest neighbour (the others bilinearly).
        gdal_options: GDAL configuration for the reads (default: the read policy's).
        fail_on_error: ``False`` reads an unreadable asset as nodata.
        patch_url: Optional href rewrite applied just before opening.
        days: The items' :func:`~pipeline.cube.s2.solar_day_slices` over ``geobox``, when the
            caller has them.
    """
    groups = solar_day_slices(items, geobox) if days is None else days
    options = tuple(sorted(_options(gdal_options).items()))
    plan = next(_PLANS)
    plans: dict[str, BandReads | None] = {}
    for band in bands:
        slices: list[tuple[Asset, ...]] | None = []
        for group in groups:
            assets = [_aligned(parsed, band, geobox, band in nearest) for _, parsed in group]
            if any(a is None for a in assets) or slices is None:
                slices = None
                break
            slices.append(tuple(a for a in assets if a is not None))
        plans[band] = (
            BandReads(
                band=band,
                slices=tuple(slices),
                geobox=geobox,
                nearest=band in nearest,
                gdal_options=options,
                fail_on_error=fail_on_error,
                patch_url=patch_url,
                plan=plan,
            )
            if slices
            else None
        )
    return plans


@dataclass(frozen=True)
class ClearReads:
    """The clear mask of a block from direct SCL reads, with a halo of the dilation radius.

    The same as :func:`pipeline.cube.clear_mask` (``map_overlap`` with ``boundary="none"``):
    the block is read ``radius`` pixels wider on each side, clipped to the grid (outside the grid
    counts as not cloud), masked by :func:`pipeline.cube.clear_block` and cropped.

    Attributes:
        scl: Reads of the SCL asset (nearest neighbour).
        radius: Cloud and shadow dilation radius in output pixels.
    """

    scl: BandReads
    radius: int

    def read(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Boolean clear mask ``(T, h, w)`` of output ``rows x cols``."""
        full_h, full_w = self.scl.geobox.shape
        r = self.radius
        ext_r = (max(rows[0] - r, 0), min(rows[1] + r, full_h))
        ext_c = (max(cols[0] - r, 0), min(cols[1] + r, full_w))
        clear = clear_block(self.scl.read(ext_r, ext_c), r)
        top, left = rows[0] - ext_r[0], cols[0] - ext_c[0]
        # Contiguous: the composite's compiled loops read it row by row (see kernels.contiguous).
        return np.ascontiguousarray(clear[:, top : top + rows[1] - rows[0], left : left + cols[1] - cols[0]])

    def count(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Clear observations per pixel, uint8 saturating at 255 (the cube's ``n_clear``)."""
        total = self.read(rows, cols).sum(axis=0, dtype=np.uint16)
        return np.minimum(total, 255).astype(np.uint8)
