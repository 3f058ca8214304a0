"""The USGS documents: the feed and the detail document, through one reader."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipeline.event.usgs import FeedError, parse_feed, read_detail, read_feed, shakemap_ref

from .conftest import DEMO_EVENT, FEED_DEMO


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
