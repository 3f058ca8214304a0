"""The flows end to end in Prefect's test harness, on the demo catalog, with a real Dask cluster.

One real sweep by the watch (module fixture ``first_poll``): the demo earthquake inside the demo
scene, without a ShakeMap (the Keefer fallback), a 1.5 km disc (one tile, one 512 block), the tiny
U-Net; and one by ``regional_sweep`` (its idempotence). The ShakeMap path and map versions are in
``test_shakemap_versions.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort

from flows.earthquake_watch import earthquake_watch, main
from flows.regional_sweep import regional_sweep
from flows.storm_sweep import storm_sweep
from pipeline.demo.scene import DEMO_CATALOG
from pipeline.event.usgs import FeedUnreachableError
from pipeline.event.versions_store import version_polygons
from pipeline.store import read_attrs

from .conftest import DEMO_EVENT, FEED_NO_IMAGERY, LATE_EVENT, TEST_RADIUS_KM

BLOCK = 512


def _watch(feed: str, out: Path, now: str, **kw: Any) -> dict[str, Any]:
    return earthquake_watch(
        feed=feed, out_dir=str(out), catalog=str(DEMO_CATALOG), max_radius_km=TEST_RADIUS_KM,
        block=BLOCK, now=now, retry_delay_s=0.1, workers=2, use_shakemap=False, **kw,
    )  # fmt: skip


def _events(out: Path) -> dict[str, Any]:
    return json.loads((out / "events.json").read_text())["events"]


def _mtimes(path: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in [path, *path.rglob("*")]}


def _sweep_runs() -> list[Any]:
    with get_client(sync_client=True) as client:
        flows_named = FlowFilter(name=FlowFilterName(any_=["regional-sweep"]))
        return client.read_flow_runs(flow_filter=flows_named, sort=FlowRunSort.START_TIME_ASC, limit=200)


@pytest.fixture(scope="module")
def first_poll(
    tmp_path_factory: pytest.TempPathFactory,
    feed_server: tuple[str, dict[str, int]],
    tiny_unet_checkpoint: Path,
) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("watch")
    url = f"{feed_server[0]}/feed_demo.geojson"
    report = _watch(url, out, now="2018-09-15T00:00:00Z", checkpoint=str(tiny_unet_checkpoint))
    return out, report, str(tiny_unet_checkpoint)


def test_poll_sweeps_the_event_on_land_above_threshold(first_poll: tuple[Path, dict[str, Any], str]) -> None:
    out, report, _ = first_poll
    assert report["new"] == [DEMO_EVENT]  # listed twice in the feed, tracked once
    assert report["below_threshold"] == ["us2000small"]
    assert report["at_sea"] == ["us2000ocean"]
    assert report["closed"] == [DEMO_EVENT] and report["pending"] == []  # clear: coverage ~1
    rec = _events(out)[DEMO_EVENT]
    assert rec["area_source"] == "keefer" and "ShakeMaps not used" in rec["area_note"]
    (version,) = rec["versions"]
    assert version["window"] == ["2018-09-07", "2018-09-15"] and version["coverage"] > 0.99
    assert version["store"] == "mosaic.zarr/v1"  # one map of the event
    assert (read_attrs(out / DEMO_EVENT / version["store"]) or {}).get("landslide:status") == "complete"
    vdir = out / DEMO_EVENT / "v1"
    assert all((vdir / name).exists() for name in ("landslides.geojson", "probability.tif", "item.json"))
    assert version["scenes"] == ["S2_MSIL2A_20180911_T54TWN_L4S-DEMO"]
    summary = json.loads((vdir / "summary.json").read_text())
    assert summary["area"]["source"] == "keefer" and "by_pga_g" not in summary["observed"]
    # a Keefer-disc event: every polygon the map draws from the mosaic is counted, and the
    # dashed line is the outline of what was swept, labelled so
    drawn = version_polygons(out / DEMO_EVENT / version["store"])
    listed = json.loads((vdir / "landslides.geojson").read_text())["features"]
    assert summary["observed"]["count"] == len(listed) == len(drawn)
    swept = json.loads((vdir / "area.geojson").read_text())["features"]
    assert len(swept) == 1 and swept[0]["properties"]["label"] == "area swept"
    assert swept[0]["properties"]["swept_km2"] == summary["area"]["swept_km2"] > 0


def test_event_seen_again_is_not_swept_again(
    first_poll: tuple[Path, dict[str, Any], str], feed_server: tuple[str, dict[str, int]]
) -> None:
    out, _, ckpt = first_poll
    before, record = _mtimes(out / DEMO_EVENT), _events(out)[DEMO_EVENT]
    report = _watch(f"{feed_server[0]}/feed_demo.geojson", out, now="2018-09-16T00:00:00Z", checkpoint=ckpt)
    assert report["new"] == [] and DEMO_EVENT in report["known"] and report["closed"] == [DEMO_EVENT]
    assert _events(out)[DEMO_EVENT] == record
    assert _mtimes(out / DEMO_EVENT) == before


def test_rerun_of_a_finished_regional_sweep_does_nothing(
    tmp_path: Path, first_poll: tuple[Path, dict[str, Any], str]
) -> None:
    _, _, ckpt = first_poll
    args = {
        "event_id": "rerun", "bbox": [141.96, 42.775, 141.975, 42.785], "start": "2018-09-07",
        "end": "2018-09-15", "out_dir": str(tmp_path), "catalog": str(DEMO_CATALOG), "checkpoint": ckpt,
        "block": BLOCK, "workers": 1,
    }  # fmt: skip
    first = regional_sweep(**args)
    assert first["action"] == "swept"
    runs = len(_sweep_runs())
    before, products = _mtimes(tmp_path / "rerun.zarr"), _mtimes(tmp_path / "rerun")
    t0 = time.perf_counter()
    result = regional_sweep(**args)
    assert time.perf_counter() - t0 < 10
    assert result["action"] == "nothing_to_do"
    assert result["summary"] == first["summary"]
    assert len(_sweep_runs()) == runs + 1
    assert _mtimes(tmp_path / "rerun.zarr") == before
    assert _mtimes(tmp_path / "rerun") == products


def test_event_without_imagery_stays_pending_and_is_checked_again(tmp_path: Path) -> None:
    feed = str(FEED_NO_IMAGERY)
    first = _watch(feed, tmp_path, now="2018-09-25T00:00:00Z")
    assert first["new"] == [LATE_EVENT] and first["pending"] == [LATE_EVENT]
    rec1 = _events(tmp_path)[LATE_EVENT]
    assert rec1["checks"] == 1 and "no clear scenes yet" in rec1["note"]
    second = _watch(feed, tmp_path, now="2018-09-26T00:00:00Z")
    rec2 = _events(tmp_path)[LATE_EVENT]
    assert second["known"] == [LATE_EVENT] and second["pending"] == [LATE_EVENT]
    assert rec2["checks"] == 2 and rec2["last_checked"] > rec1["last_checked"]
    assert not (tmp_path / f"{LATE_EVENT}.zarr").exists()
    # past give_up_days without a clear scene: failed, and never checked again
    third = _watch(feed, tmp_path, now="2018-11-01T00:00:00Z")
    assert third["failed"] == [LATE_EVENT]
    _watch(feed, tmp_path, now="2018-11-02T00:00:00Z")
    assert _events(tmp_path)[LATE_EVENT]["checks"] == 3


def test_unreachable_feed_is_retried_then_fails_clearly(
    tmp_path: Path, closed_port_url: str, feed_server: tuple[str, dict[str, int]]
) -> None:
    t0 = time.perf_counter()
    with pytest.raises(
        FeedUnreachableError, match=r"cannot read the earthquake feed http://127\.0\.0\.1:\d+/.*refused"
    ):
        _watch(closed_port_url, tmp_path, now="2018-09-15T00:00:00Z")
    assert time.perf_counter() - t0 >= 0.1 + 0.2 + 0.4  # three retries with backoff
    base, hits = feed_server
    with pytest.raises(FeedUnreachableError, match="503"):
        _watch(f"{base}/down/4.5_day.geojson", tmp_path, now="2018-09-15T00:00:00Z")
    assert hits["/down/4.5_day.geojson"] == 4  # one try and three retries
    assert not (tmp_path / "events.json").exists()


def test_command_line_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--feed", str(FEED_NO_IMAGERY), "--catalog", str(DEMO_CATALOG), "--out", str(tmp_path), "--once",
            "--no-shakemap", "--min-magnitude", "6.0", "--now", "2018-09-25T00:00:00Z"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == [LATE_EVENT]
    assert main([*argv[:-2], "--min-magnitude", "6.5"]) == 0  # the threshold is respected
    assert main(["--feed", str(tmp_path / "nope.json"), "--out", str(tmp_path), "--once"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_storm_waits_for_its_wait_days(tmp_path: Path) -> None:
    args = {
        "event_id": "storm-demo", "bbox": [141.95, 42.77, 141.98, 42.79], "event_date": "2018-09-06",
        "out_dir": str(tmp_path), "catalog": str(DEMO_CATALOG), "wait_days": 7, "block": BLOCK,
    }  # fmt: skip
    early = storm_sweep(**args, now="2018-09-10T00:00:00Z")
    assert early["status"] == "pending" and early["note"].startswith("waiting")
    assert not (tmp_path / "storm-demo.zarr").exists()
