"""Grid-aligned COG reads: one windowed read per source, straight into the block's buffer.

When an asset's pixel grid is the output grid (same CRS, same pixel size, whole-pixel offset),
or, for a band resampled with nearest neighbour, an integer multiple of it (Sentinel-2's 20 m
SCL on a 10 m grid), resampling is the identity or a pixel repeat. Then a block of the cube
needs no warp, no nodata fill of a fresh chunk and no fuse copy: each source's window is read
once by GDAL into the rows and columns of the block it covers. This module plans those reads
from the items' STAC ``proj:`` metadata (pure code, :func:`plan_bands`) and carries them out
inside the cube's block task (:meth:`BandReads.read`). Bands whose assets are not aligned (the
20 m and 60 m spectral bands, resampled bilinearly, or scenes in another UTM zone) keep
odc-stac's reader; both give the same digital numbers on aligned grids (tested).

Time slices and the order of items within one are odc-stac's (``groupby="solar_day"``; items
sorted by time, then id; the first valid pixel wins), so the two readers agree exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import odc.stac
import pystac
import rasterio
import rasterio.warp
from odc.geo.geobox import GeoBox
from odc.loader.types import RasterSource
from rasterio.enums import Resampling
from rasterio.windows import Window

from pipeline.cube.items import S2_NODATA, _options, redact
from pipeline.cube.s2 import clear_block, solar_day_slices

log = logging.getLogger(__name__)

#: Largest difference (output pixels) between an asset's origin and a whole pixel still "aligned".
ALIGN_TOL: Final[float] = 1e-6


@dataclass(frozen=True)
class AlignedAsset:
    """One asset whose pixels fall on the output grid.

    Output pixel ``(i, j)`` is source pixel ``((i + row_shift) // factor, (j + col_shift) //
    factor)``.

    Attributes:
        href: Where to read it (unsigned or already signed; see ``BandReads.patch_url``).
        row_shift: Output rows between the source's top edge and the grid's (source above: > 0).
        col_shift: Output columns between the grid's left edge and the source's.
        factor: Source pixel size over output pixel size (1, or an integer for nearest).
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
class BandReads:
    """Every read of one band: per time slice, its aligned assets in fuse order.

    Attributes:
        band: Asset key.
        slices: Per time slice, the assets of that solar day (first valid pixel wins).
        geobox: The output grid (for the warp of a file whose grid differs from its metadata).
        nearest: Resampling is nearest neighbour (else bilinear).
        gdal_options: GDAL configuration for the reads, as sorted pairs.
        fail_on_error: ``False`` turns an unreadable asset into nodata (0), as odc-stac does.
        patch_url: Optional href rewrite applied just before opening (signing).
    """

    band: str
    slices: tuple[tuple[AlignedAsset, ...], ...]
    geobox: GeoBox
    nearest: bool
    gdal_options: tuple[tuple[str, str], ...] = ()
    fail_on_error: bool = True
    patch_url: Callable[[str], str] | None = None

    def read(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Digital numbers ``(T, h, w)`` uint16 of output ``rows x cols``, 0 where no source."""
        h, w = rows[1] - rows[0], cols[1] - cols[0]
        out = np.zeros((len(self.slices), h, w), dtype=np.uint16)
        with rasterio.Env(**dict(self.gdal_options)):
            for t, assets in enumerate(self.slices):
                first = True
                for asset in assets:
                    where = asset.window(rows, cols)
                    if where is None:
                        continue
                    window, (rs, cs) = where
                    if first:
                        self._read_into(asset, window, out[t, rs, cs], rows, cols, (rs, cs))
                        first = False
                    else:
                        tmp = np.zeros((rs.stop - rs.start, cs.stop - cs.start), dtype=np.uint16)
                        self._read_into(asset, window, tmp, rows, cols, (rs, cs))
                        dst = out[t, rs, cs]
                        np.copyto(dst, tmp, where=dst == S2_NODATA)
        return out

    def _read_into(
        self, asset: AlignedAsset, window: Window, dst: np.ndarray,
        rows: tuple[int, int], cols: tuple[int, int], where: tuple[slice, slice],
    ) -> None:  # fmt: skip
        href = self.patch_url(asset.href) if self.patch_url is not None else asset.href
        try:
            with rasterio.open(href, "r", sharing=False) as src:
                if tuple(src.transform)[:6] != asset.transform or src.shape != asset.shape:
                    self._warp(src, dst, rows, cols, where)  # metadata and file disagree
                    return
                if asset.factor == 1:
                    src.read(1, window=window, out=dst)
                    _nodata_to_zero(src, dst)
                    return
                coarse = src.read(1, window=window)
                _nodata_to_zero(src, coarse)
                dst[...] = asset.upsample(coarse, window, rows, cols, where)
        except rasterio.errors.RasterioError as e:
            if self.fail_on_error:
                raise
            log.warning("unreadable asset %s (%s) left as nodata", redact(href), redact(str(e)))
            dst[...] = S2_NODATA

    def _warp(
        self, src: rasterio.io.DatasetReader, dst: np.ndarray,
        rows: tuple[int, int], cols: tuple[int, int], where: tuple[slice, slice],
    ) -> None:  # fmt: skip
        """Warp a source whose grid is not what its STAC metadata said (odc-stac's way)."""
        rs, cs = where
        box = self.geobox[rows[0] + rs.start : rows[0] + rs.stop, cols[0] + cs.start : cols[0] + cs.stop]
        dst[...] = S2_NODATA
        rasterio.warp.reproject(
            rasterio.band(src, 1), dst, src_nodata=src.nodata if src.nodata is not None else S2_NODATA,
            dst_crs=str(box.crs), dst_transform=box.transform, dst_nodata=S2_NODATA,
            resampling=Resampling.nearest if self.nearest else Resampling.bilinear,
        )  # fmt: skip


def _nodata_to_zero(src: rasterio.io.DatasetReader, arr: np.ndarray) -> None:
    """Map the file's own nodata value (when it is not 0) to the cube's nodata, 0."""
    nodata = src.nodata
    if nodata is not None and nodata != S2_NODATA and np.isfinite(nodata):
        np.copyto(arr, np.uint16(S2_NODATA), where=arr == nodata)


def _aligned(parsed: odc.stac.ParsedItem, band: str, geobox: GeoBox, nearest: bool) -> AlignedAsset | None:
    """The asset as an :class:`AlignedAsset`, or None when its grid is unknown or not aligned."""
    try:
        src = parsed[band]
    except (KeyError, ValueError):
        return None
    if (
        not isinstance(src, RasterSource)
        or not isinstance(src.geobox, GeoBox)
        or src.band != 1
        or src.subdataset
    ):
        return None
    box = src.geobox
    if box.crs is None or geobox.crs is None or box.crs != geobox.crs:
        return None
    a, b, c, d, e, f = (float(v) for v in tuple(box.transform)[:6])
    ga, _, gc, _, ge, gf = (float(v) for v in tuple(geobox.transform)[:6])
    if b != 0 or d != 0 or ga <= 0 or ge >= 0 or a <= 0 or e >= 0 or a != -e:
        return None
    ratio = a / ga
    factor = round(ratio)
    if factor < 1 or abs(ratio - factor) > ALIGN_TOL or (factor > 1 and not nearest):
        return None
    col_shift, row_shift = (gc - c) / ga, (f - gf) / ga
    if abs(col_shift - round(col_shift)) > ALIGN_TOL or abs(row_shift - round(row_shift)) > ALIGN_TOL:
        return None
    return AlignedAsset(
        href=src.uri, row_shift=round(row_shift), col_shift=round(col_shift), factor=factor,
        shape=(int(box.shape[0]), int(box.shape[1])), transform=(a, b, c, d, e, f),
    )  # fmt: skip


def plan_bands(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    bands: Sequence[str],
    *,
    nearest: Sequence[str] = (),
    gdal_options: Mapping[str, str] | None = None,
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
) -> dict[str, BandReads | None]:
    """Direct reads of each band over ``geobox``; None for a band where any asset needs a warp.

    Pure: decided from the items' STAC metadata alone (nothing is opened). A file whose real
    grid turns out to differ from its metadata is warped when it is read.

    Args:
        items: Items with the bands as assets.
        geobox: Output grid.
        bands: Asset keys.
        nearest: Bands resampled with nearest neighbour (they may be any whole multiple of the
            output pixel size); the others must be at the output's own pixel size.
        gdal_options: GDAL configuration for the reads (default: the read policy's).
        fail_on_error: ``False`` reads an unreadable asset as nodata.
        patch_url: Optional href rewrite applied just before opening.
    """
    groups = solar_day_slices(items, geobox)
    options = tuple(sorted(_options(gdal_options).items()))
    plans: dict[str, BandReads | None] = {}
    for band in bands:
        slices: list[tuple[AlignedAsset, ...]] | None = []
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
        return clear[:, top : top + rows[1] - rows[0], left : left + cols[1] - cols[0]]

    def count(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Clear observations per pixel, uint8 saturating at 255 (the cube's ``n_clear``)."""
        total = self.read(rows, cols).sum(axis=0, dtype=np.uint16)
        return np.minimum(total, 255).astype(np.uint8)
