"""A small, realistic result store, laid out as the sweep writes it (docs/architecture.md).

384 x 640 pixels at 10 m in EPSG:32654 (near Iburi, Hokkaido), chunks of 256, Zarr format 2,
consolidated. Known blobs of high probability, some of them crossing 128- and 256-pixel block
borders, one with a hole, two touching only at a corner, one cut by the invalid border.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer

EPSG = 32654
RES = 10.0
X0 = 570_000.0  # left edge, metres
Y0 = 4_735_000.0  # top edge, metres
SHAPE = (384, 640)
THRESHOLD = 0.6
INVALID_LEFT = 8  # columns of NaN on the left
INVALID_BOTTOM = 16  # rows of NaN at the bottom


@dataclass
class Blob:
    """One connected landslide in the fixture: its name and boolean pixel mask (valid part only)."""

    name: str
    mask: np.ndarray

    @property
    def pixels(self) -> int:
        """Number of valid pixels in the blob."""
        return int(self.mask.sum())


@dataclass
class FixtureStore:
    """Where the store was written and what it holds."""

    path: Path
    probability: np.ndarray
    valid: np.ndarray
    slope: np.ndarray
    transform: Affine
    blobs: list[Blob] = field(default_factory=list)
    min_area_m2: float = 200.0

    def kept(self, min_area_m2: float | None = None) -> list[Blob]:
        """The blobs that reach the minimum area."""
        limit = self.min_area_m2 if min_area_m2 is None else min_area_m2
        return [b for b in self.blobs if b.pixels * RES * RES >= limit]


def _rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def blob_masks() -> dict[str, np.ndarray]:
    """Masks of the high-probability blobs (before removing the invalid border)."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    holed = _rect(50, 70, 300, 330) & ~_rect(58, 62, 312, 318)
    ell = _rect(200, 230, 120, 136) | _rect(220, 230, 136, 161)
    return {
        "interior": _rect(10, 20, 10, 30),  # 200 px inside one block
        "cross_256_128": _rect(120, 140, 240, 272),  # crosses row 128 and column 256
        "ell_cross_128": ell,  # L-shape crossing column 128
        "holed": holed,  # a hole below the threshold
        "disc": (yy - 300) ** 2 + (xx - 500) ** 2 <= 12**2,
        "corner_a": _rect(100, 102, 50, 52),  # touches corner_b only at a corner
        "corner_b": _rect(102, 104, 52, 54),
        "tiny": _rect(30, 31, 200, 201),  # 1 px: below the minimum area
        "pair": _rect(30, 31, 220, 222),  # 2 px: exactly the minimum area
        "cut_by_invalid": _rect(360, 384, 600, 616),  # bottom rows are invalid
        "big_cross_256": _rect(180, 300, 200, 330),  # crosses rows 256 and cols 256 (5 blocks)
    }


def make_store(
    path: Path,
    *,
    start: str = "2018-09-01",
    end: str = "2018-09-30",
    status: str = "complete",
    event_id: str | None = "iburi-2018",
    seed: int = 0,
    x0: float = X0,
    y0: float = Y0,
    scenes: list[dict[str, str]] | None = None,
) -> FixtureStore:
    """Write the fixture store at ``path`` and return what it contains."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.0, 0.3, SHAPE).astype(np.float32)
    masks = blob_masks()
    valid = np.ones(SHAPE, np.uint8)
    valid[:, :INVALID_LEFT] = 0
    valid[SHAPE[0] - INVALID_BOTTOM :, :] = 0
    blobs = []
    for name, m in masks.items():
        prob[m] = rng.uniform(0.65, 0.99, int(m.sum())).astype(np.float32)
        blobs.append(Blob(name, m & (valid == 1)))
    prob[valid == 0] = np.nan
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    slope = (5.0 + 40.0 * xx / SHAPE[1] + 0.01 * yy).astype(np.float32)

    transform = Affine(RES, 0.0, x0, 0.0, -RES, y0)
    xs = x0 + RES * (np.arange(SHAPE[1]) + 0.5)
    ys = y0 - RES * (np.arange(SHAPE[0]) + 0.5)
    crs = CRS.from_epsg(EPSG)
    ds = xr.Dataset(
        {
            "probability": (("y", "x"), prob),
            "valid": (("y", "x"), valid),
            "slope": (("y", "x"), slope),
        },
        coords={"y": ys, "x": xs},
    )
    ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    for name in ("probability", "valid", "slope"):
        ds[name].attrs["grid_mapping"] = "spatial_ref"
    ds["probability"].attrs.update(long_name="landslide probability", units="1")
    ds["slope"].attrs.update(long_name="terrain slope", units="degree")
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    west, south, east, north = to_ll.transform_bounds(x0, y0 - RES * SHAPE[0], x0 + RES * SHAPE[1], y0)
    attrs: dict[str, object] = {
        "landslide:status": status,
        "landslide:model": "hybrid-clay-unet",
        "landslide:checkpoint_sha256": "0" * 64,
        "landslide:threshold": THRESHOLD,
        "landslide:bands": ["B2", "B3", "B4", "B8", "B11", "B12", "slope", "dem"],
        "landslide:start": start,
        "landslide:end": end,
        "landslide:bbox": [west, south, east, north],
        "landslide:scenes": scenes
        if scenes is not None
        else [
            {
                "id": "S2B_MSIL2A_20180920T013649_R031_T54TWN_20201010T120000",
                "collection": "sentinel-2-l2a",
                "href": "https://planetarycomputer.microsoft.com/api/stac/v1/collections/"
                "sentinel-2-l2a/items/S2B_MSIL2A_20180920T013649_R031_T54TWN_20201010T120000",
            },
            {
                "id": "Copernicus_DSM_COG_10_N42_00_E141_00_DEM",
                "collection": "cop-dem-glo-30",
                "href": "https://planetarycomputer.microsoft.com/api/stac/v1/collections/"
                "cop-dem-glo-30/items/Copernicus_DSM_COG_10_N42_00_E141_00_DEM?st=2026&sig=x",
            },
        ],
        "landslide:skipped_scenes": [],
        "landslide:software_version": "0.1.0",
        "proj:code": f"EPSG:{EPSG}",
        "proj:wkt2": crs.to_wkt(),
        "proj:transform": list(transform)[:6],
        "proj:shape": list(SHAPE),
    }
    if event_id is not None:
        attrs["landslide:event_id"] = event_id
    ds.attrs.update(attrs)
    encoding = {name: {"chunks": (256, 256)} for name in ("probability", "valid", "slope")}
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return FixtureStore(
        path=Path(path),
        probability=prob,
        valid=valid,
        slope=slope,
        transform=transform,
        blobs=blobs,
    )
