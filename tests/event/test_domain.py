"""The parts without Prefect: feed parsing, the magnitude -> area rule, land, the events file."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from pathlib import Path

import pytest

from pipeline.demo.scene import DEMO_BBOX, DEMO_CATALOG
from pipeline.event.config import PlanOptions
from pipeline.event.keefer import landslide_radius_km, sweep_bbox
from pipeline.event.plan import plan_event, post_event_window
from pipeline.event.state import EventBusyError, EventRecord, EventState, StateBusyError, event_lock
from pipeline.event.summary import alert_level, pga_bin_label
from pipeline.event.usgs import FeedError, parse_feed, read_detail, read_feed, shakemap_ref

from . import shakemap_fixtures as fx
from .conftest import DEMO_EVENT, FEED_DEMO, TEST_RADIUS_KM


def test_fixture_feed_has_the_real_feed_structure(shared_data: Path) -> None:
    real = json.loads((shared_data / "usgs" / "all_hour_2017-01-21.geojson").read_text())
    ours = json.loads(FEED_DEMO.read_text())
    assert ours.keys() == real.keys()
    assert ours["metadata"].keys() == real["metadata"].keys()
    for feature in ours["features"]:
        assert feature.keys() == real["features"][0].keys()
        assert feature["properties"].keys() == real["features"][0]["properties"].keys()


def test_parse_real_feed(shared_data: Path) -> None:
    quakes = parse_feed(read_feed(str(shared_data / "usgs" / "all_hour_2017-01-21.geojson")))
    assert len(quakes) == 4
    png = next(q for q in quakes if q.id == "us10007une")
    assert (png.magnitude, png.lon, png.lat, png.depth_km) == (4.8, 152.7595, -4.2685, 48.24)
    assert png.time == dt.datetime(2017, 1, 21, 20, 3, 57, 350000, tzinfo=dt.UTC)
    assert [q.time for q in quakes] == sorted(q.time for q in quakes)


def test_parse_feed_keeps_one_record_per_id_and_only_earthquakes() -> None:
    doc = json.loads(FEED_DEMO.read_text())
    blast = json.loads(json.dumps(doc["features"][1]))
    blast["id"], blast["properties"]["type"] = "blast1", "quarry blast"
    doc["features"].append(blast)
    ids = [q.id for q in parse_feed(doc)]
    assert ids.count(DEMO_EVENT) == 1
    assert "blast1" not in ids


def test_read_feed_errors(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="does not exist"):
        read_feed(str(tmp_path / "missing.geojson"))
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(FeedError, match="not a GeoJSON FeatureCollection"):
        read_feed(str(tmp_path / "x.json"))


def test_keefer_radius() -> None:
    # log10 A = M - 3.46: 219 km2 on average at M 5.8 (Keefer 2002)
    assert landslide_radius_km(5.8, n_sigma=0) == pytest.approx(math.sqrt(10**2.34 / math.pi))
    radii = [landslide_radius_km(m) for m in (5.0, 6.0, 6.6, 6.8)]
    assert radii == sorted(radii)
    assert landslide_radius_km(9.0) == 50.0
    assert landslide_radius_km(4.0) == 5.0
    assert landslide_radius_km(6.6, max_radius_km=TEST_RADIUS_KM) == TEST_RADIUS_KM


def test_land_mask() -> None:
    w, s, e, n = DEMO_BBOX
    centre = ((w + e) / 2, (s + n) / 2)
    box = sweep_bbox(*centre, TEST_RADIUS_KM)
    assert box is not None
    assert w < box[0] < box[2] < e and s < box[1] < box[3] < n
    assert sweep_bbox(-140.0, -30.0, 50.0) is None  # South Pacific
    # offshore epicentre 25 km south of Hokkaido's coast: swept, but only the land side
    coastal = sweep_bbox(142.5, 41.9, 40.0)
    assert coastal is not None and coastal[1] > 41.9 - 40 / 111.195 + 0.1


def test_post_event_window() -> None:
    event = dt.datetime(2018, 9, 6, 18, 7, 59, tzinfo=dt.UTC)
    assert post_event_window(event, event + dt.timedelta(hours=3), 30) is None
    assert post_event_window(event, dt.datetime(2018, 9, 15, tzinfo=dt.UTC), 30) == (
        dt.date(2018, 9, 7), dt.date(2018, 9, 15))  # fmt: skip
    assert post_event_window(event, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 30)[1] == dt.date(2018, 10, 6)


def test_events_file_is_locked_and_round_trips(tmp_path: Path) -> None:
    rec = EventRecord(
        id="e1", kind="storm", status="pending", bbox=[0, 0, 1, 1], event_time="2020-01-01T00:00:00+00:00",
        first_seen="x", updated="x",
    )  # fmt: skip
    with EventState(tmp_path) as state:
        state.add(rec)
        state.save()
        with pytest.raises(StateBusyError, match="another poll"), EventState(tmp_path):
            pass
    with EventState(tmp_path) as again:
        assert again.events["e1"] == rec


def test_shakemap_ref_of_real_detail_documents(shared_data: Path) -> None:
    detail = shared_data / "usgs" / "detail"
    hokkaido = shakemap_ref(read_detail(str(detail / "us2000h8ty_hokkaido2018_detail_20181116.geojson")))
    assert hokkaido is not None and (hokkaido.event_id, hokkaido.source, hokkaido.version) == (
        "us2000h8ty",
        "us",
        "10",
    )
    assert hokkaido.grid_url.endswith("/download/grid.xml") and hokkaido.key == "us2000h8ty:us:10"
    northridge = shakemap_ref(read_detail(str(detail / "ci3144585_northridge1994_detail_20211109.geojson")))
    assert northridge is not None and northridge.source == "atlas"
    doc = json.loads((detail / "us1000778i_kaikoura2016_detail_20211109.geojson").read_text())
    del doc["properties"]["products"]["shakemap"]
    assert shakemap_ref(doc) is None


def _quake(detail: str | None) -> EventRecord:
    return EventRecord(
        id=fx.EVENT, kind="earthquake", status="pending", bbox=[0, 0, 1, 1],
        event_time="2018-09-06T18:07:59+00:00", first_seen="x", updated="x", magnitude=6.6,
        lon=141.968, lat=42.782, detail=detail,
    )  # fmt: skip


def test_shakemap_version_dedupe_and_growth(tmp_path: Path, shared_data: Path) -> None:
    real_grid = shared_data / "usgs/shakemap/lomaprieta1989_19891018000415_atlas_grid.xml"
    real_detail = shared_data / "usgs/detail/us2000h8ty_hokkaido2018_detail_20181116.geojson"
    grid = fx.write_grid(real_grid, tmp_path / "grid-v1.xml")
    fx.write_detail(real_detail, tmp_path / "detail.json", str(grid))
    rec = _quake(str(tmp_path / "detail.json"))
    opts = PlanOptions(tile_deg=fx.TILE_DEG)
    log = logging.getLogger("test")
    added = plan_event(rec, str(tmp_path / "out"), opts, str(DEMO_CATALOG), log)
    assert sorted(t.id for t in added) == ["x2838y855", "x2839y855"]
    assert rec.area_source == "shakemap" and rec.shakemaps_done == [f"{fx.EVENT}:us:1"]
    assert all(t.max_slope_deg is not None and t.skip is None for t in rec.tiles)  # the demo DEM is steep
    # the same ShakeMap version again: nothing new
    assert plan_event(rec, str(tmp_path / "out"), opts, str(DEMO_CATALOG), log) == []
    # version 2 shakes a larger area (one more column of cells, centred on 142.0 E)
    grown = tmp_path / "grid-v2.xml"
    text = grid.read_text().replace('shakemap_version="1"', 'shakemap_version="2"')
    rows = [
        " ".join([f"{142.0:.4f}", f"{float(r.split()[1]):.4f}", "35.0", *r.split()[3:]])
        if r.startswith("142.0000") and 42.775 <= float(r.split()[1]) <= 42.79 else r
        for r in text.splitlines()
    ]  # fmt: skip
    grown.write_text("\n".join(rows) + "\n")
    fx.write_detail(real_detail, tmp_path / "detail.json", str(grown), version=2)
    added2 = plan_event(rec, str(tmp_path / "out"), opts, str(DEMO_CATALOG), log)
    # the new tile, and the tile whose part grew (141.9975 -> 142.0 E); the west tile keeps its store
    assert sorted(t.id for t in added2) == ["x2839y855", "x2840y855"]
    assert rec.shakemaps_done == [f"{fx.EVENT}:us:1", f"{fx.EVENT}:us:2"]


def test_keefer_fallback_says_why(tmp_path: Path, closed_port_url: str) -> None:
    rec = _quake(closed_port_url)
    added = plan_event(
        rec,
        str(tmp_path),
        PlanOptions(max_radius_km=TEST_RADIUS_KM),
        str(DEMO_CATALOG),
        logging.getLogger("t"),
    )
    assert (
        rec.area_source == "keefer"
        and "detail document unreadable" in rec.area_note
        and "refused" in rec.area_note
    )
    assert len(added) == 1 and rec.shakemaps_done == []
    area = json.loads((tmp_path / fx.EVENT / "area.geojson").read_text())["features"][0]["properties"]
    assert area["source"] == "keefer" and area["land_km2"] == pytest.approx(
        math.pi * TEST_RADIUS_KM**2, rel=0.05
    )


def test_alert_levels_and_pga_bins() -> None:
    assert [alert_level(a) for a in (0.0, 0.99, 1.0, 9.9, 10.0, 99.0, 100.0, 5e3)] == [
        "green", "green", "yellow", "yellow", "orange", "orange", "red", "red"]  # fmt: skip
    assert [pga_bin_label(g) for g in (0.05, 0.1, 0.15, 0.3, 0.5, 0.9, float("nan"))] == [
        "<0.1", "0.1-0.2", "0.1-0.2", "0.2-0.4", "0.4-0.8", ">=0.8", "unknown"]  # fmt: skip


def test_event_lock_keeps_two_sweeps_of_one_event_apart(tmp_path: Path) -> None:
    with event_lock(tmp_path, "e1"):
        with (
            pytest.raises(EventBusyError, match="being swept by another process"),
            event_lock(tmp_path, "e1"),
        ):
            pass
        with event_lock(tmp_path, "e2"):  # another event is fine
            pass
    with event_lock(tmp_path, "e1"):
        pass
