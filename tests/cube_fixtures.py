"""Real STAC items over the shared sample rasters, shaped like Planetary Computer items.

- Sentinel-2 L2A tile 29RKH of 2020-02-19 (Earth Search item, per-band COGs at reduced
  resolution: 10 m bands at 100 m, 20 m at 200 m, 60 m at 600 m; EPSG:32629). Earth Search asset
  keys (``blue``, ``scl``...) are mapped to PC keys (``B02``, ``SCL``...), hrefs point to the
  local files and ``proj:shape``/``proj:transform`` are rewritten to the files' actual grids.
- Copernicus GLO-30 DEM tile N00 E006 (Sao Tome), EPSG:4326, as a minimal ``cop-dem-glo-30`` item.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pystac
import rasterio

from tests.conftest import SHARED

DATA = SHARED / "rasters"
S2_DIR = DATA / "s2-l2a-29RKH-20200219"
S2_ITEM_JSON = S2_DIR / "S2A_29RKH_20200219_0_L2A.json"
DEM_TIF = DATA / "cop-dem-glo-30" / "Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"

#: Earth Search v0 asset key -> Planetary Computer asset key.
EARTH_SEARCH_TO_PC: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "swir16": "B11", "swir22": "B12", "scl": "SCL",
}  # fmt: skip


def _grid_fields(path: Path) -> dict[str, object]:
    """``proj:*`` fields of a raster file as STAC asset fields."""
    with rasterio.open(path) as src:
        return {
            "proj:epsg": src.crs.to_epsg(),
            "proj:shape": [src.height, src.width],
            "proj:transform": list(src.transform)[:6],
        }


def s2_item(
    *,
    item_id: str | None = None,
    baseline: str | None = None,
    when: dt.datetime | None = None,
    overrides: dict[str, Path] | None = None,
) -> pystac.Item:
    """The 29RKH item as a PC-style ``sentinel-2-l2a`` item over the local COGs.

    Args:
        item_id: New id (defaults to the Earth Search id).
        baseline: Replacement ``s2:processing_baseline``.
        when: Replacement acquisition datetime (UTC).
        overrides: PC asset key -> replacement file (e.g. a modified SCL in tmp_path).
    """
    src = pystac.Item.from_file(str(S2_ITEM_JSON))
    item = pystac.Item(
        id=item_id or src.id,
        geometry=src.geometry,
        bbox=src.bbox,
        datetime=(when or src.datetime),
        properties=copy.deepcopy(src.properties),
        collection="sentinel-2-l2a",
        stac_extensions=list(src.stac_extensions),
    )
    item.properties.pop("datetime", None)
    if when is not None:
        item.datetime = when
    if baseline is not None:
        item.properties["s2:processing_baseline"] = baseline
    for es_key, pc_key in EARTH_SEARCH_TO_PC.items():
        path = (overrides or {}).get(pc_key, S2_DIR / f"{pc_key}.tif")
        asset = copy.deepcopy(src.assets[es_key])
        asset.href = str(path)
        asset.extra_fields.update(_grid_fields(path))
        item.add_asset(pc_key, asset)
    return item


def dem_item(path: Path = DEM_TIF, item_id: str | None = None) -> pystac.Item:
    """A minimal ``cop-dem-glo-30`` item (asset ``data``) for a DEM GeoTIFF in EPSG:4326."""
    with rasterio.open(path) as src:
        west, south, east, north = src.bounds
        fields = _grid_fields(path)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = pystac.Item(
        id=item_id or path.stem,
        geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=[west, south, east, north],
        datetime=dt.datetime(2021, 4, 22, tzinfo=dt.UTC),
        properties={"gsd": 30, "platform": "TanDEM-X", **fields},
        collection="cop-dem-glo-30",
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=str(path),
            media_type="image/tiff; application=geotiff; profile=cloud-optimized",
            roles=["data"],
        ),
    )
    return item
