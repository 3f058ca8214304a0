"""A USGS event with a ShakeMap, moved onto the demo scene, and a catalog whose imagery improves.

What is real and what is rewritten (the internet is the only thing stood in for):

* the **detail document** is the real ComCat detail of Hokkaido 2018 (us2000h8ty), with its id,
  epicentre and ShakeMap ``grid.xml`` URL rewritten to the demo event on loopback;
* the **ShakeMap grid** is written here in the exact ShakeMap 3.5 layout of the real grids (the
  header, ``grid_specification``, the 11 ``grid_field`` elements and their units are copied from the
  real Loma Prieta grid); its values are synthetic: PGA 35 %g over cells inside the demo scene,
  2 %g around them, so the PGA >= 0.10 g area lies inside the scene;
* the **catalog** is the demo scene's, in two states: first only a *cloudy* copy of its scene
  (dated two days earlier, its SCL marked cloud, class 9, over the east half of the scene:
  a real-format SCL COG written here), then also the original clear scene; a copy of the clear
  scene dated before the event is there throughout (the pre-event NDVI composite).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import rasterio

from pipeline.demo.scene import DEMO_CATALOG, DEMO_DIR, DEMO_S2_ITEM_ID

#: Centres of the cells (0.005 degree) with PGA 35 %g, inside the demo scene: the PGA >= 0.10 g
#: area is 141.9375-141.9975 E, 42.7725-42.7925 N (10.9 km2), two tiles of 0.05 degree
#: (x2838y855 west of 141.95 E, x2839y855 east of it).
GRID_SPACING = 0.005
GRID_LON = (141.9, 142.03)
GRID_LAT = (42.75, 42.82)
SHAKEN_LON = (141.94, 141.995)
SHAKEN_LAT = (42.775, 42.79)
TILE_DEG = 0.05
CLOUDY_ID = "S2_MSIL2A_20180909_T54TWN_L4S-DEMO-CLOUDY"
#: A pre-event copy of the clear scene (the same pixels, dated before the event): NDVI evidence.
PRE_ID = "S2_MSIL2A_20180825_T54TWN_L4S-DEMO-PRE"
EVENT = "us2000demo"


def write_grid(
    real_grid: Path,
    dest: Path,
    version: int = 1,
    *,
    event: str = EVENT,
    grid_lon: tuple[float, float] = GRID_LON,
    grid_lat: tuple[float, float] = GRID_LAT,
    shaken_lon: tuple[float, float] = SHAKEN_LON,
    shaken_lat: tuple[float, float] = SHAKEN_LAT,
    epicentre: tuple[float, float] = (141.968, 42.782),
) -> Path:
    """A ShakeMap 3.5 grid in the real grid's exact layout (values synthetic).

    PGA 35 %g at cells whose centre lies in the ``shaken`` box, 2 %g elsewhere in the grid's box;
    by default over the demo scene.
    """
    GRID_LON, GRID_LAT, SHAKEN_LON, SHAKEN_LAT, EVENT = grid_lon, grid_lat, shaken_lon, shaken_lat, event
    head = real_grid.read_text()[:4000]
    fields = re.findall(r"<grid_field [^>]*/>", head)
    assert len(fields) == 11 and 'name="PGA" units="pctg"' in fields[2]
    lons = np.round(np.arange(GRID_LON[0], GRID_LON[1] + 1e-9, GRID_SPACING), 4)
    lats = np.round(np.arange(GRID_LAT[1], GRID_LAT[0] - 1e-9, -GRID_SPACING), 4)
    rows = []
    for lat in lats:
        for lon in lons:
            inside = (
                SHAKEN_LON[0] - 1e-9 <= lon <= SHAKEN_LON[1] + 1e-9
                and SHAKEN_LAT[0] - 1e-9 <= lat <= SHAKEN_LAT[1] + 1e-9
            )
            pga, mmi = (35.0, 8.1) if inside else (2.0, 4.2)
            rows.append(
                f"{lon:.4f} {lat:.4f} {pga} {pga * 0.9:.2f} {mmi} {pga * 1.8:.2f} {pga:.2f} "
                f"{pga / 4:.2f} 0.55 1 600"
            )
    dest.write_text(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<shakemap_grid xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns="http://earthquake.usgs.gov/eqcenter/shakemap" '
        f'event_id="{EVENT}" shakemap_id="{EVENT}" shakemap_version="{version}" code_version="3.5.1604" '
        'process_timestamp="2018-09-06T20:00:00Z" shakemap_originator="us" map_status="RELEASED" '
        'shakemap_event_type="ACTUAL">\n'
        f'<event event_id="{EVENT}" magnitude="6.6" depth="35" lat="{epicentre[1]}" lon="{epicentre[0]}" '
        'event_timestamp="2018-09-06T18:07:59UTC" event_network="us" '
        'event_description="demo scene (synthetic)" />\n'
        f'<grid_specification lon_min="{lons[0]:.6f}" lat_min="{lats[-1]:.6f}" lon_max="{lons[-1]:.6f}" '
        f'lat_max="{lats[0]:.6f}" nominal_lon_spacing="{GRID_SPACING:.6f}" '
        f'nominal_lat_spacing="{GRID_SPACING:.6f}" '
        f'nlon="{len(lons)}" nlat="{len(lats)}" />\n'
        + "\n".join(fields)
        + "\n<grid_data>\n"
        + "\n".join(rows)
        + "\n</grid_data>\n</shakemap_grid>\n"
    )
    return dest


def write_detail(
    real_detail: Path, dest: Path, grid_url: str, version: int = 1, *, keep_event: bool = False
) -> Path:
    """The real Hokkaido detail document with a loopback grid URL, moved onto the demo event.

    With ``keep_event`` its id and epicentre stay the real ones (only the grid URL is rewritten).
    """
    doc = json.loads(real_detail.read_text())
    sm = doc["properties"]["products"]["shakemap"][0]
    if not keep_event:
        doc["id"] = EVENT
        doc["geometry"]["coordinates"] = [141.968, 42.782, 35.0]
        sm["code"] = EVENT
    sm["properties"]["version"] = str(version)
    sm["contents"]["download/grid.xml"]["url"] = grid_url
    dest.write_text(json.dumps(doc))
    return dest


def write_feed(feed_demo: Path, dest: Path, detail_url: str) -> Path:
    """The demo feed with the demo event's ``detail`` pointing at the loopback detail document."""
    doc = json.loads(feed_demo.read_text())
    for f in doc["features"]:
        if f["id"] == EVENT:
            f["properties"]["detail"] = detail_url
    dest.write_text(json.dumps(doc))
    return dest


