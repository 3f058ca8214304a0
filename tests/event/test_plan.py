"""An event's plan: ShakeMap versions, the Keefer fallback, the post-event window."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from pathlib import Path

import pytest

from pipeline.demo.scene import DEMO_CATALOG
from pipeline.event.config import PlanOptions
from pipeline.event.plan import plan_event, post_event_window
from pipeline.event.state import EventRecord

from . import shakemap_fixtures as fx
from .conftest import TEST_RADIUS_KM


def test_post_event_window() -> None:
    event = dt.datetime(2018, 9, 6, 18, 7, 59, tzinfo=dt.UTC)
    assert post_event_window(event, event + dt.timedelta(hours=3), 30) is None
    assert post_event_window(event, dt.datetime(2018, 9, 15, tzinfo=dt.UTC), 30) == (
        dt.date(2018, 9, 7), dt.date(2018, 9, 15))  # fmt: skip
    assert post_event_window(event, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 30)[1] == dt.date(2018, 10, 6)


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
