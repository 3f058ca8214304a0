"""ShakeMap-driven areas: the real 3.5 grids, a ShakeMap 4 grid, land, tiles, flat terrain, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box, shape

from pipeline.cli import main
from pipeline.event.area import geodesic_km2
from pipeline.event.land import clip_to_land, land
from pipeline.event.shakemap import ShakeGrid, ShakeMapError, parse_grid, shaken_area
from pipeline.event.tiles import AreaTile, added_tiles, dem_overview_probe, mark_flat, split_tiles

LOMA = "usgs/shakemap/lomaprieta1989_19891018000415_atlas_grid.xml"
HAWAII = "usgs/shakemap/us1000dyad_hawaii2018_sm35_v6_grid.xml"
COP_DEM = "rasters/cop-dem-glo-30/Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"

#: A ShakeMap 4 grid.xml, written the way ShakeMap 4's ``gridxml`` module and mapio's ``ShakeGrid``
#: write it: fields in IMT order (MMI before PGA), PGA/PSA in %g, PGV in cm/s, SVEL in m/s, the
#: event's point_source/seismic_stations attributes, event_specific_uncertainty elements.
#: SYNTHETIC values on a 4 x 3 grid (only the layout is ShakeMap 4's).
GRID_V4 = """<?xml version="1.0" encoding="US-ASCII" standalone="yes"?>
<shakemap_grid xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://earthquake.usgs.gov/eqcenter/shakemap" xsi:schemaLocation="http://earthquake.usgs.gov http://earthquake.usgs.gov/eqcenter/shakemap/xml/schemas/shakemap.xsd" event_id="us9999test" shakemap_id="us9999test" shakemap_version="3" code_version="4.1.2" process_timestamp="2020-01-01T00:00:00Z" shakemap_originator="us" map_status="RELEASED" shakemap_event_type="ACTUAL">
<event event_id="us9999test" magnitude="6.5" depth="10.0" lat="37.000000" lon="-122.000000" event_timestamp="2020-01-01T00:00:00Z" event_network="us" event_description="synthetic test grid" intensity_observations="0" seismic_stations="0" point_source="True" />
<grid_specification lon_min="-122.100000" lat_min="36.950000" lon_max="-121.950000" lat_max="37.050000" nominal_lon_spacing="0.050000" nominal_lat_spacing="0.050000" nlon="4" nlat="3" />
<event_specific_uncertainty name="pga" value="0.000000" numsta="" />
<event_specific_uncertainty name="pgv" value="0.000000" numsta="" />
<event_specific_uncertainty name="mmi" value="0.000000" numsta="" />
<grid_field index="1" name="LON" units="dd" />
<grid_field index="2" name="LAT" units="dd" />
<grid_field index="3" name="MMI" units="intensity" />
<grid_field index="4" name="PGA" units="%g" />
<grid_field index="5" name="PGV" units="cm/s" />
<grid_field index="6" name="PSA03" units="%g" />
<grid_field index="7" name="PSA10" units="%g" />
<grid_field index="8" name="PSA30" units="%g" />
<grid_field index="9" name="SVEL" units="m/s" />
<grid_data>
-122.1000 37.0500 5.1 4.0 3.1 8.0 4.0 1.0 760
-122.0500 37.0500 6.2 12.0 9.0 20.0 10.0 3.0 760
-122.0000 37.0500 6.8 15.0 12.0 30.0 15.0 4.0 400
-121.9500 37.0500 5.0 6.0 4.0 9.0 5.0 1.5 400
-122.1000 37.0000 5.5 9.9 4.0 8.0 4.0 1.0 760
-122.0500 37.0000 7.1 25.0 20.0 45.0 22.0 6.0 760
-122.0000 37.0000 7.6 40.0 35.0 70.0 35.0 9.0 400
-121.9500 37.0000 6.0 10.0 8.0 18.0 9.0 2.0 400
-122.1000 36.9500 4.0 2.0 1.0 3.0 1.5 0.5 760
-122.0500 36.9500 5.6 8.0 6.0 14.0 7.0 2.0 760
-122.0000 36.9500 6.1 11.0 9.0 19.0 10.0 3.0 400
-121.9500 36.9500 5.2 5.0 3.0 8.0 4.0 1.0 400
</grid_data>
</shakemap_grid>
"""  # noqa: E501


@pytest.fixture(scope="module")
def loma(shared_data: Path) -> ShakeGrid:
    return parse_grid(shared_data / LOMA)


def test_parse_real_shakemap_35_grids(loma: ShakeGrid, shared_data: Path) -> None:
    assert (loma.event_id, loma.version, loma.layout, loma.magnitude) == ("19891018000415", 1, "3.5", 6.9)
    assert loma.pga_g.shape == (193, 241) and not np.isnan(loma.pga_g).any()
    # first data row of the file: -125.3800 39.4340 PGA 0.52 %g, MMI 3.61
    assert loma.pga_g[0, 0] == pytest.approx(0.0052) and loma.mmi[0, 0] == pytest.approx(3.61)
    assert float(np.max(loma.pga_g)) == pytest.approx(0.8502, abs=1e-4)
    # the epicentre cell shook hard
    assert loma.value_at(loma.pga_g, loma.lon, loma.lat) > 0.3
    hawaii = parse_grid(shared_data / HAWAII)
    assert (hawaii.event_id, hawaii.version, hawaii.layout) == ("us1000dyad", 6, "3.5")
    assert hawaii.pga_g.shape == (211, 271)


def test_shakemap_4_layout_synthetic(tmp_path: Path) -> None:
    path = tmp_path / "grid.xml"
    path.write_text(GRID_V4)
    g = parse_grid(path)
    assert (g.layout, g.version, g.event_id) == ("4", 3, "us9999test")
    # fields found by name and index: MMI is field 3, PGA (%g) field 4
    assert g.pga_g[1, 2] == pytest.approx(0.40) and g.mmi[1, 2] == pytest.approx(7.6)
    area = shaken_area(g, pga_g=0.10)
    cells = [
        (-122.05, 37.05),
        (-122.0, 37.05),
        (-122.05, 37.0),
        (-122.0, 37.0),
        (-121.95, 37.0),
        (-122.0, 36.95),
    ]
    assert area.area == pytest.approx(len(cells) * 0.05 * 0.05)  # 9.9 %g is below 0.10 g
    for lon, lat in cells:
        assert area.contains(shape({"type": "Point", "coordinates": [lon, lat]}))
    by_mmi = shaken_area(g, mmi=7.0)
    assert by_mmi.area == pytest.approx(2 * 0.05 * 0.05)


def test_bad_grids_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<html>not a grid</html>")
    with pytest.raises(ShakeMapError, match="not a ShakeMap grid"):
        parse_grid(bad)
    bad.write_text(GRID_V4.replace('units="%g"', 'units="furlongs"', 1))
    with pytest.raises(ShakeMapError, match="unknown units"):
        parse_grid(bad)
    bad.write_text(GRID_V4.replace("-121.9500 36.9500 5.2 5.0 3.0 8.0 4.0 1.0 400\n", ""))
    with pytest.raises(ShakeMapError, match="not 4 x 3 rows"):
        parse_grid(bad)


def test_loma_prieta_area_on_land_is_larger_than_keefer(loma: ShakeGrid) -> None:
    shaken = shaken_area(loma)
    on_land = clip_to_land(shaken, land())
    assert 0 < geodesic_km2(on_land) < geodesic_km2(shaken)
    # the Santa Cruz Mountains (where the ~1,300 landslides were) are inside; the open Pacific is not
    assert on_land.contains(shape({"type": "Point", "coordinates": [-121.95, 37.1]}))
    assert not on_land.intersects(box(-124.5, 36.0, -124.0, 36.5))
    assert geodesic_km2(on_land) > math.pi * 50**2


def test_tiles_cover_the_area_once(loma: ShakeGrid) -> None:
    area = clip_to_land(shaken_area(loma), land())
    tiles = split_tiles(area, 0.2)
    assert len({t.id for t in tiles}) == len(tiles)
    assert sum(t.area_km2 for t in tiles) == pytest.approx(geodesic_km2(area), rel=0.01)
    for t in tiles:
        assert box(*t.bbox).intersects(area)


@settings(max_examples=40, deadline=None)
@given(
    w=st.floats(-170, 170), s=st.floats(-70, 70), dw=st.floats(0.01, 1.5), dh=st.floats(0.01, 1.5),
    tile=st.sampled_from([0.05, 0.1, 0.2, 0.25]),
)  # fmt: skip
def test_tiles_property(w: float, s: float, dw: float, dh: float, tile: float) -> None:
    area = box(w, s, w + dw, s + dh)
    tiles = split_tiles(area, tile)
    # the tiles' boxes cover the area, lie inside it (up to rounding) and are in distinct cells
    union = box(*tiles[0].bbox)
    for t in tiles[1:]:
        union = union.union(box(*t.bbox))
    assert union.buffer(1e-9).contains(area)
    assert area.buffer(2e-4).contains(union)
    assert len({t.id for t in tiles}) == len(tiles)
    # growing the area adds tiles or grows boxes; an unchanged area adds nothing
    assert added_tiles(tiles, tiles) == []
    grown = split_tiles(box(w, s, w + dw + tile, s + dh), tile)
    added = {t.id for t in added_tiles(tiles, grown)}
    assert added and added <= {t.id for t in grown}


def test_flat_tiles_are_skipped_from_the_real_dem(shared_data: Path) -> None:
    probe = dem_overview_probe([str(shared_data / COP_DEM)])
    steep = probe((6.52, 0.26, 6.54, 0.28))  # Sao Tome's volcanic interior
    flat = probe((6.74, 0.32, 6.76, 0.34))  # its north-east coastal plain
    assert steep is not None and flat is not None and steep > 20 > 3 > flat
    assert probe((-10.0, 40.0, -9.9, 40.1)) is None  # no DEM there: unknown, kept
    assert probe((6.0, 0.0, 6.1, 0.1)) == 0.0  # the DEM covers only sea there: flat
    tiles = [AreaTile("a", (6.52, 0.26, 6.54, 0.28), 4.9), AreaTile("b", (6.74, 0.32, 6.76, 0.34), 4.9),
             AreaTile("c", (-10.0, 40.0, -9.9, 40.1), 90.0)]  # fmt: skip
    marked = mark_flat(tiles, probe)
    assert [t.skip for t in marked] == [None, "flat", None]
    assert mark_flat(tiles, None) == tiles


def test_event_area_command(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "area.geojson"
    assert main(["event-area", "--shakemap", str(shared_data / LOMA), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    props = doc["features"][0]["properties"]
    assert props["rule"] == "PGA >= 0.1 g" and props["shakemap_version"] == 1
    assert f"{props['land_km2']:,.1f} km2" in printed and "Keefer disc" in printed
    assert props["land_km2"] > props["keefer_disc_km2"]
    area = shape(doc["features"][0]["geometry"])
    assert -125.5 < area.bounds[0] and area.bounds[2] < -119.3  # WGS84 lon/lat
    assert len([f for f in doc["features"] if f["properties"]["kind"] == "tile"]) == props["tiles"]
    # a stricter threshold gives a smaller area
    out2 = tmp_path / "mmi.geojson"
    assert main(["event-area", "--shakemap", str(shared_data / LOMA), "--out", str(out2), "--mmi", "7"]) == 0
    assert json.loads(out2.read_text())["features"][0]["properties"]["land_km2"] < props["land_km2"]


def test_event_area_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["event-area", "--shakemap", str(tmp_path / "no.xml"), "--out", str(tmp_path / "a.geojson")])
        == 2
    )
    assert (
        capsys.readouterr().err.strip()
        == f"landslide: error: ShakeMap grid {tmp_path / 'no.xml'} does not exist"
    )
    (tmp_path / "x.xml").write_text("garbage")
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "event-area", "--shakemap", str(tmp_path / "x.xml"), "--out",
         str(tmp_path / "a.geojson")], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("landslide: error: cannot read ShakeMap grid")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_event_area_reports_what_is_swept(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The km2 printed "to sweep" is the area of the tile boxes written (EPSG:6933), not of the area."""
    import geopandas as gpd

    out = tmp_path / "hawaii.geojson"
    assert main(["event-area", "--shakemap", str(shared_data / HAWAII), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    frame = gpd.GeoDataFrame.from_features(doc["features"], crs=4326)
    boxes = frame[(frame["kind"] == "tile") & frame["skip"].isna()]
    assert len(boxes) == 20
    union = gpd.GeoSeries([boxes.union_all()], crs=4326).to_crs(6933)
    boxes_km2 = float(union.area.iloc[0]) / 1e6
    swept = frame[frame["kind"] == "swept"].to_crs(6933)
    assert len(swept) == 1 and float(swept.area.iloc[0]) / 1e6 == pytest.approx(boxes_km2, rel=1e-6)
    assert boxes_km2 == pytest.approx(5829, abs=1)  # the figure for these 20 boxes
    assert doc["features"][0]["properties"]["swept_km2"] == pytest.approx(boxes_km2, abs=0.1)
    line = next(ln for ln in printed.splitlines() if ln.startswith("to sweep"))
    assert line.split()[2] == f"{boxes_km2:,.1f}" and "20 tile box(es)" in line
    land_km2 = doc["features"][0]["properties"]["land_km2"]
    assert land_km2 < boxes_km2  # the boxes hold more than the area: that is what gets swept
