"""The embedded demo scene: where it lies, what it holds, and where its files are.

The scene is a mosaic of 15 real Landslide4Sense (L4S) training chips (128 x 128 px each, ids
1 3 16 28 38 40 41 45 72 253 300 512 525 600 800, row-major) laid side by side on a 5 x 3 grid
of 10 m pixels (640 x 384 px, 6.4 x 3.84 km) in UTM zone 54N (EPSG:32654). The location is
**nominal**: the grid sits near the area of the 2018 Hokkaido Iburi earthquake landslides (Atsuma),
but the chips come from several L4S events (Iburi 2018, Kodagu 2018, Gorkha 2015, Taiwan 2009)
and are placed next to each other only so that the demo has one georeferenced scene to sweep.
There are visible seams between chips, in the imagery and in the elevation.

What the files hold (written by :mod:`pipeline.demo.build_scene`):

* ``B01 .. B12`` (no B10, as in Sentinel-2 L2A): uint16 digital numbers,
  ``DN = round(l4s_value * L4S_DIVISORS[band])``. L4S is most likely Level-1C (top of atmosphere),
  so these are TOA-like numbers labelled as an L2A item; all bands are at 10 m (L4S resampled the
  20 m and 60 m bands), unlike real L2A where B05-B07, B11, B12, SCL are 20 m and B01, B09 60 m.
* ``SCL``: **derived**, not a Sen2Cor product (L4S has no scene classification): 6 water where
  NDWI = (B03 - B08) / (B03 + B08) > 0.1, else 4 vegetation where NDVI > 0.4, else 5 not vegetated.
  So the demo has no cloud (classes 8/9/10 absent) and ``eo:cloud_cover`` is 0.
* ``dem.tif``: float32 metres, ``dem = l4s_dem * 772.83`` (the L4S DEM channel, ALOS PALSAR based),
  on the same 10 m UTM grid as the imagery. The item mirrors the structure of Planetary Computer's
  ``cop-dem-glo-30`` items (collection id, asset ``data``, ``gsd``, ``proj:*`` properties), but the
  real collection is EPSG:4326 at 1 arcsec (~30 m); resampling a 10 m patch through a 30 m grid
  would smooth away the slope detail the model was trained with, so the demo DEM stays at 10 m.
  Its ``datetime`` (2021-04-22) copies the real collection's, so DEM searches need a wide window
  (``DEMO_DEM_START`` .. ``DEMO_DEM_END``), as they do against Planetary Computer.
* ``labels.tif``: uint8 L4S landslide masks (1 landslide, 0 not) on the same grid.
* ``catalog.json``: a STAC ItemCollection with the two items; asset hrefs are relative to it
  (:class:`pipeline.catalog.StaticCatalog` resolves them).
* ``scene.json``: a summary (grid, chip layout, provenance, slope-consistency numbers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: Directory of the shipped scene files.
DEMO_DIR: Final[Path] = Path(__file__).resolve().parent / "data" / "scene"
#: The STAC ItemCollection of the demo (open with ``pipeline.catalog.open_catalog(str(DEMO_CATALOG))``).
DEMO_CATALOG: Final[Path] = DEMO_DIR / "catalog.json"
#: Landslide label mosaic (uint8, 1 = landslide) on the scene grid.
DEMO_LABELS: Final[Path] = DEMO_DIR / "labels.tif"
#: The scene summary written by the builder.
DEMO_SUMMARY: Final[Path] = DEMO_DIR / "scene.json"

#: Collection ids of the demo items (the same ids as on Planetary Computer).
DEMO_S2_COLLECTION: Final[str] = "sentinel-2-l2a"
DEMO_DEM_COLLECTION: Final[str] = "cop-dem-glo-30"
#: Item ids in the demo catalog.
DEMO_S2_ITEM_ID: Final[str] = "S2_MSIL2A_20180911_T54TWN_L4S-DEMO"
DEMO_DEM_ITEM_ID: Final[str] = "L4S-DEMO_DEM_10m_T54TWN"

#: Nominal acquisition date of the post-event image (the earthquake was on 2018-09-06).
DEMO_DATETIME: Final[dt.datetime] = dt.datetime(2018, 9, 11, 1, 36, 49, tzinfo=dt.UTC)
#: Event date and a post-event search window that brackets the demo image.
DEMO_EVENT_DATE: Final[dt.date] = dt.date(2018, 9, 6)
DEMO_START: Final[dt.date] = dt.date(2018, 9, 7)
DEMO_END: Final[dt.date] = dt.date(2018, 9, 30)
#: A window wide enough to find the DEM item (dated 2021-04-22, as on Planetary Computer).
DEMO_DEM_START: Final[dt.date] = dt.date(2000, 1, 1)
DEMO_DEM_END: Final[dt.date] = dt.date(2030, 12, 31)


@dataclass(frozen=True)
class SceneGrid:
    """A north-up pixel grid in a projected CRS, built from whole chips.

    Attributes:
        epsg: EPSG code of the CRS.
        origin_x: Easting of the upper-left corner (metres; a multiple of ``resolution``).
        origin_y: Northing of the upper-left corner (metres).
        resolution: Pixel size in metres.
        chip: Chip side in pixels.
        cols: Chips per row.
        rows: Chip rows.

    """

    epsg: int
    origin_x: float
    origin_y: float
    resolution: float
    chip: int
    cols: int
    rows: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.chip * self.cols

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.chip * self.rows

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine transform as the six STAC ``proj:transform`` numbers (a, b, c, d, e, f)."""
        return (self.resolution, 0.0, self.origin_x, 0.0, -self.resolution, self.origin_y)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` in CRS units (STAC ``proj:bbox``)."""
        return (
            self.origin_x,
            self.origin_y - self.height * self.resolution,
            self.origin_x + self.width * self.resolution,
            self.origin_y,
        )

    def chip_window(self, index: int) -> tuple[int, int]:
        """Row and column offsets in pixels of the ``index``-th chip (row-major)."""
        if not 0 <= index < self.cols * self.rows:
            raise IndexError(f"chip index {index} outside a {self.cols} x {self.rows} grid")
        r, c = divmod(index, self.cols)
        return (r * self.chip, c * self.chip)


#: The demo grid: 5 x 3 chips of 128 px at 10 m in UTM 54N, upper-left corner at
#: (576000 E, 4739000 N), near Atsuma, Hokkaido.
DEMO_GRID: Final[SceneGrid] = SceneGrid(
    epsg=32654, origin_x=576000.0, origin_y=4739000.0, resolution=10.0, chip=128, cols=5, rows=3
)

#: L4S chip ids placed on the grid, row-major.
DEMO_CHIP_IDS: Final[tuple[int, ...]] = (1, 3, 16, 28, 38, 40, 41, 45, 72, 253, 300, 512, 525, 600, 800)

#: WGS84 (W, S, E, N) footprint of the whole scene (rounded outward to 1e-4 degree).
DEMO_SCENE_BBOX: Final[tuple[float, float, float, float]] = (141.9288, 42.7645, 142.0077, 42.7998)
#: A WGS84 (W, S, E, N) search box lying inside the scene whose sweep grid is the scene's grid:
#: projected to UTM 54N, its envelope lies 3-5 m inside the scene's edges, so the sweep's grid
#: (envelope snapped outward to 10 m, padded to whole chips) is exactly the 640 x 384 px of the
#: scene (``tests/demo/test_scene.py`` checks it). An inset box would shift the grid by its inset
#: and leave a no-data strip along the scene's east and south edges.
DEMO_BBOX: Final[tuple[float, float, float, float]] = (141.929431, 42.765245, 142.007049, 42.799097)

#: Spectral assets of the demo item (the Planetary Computer L2A keys less B8A, which L4S lacks).
DEMO_S2_ASSETS: Final[tuple[str, ...]] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12",
)  # fmt: skip


def demo_bbox() -> tuple[float, float, float, float]:
    """Return the WGS84 search box of the demo: ``(west, south, east, north)``, inside the scene."""
    return DEMO_BBOX


def demo_window() -> tuple[dt.date, dt.date]:
    """Return the inclusive post-event date window that finds the demo image."""
    return (DEMO_START, DEMO_END)


def asset_path(name: str) -> Path:
    """Return the path of one shipped raster (``"B02"``, ``"SCL"``, ``"dem"``, ``"labels"``).

    Raises:
        FileNotFoundError: If the scene does not hold that file.

    """
    path = DEMO_DIR / f"{name}.tif"
    if not path.is_file():
        raise FileNotFoundError(f"demo scene has no raster {path.name} in {DEMO_DIR}")
    return path
