"""The parts without Prefect: feed parsing, the magnitude -> area rule, land, the events file."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from flows.event_state import EventRecord, EventState, StateBusyError
from flows.pending_events import post_event_window
from flows.sweep_area import landslide_radius_km, sweep_bbox
from flows.usgs_feed import FeedError, parse_feed, read_feed
from pipeline.demo.scene import DEMO_BBOX

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
