"""The earthquake watch end to end with a ShakeMap: plan, version 1, version 2 as imagery clears.

A real detail document (rewritten onto the demo event, see :mod:`.shakemap_fixtures`) and its
ShakeMap grid are served over loopback HTTP; the catalog is the demo scene's, first with a cloudy
scene only, then with the clear scene added. Real sweeps on a real Dask LocalCluster (tiny U-Net).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from prefect.client.orchestration import get_client

from flows.earthquake_watch import earthquake_watch, main
from pipeline.event.mosaic import EventGrid, tile_regions
from pipeline.store import read_attrs

from ..event import shakemap_fixtures as fx
from ..servers import blob_server
from .conftest import FEED_DEMO


def _poll(feed: str, out: Path, catalog: Path, ckpt: Path, now: str) -> dict[str, Any]:
    return earthquake_watch(
        feed=feed, out_dir=str(out), catalog=str(catalog), checkpoint=str(ckpt), block=512, now=now,
        retry_delay_s=0.1, workers=1, tile_deg=fx.TILE_DEG, ndvi_pre_days=30,
    )  # fmt: skip


def _record(out: Path) -> dict[str, Any]:
    return json.loads((out / "events.json").read_text())["events"][fx.EVENT]


def _mtimes(path: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in [path, *path.rglob("*")]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Any:
    root = tmp_path_factory.mktemp("usgs")
    with blob_server(root) as (base, _):
        fx.write_grid(
            shared_data / "usgs/shakemap/lomaprieta1989_19891018000415_atlas_grid.xml", root / "grid.xml"
        )
        fx.write_detail(
            shared_data / "usgs/detail/us2000h8ty_hokkaido2018_detail_20181116.geojson",
            root / "detail.geojson", f"{base}/grid.xml",
        )  # fmt: skip
        fx.write_feed(FEED_DEMO, root / "feed.geojson", f"{base}/detail.geojson")
        yield f"{base}/feed.geojson"


#: The tiny U-Net's weights with a threshold under every probability it gives: every valid pixel
#: is a landslide, so the observed area is the clear area, known from the store alone.
EAGER_THRESHOLD = 1e-4


@pytest.fixture(scope="module")
def eager_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_unet_checkpoint: Path) -> Path:
    from safetensors.torch import load_file

    from pipeline.models.checkpoint import read_meta, save_checkpoint

    meta = dataclasses.replace(read_meta(tiny_unet_checkpoint), threshold=EAGER_THRESHOLD)
    path = tmp_path_factory.mktemp("eager") / "eager-unet.safetensors"
    save_checkpoint(path, load_file(str(tiny_unet_checkpoint)), meta)
    return path


@pytest.fixture(scope="module")
def polls(tmp_path_factory: pytest.TempPathFactory, served: str, eager_checkpoint: Path) -> dict[str, Any]:
    tiny_unet_checkpoint = eager_checkpoint
    out = tmp_path_factory.mktemp("quakes")
    catalog, clear = fx.cloudy_scene_catalog(tmp_path_factory.mktemp("scene"))
    first = _poll(served, out, catalog, tiny_unet_checkpoint, "2018-09-10T00:00:00Z")
    rec1 = _record(out)
    fx.add_item(catalog, clear)  # a clear scene arrives
    second = _poll(served, out, catalog, tiny_unet_checkpoint, "2018-09-12T00:00:00Z")
    rec2 = _record(out)
    before = _mtimes(out / fx.EVENT)
    third = _poll(served, out, catalog, tiny_unet_checkpoint, "2018-09-12T06:00:00Z")
    return {
        "out": out,
        "reports": [first, second, third],
        "records": [rec1, rec2, _record(out)],
        "before": before,
    }


def test_version_ndvi_change_evidence(polls: dict[str, Any]) -> None:
    """Pre-event NDVI (a copy of the clear scene) against each version's post-event composite."""
    out = polls["out"] / fx.EVENT / "mosaic.zarr"
    v1 = xr.open_zarr(str(out / "v1-ndvi.zarr"))
    v2 = xr.open_zarr(str(out / "v2-ndvi.zarr"))
    assert v1.attrs["landslide:pre_scenes"] == [fx.PRE_ID]
    pre, drop1, drop2 = (np.asarray(a.values) for a in (v1["ndvi_pre"], v1["ndvi_drop"], v2["ndvi_drop"]))
    inside = np.isfinite(pre)
    assert inside.sum() > 0.5 * 640 * 384 and np.nanmax(pre) > 0.6  # vegetated parts of the scene
    # the same pixels before and after: no drop where both composites are clear
    assert np.nanmax(np.abs(drop2)) < 1e-6 and np.isfinite(drop2[inside]).mean() > 0.99
    # version 1's post composite is the cloudy scene: its cloudy half has no evidence
    assert 0.2 < np.isfinite(drop1[inside]).mean() < 0.8
    summary = json.loads((polls["out"] / fx.EVENT / "v2" / "summary.json").read_text())
    assert summary["change_evidence"]["ndvi_pre_days"] == 30
    polys = json.loads((polls["out"] / fx.EVENT / "v2" / "landslides.geojson").read_text())["features"]
    assert all("ndvi_pre" in f["properties"] and "ndvi_drop" in f["properties"] for f in polys)


