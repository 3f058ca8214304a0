"""XYZ PNG tiles of the probability, the web map's raster layer (and any XYZ client's).

Why PNG tiles and not the Zarr pyramid: ``@carbonplan/zarr-layer`` (and ``@carbonplan/maps``)
place level ``k`` of a pyramid as zoom ``k`` of the whole world, so they cannot read our
``pyramid.zarr`` whose level 0 is zoom ``min_zoom`` (11 for a small region) and covers only the
mosaic's tiles; following their layout exactly means whole-world levels, which ndpyramid cannot
build at 10 m. XYZ tiles are what every stock web client reads (MapLibre and Leaflet raster
sources, OpenLayers, QGIS "XYZ Tiles"), so the web map gets ``tiles/{z}/{x}/{y}.png`` and the Zarr
pyramid stays for xarray users. The tiles are exactly the pyramid's chunks (same grids, from
:func:`pipeline.products.pyramid.level_probability`), colour-mapped with :data:`COLORMAP`.

Every tile of each level's range is written, including fully transparent ones, so a client that
requests any tile inside the layer's bounds gets a 200 rather than a 404.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.products.pyramid import TILE, level_probability, zoom_range

#: Matplotlib colour map of the probability (0..1, fixed: probabilities are absolute).
COLORMAP = "YlOrRd"
#: Opacity of a pixel at probability 0; it rises linearly to 1 at :data:`ALPHA_FULL`.
ALPHA_MIN = 0.35
ALPHA_FULL = 0.5
#: How many zooms coarser than the pyramid's top level get tiles too (one tile each).
EXTRA_COARSE_ZOOMS = 3
#: Tile rows reprojected per dask compute (bounds memory: rows x 256 x mosaic width x 4 bytes).
BAND_ROWS = 4


@dataclass(frozen=True)
class TileSet:
    """The XYZ tiles written for one store.

    Attributes:
        root: The directory holding ``{z}/{x}/{y}.png``.
        min_zoom: The coarsest zoom written.
        max_zoom: The finest zoom written (the pyramid's finest).
        count: Number of tiles written.
        nbytes: Their total size, bytes.
        blank: Number of fully transparent tiles among them.

    """

    root: Path
    min_zoom: int
    max_zoom: int
    count: int
    nbytes: int
    blank: int


def lut(n: int = 256) -> np.ndarray:
    """Return the RGBA lookup table (``n`` x 4, uint8) for probabilities ``i / (n - 1)``."""
    from matplotlib import colormaps

    p = np.linspace(0.0, 1.0, n)
    rgba = np.asarray(colormaps[COLORMAP](p))
    rgba[:, 3] = ALPHA_MIN + (1.0 - ALPHA_MIN) * np.clip(p / ALPHA_FULL, 0.0, 1.0)
    out: np.ndarray = np.round(rgba * 255).astype(np.uint8)
    return out


def colorize(prob: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """Map probabilities (NaN = no data) to RGBA uint8 with :func:`lut`; NaN is transparent."""
    table = lut() if table is None else table
    n = table.shape[0]
    finite = np.isfinite(prob)
    idx = np.zeros(prob.shape, np.intp)
    idx[finite] = np.clip(np.round(prob[finite] * (n - 1)), 0, n - 1).astype(np.intp)
    rgba = table[idx]
    rgba[~finite] = 0
    out: np.ndarray = rgba
    return out


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an RGBA uint8 array as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


@functools.cache
def blank_png() -> bytes:
    """The fully transparent 256 x 256 tile."""
    return png_bytes(np.zeros((TILE, TILE, 4), np.uint8))


def tile_zooms(ds: xr.Dataset) -> range:
    """Zooms that get tiles: :data:`EXTRA_COARSE_ZOOMS` above the pyramid's top to its finest."""
    min_zoom, max_zoom = zoom_range(ds)
    return range(max(0, min_zoom - EXTRA_COARSE_ZOOMS), max_zoom + 1)


def iter_tiles(ds: xr.Dataset, zooms: range | None = None) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """Yield ``(z, x, y, probability)`` for every tile of every zoom, a 256 x 256 float32 array each.

    Levels are reprojected lazily (average resampling) and computed :data:`BAND_ROWS` tile rows
    at a time.
    """
    for zoom in zooms if zooms is not None else tile_zooms(ds):
        level, _, (tx0, ty0) = level_probability(ds, zoom)
        rows, cols = level.shape[0] // TILE, level.shape[1] // TILE
        for r0 in range(0, rows, BAND_ROWS):
            r1 = min(rows, r0 + BAND_ROWS)
            band = np.asarray(level.isel(y=slice(r0 * TILE, r1 * TILE)).values, np.float32)
            for i in range(r1 - r0):
                for j in range(cols):
                    tile = band[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
                    yield zoom, tx0 + j, ty0 + r0 + i, tile


def write_tiles(ds: xr.Dataset, root: str | Path, zooms: range | None = None) -> TileSet:
    """Write ``root/{z}/{x}/{y}.png`` for the store's probability; see the module docstring."""
    base = Path(root)
    table = lut()
    count = nbytes = blank = 0
    zs = zooms if zooms is not None else tile_zooms(ds)
    for z, x, y, prob in iter_tiles(ds, zs):
        empty = not np.isfinite(prob).any()
        data = blank_png() if empty else png_bytes(colorize(prob, table))
        path = base / str(z) / str(x) / f"{y}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        count += 1
        nbytes += len(data)
        blank += int(empty)
    return TileSet(base, zs.start, zs.stop - 1, count, nbytes, blank)


def embed_tiles(tiles: TileSet, limit_bytes: int) -> dict[str, str] | None:
    """Return ``{"z/x/y": base64 PNG}`` of the non-blank tiles, or None if over ``limit_bytes``.

    Blank tiles are left out (the page serves one shared transparent tile for them).
    """
    blank = blank_png()
    out: dict[str, str] = {}
    total = 0
    for path in sorted(tiles.root.glob("*/*/*.png")):
        data = path.read_bytes()
        if data == blank:
            continue
        text = base64.b64encode(data).decode("ascii")
        total += len(text)
        if total > limit_bytes:
            return None
        z, x, y = path.parent.parent.name, path.parent.name, path.stem
        out[f"{z}/{x}/{y}"] = text
    return out