def cloudy_scene_catalog(dest_dir: Path) -> tuple[Path, dict[str, object]]:
    """Copy the demo scene to ``dest_dir`` with a cloudy first scene; return (catalog, clear item).

    The catalog at first holds the cloudy scene and the DEM; append the returned clear item to
    its ``features`` to add the clear scene.
    """
    shutil.copytree(DEMO_DIR, dest_dir, dirs_exist_ok=True)
    with rasterio.open(dest_dir / "SCL.tif") as src:
        profile, scl = src.profile, src.read(1)
    scl[:, scl.shape[1] // 2 :] = 9  # cloud, high probability
    with rasterio.open(dest_dir / "SCL_cloudy.tif", "w", **profile) as dst:
        dst.write(scl, 1)
    doc = json.loads(DEMO_CATALOG.read_text())
    clear = next(f for f in doc["features"] if f["id"] == DEMO_S2_ITEM_ID)
    cloudy = json.loads(json.dumps(clear))
    cloudy["id"] = CLOUDY_ID
    cloudy["properties"]["datetime"] = "2018-09-09T01:36:49.000000Z"
    cloudy["properties"]["eo:cloud_cover"] = 30.0
    cloudy["assets"]["SCL"]["href"] = "./SCL_cloudy.tif"
    for link in cloudy.get("links", []):
        if link.get("rel") == "self":
            link["href"] = link["href"].replace(DEMO_S2_ITEM_ID, CLOUDY_ID)
    pre = json.loads(json.dumps(clear))
    pre["id"], pre["properties"]["datetime"] = PRE_ID, "2018-08-25T01:36:49.000000Z"
    doc["features"] = [cloudy if f["id"] == DEMO_S2_ITEM_ID else f for f in doc["features"]] + [pre]
    (dest_dir / "catalog.json").write_text(json.dumps(doc))
    return dest_dir / "catalog.json", clear


def add_item(catalog: Path, item: dict[str, object]) -> None:
    """Add an item to a static ItemCollection (a new scene arriving in the catalog)."""
    doc = json.loads(catalog.read_text())
    doc["features"].append(item)
    catalog.write_text(json.dumps(doc))