def test_shakemap_plans_the_area_and_writes_version_1(polls: dict[str, Any]) -> None:
    out, rec1 = polls["out"], polls["records"][0]
    assert rec1["area_source"] == "shakemap" and rec1["shakemaps_done"] == [f"{fx.EVENT}:us:1"]
    assert rec1["shakemap"]["layout"] == "3.5" and rec1["shakemap"]["version"] == "1"
    assert sorted(t["id"] for t in rec1["tiles"]) == ["x2838y855", "x2839y855"]
    area = json.loads((out / fx.EVENT / "area.geojson").read_text())["features"][0]
    w, s, e, n = (
        fx.SHAKEN_LON[0] - 0.0025,
        fx.SHAKEN_LAT[0] - 0.0025,
        fx.SHAKEN_LON[1] + 0.0025,
        fx.SHAKEN_LAT[1] + 0.0025,
    )
    xs = (
        [p[0] for ring in area["geometry"]["coordinates"] for p in ring]
        if area["geometry"]["type"] == "Polygon"
        else []
    )
    assert xs and min(xs) == pytest.approx(w) and max(xs) == pytest.approx(e)
    assert area["properties"]["land_km2"] == pytest.approx(
        (e - w) * (n - s) * 111.2 * 111.2 * 0.734, rel=0.05
    )
    v1 = rec1["versions"][0]
    assert rec1["status"] == "watching" and v1["n"] == 1
    assert v1["scenes"] == [fx.CLOUDY_ID]
    assert v1["tile_coverage"]["x2838y855"] > 0.99  # west tile: clear
    assert 0.05 < v1["tile_coverage"]["x2839y855"] < 0.6  # east tile: half under cloud
    assert v1["store"] == "mosaic.zarr/v1"  # one map: the whole event in one store
    assert (read_attrs(out / fx.EVENT / v1["store"]) or {}).get("landslide:status") == "complete"
    summary = json.loads((out / fx.EVENT / "v1" / "summary.json").read_text())
    assert summary["coverage"] == v1["coverage"] < 0.9
    assert summary["area"]["source"] == "shakemap" and summary["area"]["shakemap"]["version"] == "1"
    polys = json.loads((out / fx.EVENT / "v1" / "landslides.geojson").read_text())["features"]
    assert summary["observed"]["count"] == len(polys)
    km2 = sum(f["properties"]["area_m2"] for f in polys) / 1e6
    assert summary["observed"]["landslide_km2"] == pytest.approx(km2, abs=1e-6)
    # the exact colour: the whole swept area (~11 km2 of land) cannot hold 10 km2 of landslides
    # under this model, and what it holds decides between green and yellow
    # every clear pixel of the mosaic is a landslide (EAGER_THRESHOLD): the observed area is the
    # store's clear area, ~12 km2 for the demo scene half under cloud, so the alert is orange
    clear_km2 = float(xr.open_zarr(str(out / fx.EVENT / v1["store"]))["valid"].sum()) * 100.0 / 1e6
    assert km2 == pytest.approx(clear_km2, rel=0.01) and 10.0 <= clear_km2 < 100.0
    assert summary["alert"]["level"] == "orange"
    assert summary["alert"]["note"]  # partial coverage: a lower bound
    assert summary["model"]["sha256"] and summary["model"]["threshold"] == EAGER_THRESHOLD
    if summary["observed"]["count"]:
        # the swept regions reach past the PGA >= 0.1 g area: what is drawn there is counted too
        assert set(summary["observed"]["by_pga_g"]) <= {"0.2-0.4", "<0.1", "unknown"}


def test_version_2_after_a_clear_scene_has_higher_coverage(polls: dict[str, Any]) -> None:
    out, rec1, rec2 = polls["out"], polls["records"][0], polls["records"][1]
    assert polls["reports"][1]["watching"] + polls["reports"][1]["closed"] == [fx.EVENT]
    v1, v2 = rec2["versions"]
    assert v2["coverage"] > v1["coverage"] and v2["coverage"] > 0.95
    assert v2["swept_tiles"] == ["x2839y855"]  # only the tile that was not clear
    grid = EventGrid(**{**v2["grid"], "shape": tuple(v2["grid"]["shape"])})
    owned = tile_regions(grid, {t["id"]: tuple(t["bbox"]) for t in rec2["tiles"]})
    assert v2["regions"] == list(owned["x2839y855"])  # the regions of that tile only
    assert rec2["status"] == "closed"  # coverage passed close_coverage
    coll = json.loads((out / fx.EVENT / "collection.json").read_text())
    assert coll["landslide:current"] == "v2"
    assert [v["current"] for v in coll["landslide:versions"]] == [False, True]
    assert {lk["href"] for lk in coll["links"] if lk["rel"] == "item"} == {"v1/item.json", "v2/item.json"}
    assert json.loads((out / fx.EVENT / "v2" / "summary.json").read_text())["version"]["scenes"] == sorted(
        [fx.CLOUDY_ID, "S2_MSIL2A_20180911_T54TWN_L4S-DEMO"]
    )
    with get_client(sync_client=True) as client:  # the summary of each version is a Prefect artifact
        for v in (v1, v2):
            art = client.request("GET", "/artifacts/{id}", path_params={"id": v["artifact"]}).json()
            assert art["key"] == f"{fx.EVENT}-summary" and f'"coverage": {v["coverage"]}' in art["data"]
    assert rec1["versions"][0] == v1


def test_version_repeated_poll_does_nothing(polls: dict[str, Any]) -> None:
    out = polls["out"]
    assert len(polls["records"][2]["versions"]) == 2
    assert _mtimes(out / fx.EVENT) == polls["before"]


def test_shakemap_command_line_poll(served: str, tmp_path: Path) -> None:
    # no clear scene yet in the demo catalog's window: the area is planned, nothing swept
    argv = ["--feed", served, "--out", str(tmp_path), "--once", "--now", "2018-09-06T20:00:00Z",
            "--tile-deg", str(fx.TILE_DEG), "--catalog", "pipeline/demo/data/scene/catalog.json"]  # fmt: skip
    assert main(argv) == 0
    rec = _record(tmp_path)
    assert (
        rec["status"] == "pending" and rec["area_source"] == "shakemap" and rec["note"].startswith("waiting")
    )


def test_version_web_map_opens_in_browser(polls: dict[str, Any]) -> None:
    """Each version's web map (when the web map writer is installed) loads in headless Chromium."""
    from pipeline.products import webmap
    from pipeline.products.webmap import browser
    from tests.chromium import need_chromium

    need_chromium()  # skips without a browser, fails under CI=1
    out = polls["out"]
    index = out / fx.EVENT / "v2" / "map" / "index.html"
    assert index.is_file() and (out / fx.EVENT / "v1" / "map" / "index.html").is_file()
    html = index.read_text()
    assert "../../v1/map/index.html" in html and "version 2" in html  # the version list
    basemap_host = webmap.writer.DEFAULT_BASEMAP.split("/{z}")[0]
    with browser.Chromium(width=900, height=700) as page:
        page.navigate(index.as_uri())
        page.wait_for("window.landslideWebMap && window.landslideWebMap.ready")
        assert page.evaluate("landslideWebMap.errors") == []
        errors = [e for e in page.console if e.is_error and not e.url.startswith(basemap_host)]
        assert errors == []
