"""An event at scale, end to end: the real Hokkaido 2018 detail document, a Planetary-Computer-shaped
scene over four event tiles, a loopback STAC API; version 1 is one map, version 2 changes only the
regions of the one tile a new clear scene improved, and shares every other chunk with version 1.

What is stood in for: the internet (the detail document and a synthetic ShakeMap grid in the real
3.5 layout are served on loopback; the catalog is ``rustac serve`` over the scene's items) and the
model (a tiny seeded U-Net). Tiles are 0.02 degree (the watch's ``tile_deg``, ~160 x 220 px here)
and regions 512 px (``block``, the smallest the sweep takes: 5.12 km, larger than a tile). A
region belongs to the tile it overlaps most, so four small tiles still own a region each when they
meet near a corner of the region lattice: the four tiles' common corner (141.96 E, 42.68 N) lies
~100 m from one (UTM 54), so the event grid is 2 x 2 regions, one per tile, while the scene need
only cover the tiles (every tile's coverage is measured over its own footprint). The arithmetic is
the same at 0.2 degree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from pyproj import Transformer
from rasterio.features import geometry_mask

from flows.earthquake_watch import earthquake_watch
from pipeline.demo.pc_scene import build_pc_scene
from pipeline.event.mosaic import EventGrid, footprint, tile_regions

from ..event import shakemap_fixtures as fx
from ..servers import absolute_items, blob_server, stac_api

EVENT = "us2000h8ty"
EPICENTRE = (141.9294, 42.6861)  # the detail document's
TILE_DEG = 0.02
BLOCK = 512
#: PGA >= 0.1 g over exactly four tiles: x7097..x7098, y2133..y2134 (each owns one 512-px region).
SHAKEN_LON, SHAKEN_LAT = (141.9425, 141.9775), (42.6625, 42.6975)
SCENE_BBOX = (141.915, 42.648, 141.996, 42.712)
CLOUDY_TILE = "x7098y2134"


def _tiles() -> dict[str, tuple[float, float, float, float]]:
    return {
        f"x{i}y{j}": (i * TILE_DEG, j * TILE_DEG, (i + 1) * TILE_DEG, (j + 1) * TILE_DEG)
        for i in (7097, 7098)
        for j in (2133, 2134)
    }


def _cloud_over(scene_dir: Path, items: list[dict[str, Any]], cloud: Any, epsg: int) -> None:
    """Mark SCL cloud (9) inside ``cloud`` (a polygon in ``epsg``) in every item's SCL (a new file)."""
    for it in items:
        asset = it["assets"]["SCL"]
        src_path = scene_dir / asset["href"]
        with rasterio.open(src_path) as src:
            profile, scl = src.profile, src.read(1)
            fwd = Transformer.from_crs(epsg, src.crs, always_xy=True).transform
            geom = shapely.transform(cloud, lambda xy, f=fwd: np.column_stack(f(xy[:, 0], xy[:, 1])))
            inside = geometry_mask([geom], out_shape=scl.shape, transform=src.transform, invert=True)
        scl[inside & (scl != 0)] = 9
        dest = src_path.with_name("SCL_cloudy.tif")
        with rasterio.open(dest, "w", **{**profile, "driver": "GTiff"}) as dst:
            dst.write(scl, 1)
        asset["href"] = Path(asset["href"]).with_name("SCL_cloudy.tif").as_posix()
        it["properties"]["eo:cloud_cover"] = 20.0


@pytest.fixture(scope="module")
def event_run(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tiny_unet_checkpoint: Path
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("usgs")
    scene_dir = tmp_path_factory.mktemp("pc")
    scene = build_pc_scene(scene_dir, acquisitions=2, bbox=SCENE_BBOX, clouds=False)
    doc = json.loads(scene.catalog.read_text())
    first_day = min(
        f["properties"]["datetime"] for f in doc["features"] if f["collection"] == "sentinel-2-l2a"
    )
    first = [
        f
        for f in doc["features"]
        if f["collection"] != "sentinel-2-l2a" or f["properties"]["datetime"] == first_day
    ]
    later = [f for f in doc["features"] if f not in first]
    # version 1's scenes: cloud over the inside of one tile's regions (clear everywhere else)
    grid_v = _event_grid()
    owned = tile_regions(grid_v, _tiles())
    by = {r.index: r for r in grid_v.regions()}
    cloud = shapely.union_all([grid_v.region_box(by[i]) for i in owned[CLOUDY_TILE]])
    cloud = cloud.intersection(footprint(_tiles()[CLOUDY_TILE], grid_v.epsg)).buffer(-150.0)
    _cloud_over(scene_dir, [f for f in first if f["collection"] == "sentinel-2-l2a"], cloud, grid_v.epsg)
    (scene_dir / "v1.json").write_text(json.dumps({**doc, "features": first}))
    (scene_dir / "v2.json").write_text(json.dumps({**doc, "features": first + later}))
    out = tmp_path_factory.mktemp("quakes")
    with blob_server(root) as (base, _):
        fx.write_grid(
            shared_data / "usgs/shakemap/lomaprieta1989_19891018000415_atlas_grid.xml", root / "grid.xml",
            event=EVENT, grid_lon=(141.90, 142.02), grid_lat=(42.64, 42.72), shaken_lon=SHAKEN_LON,
            shaken_lat=SHAKEN_LAT, epicentre=EPICENTRE,
        )  # fmt: skip
        detail = fx.write_detail(
            shared_data / "usgs/detail/us2000h8ty_hokkaido2018_detail_20181116.geojson",
            root / "detail.geojson", f"{base}/grid.xml", keep_event=True,
        )  # fmt: skip
        d = json.loads(detail.read_text())
        feed = {"type": "FeatureCollection", "metadata": {"title": "test feed"}, "features": [{
            "type": "Feature", "id": EVENT, "geometry": d["geometry"],
            "properties": {**{k: d["properties"][k] for k in ("mag", "time", "updated", "place", "type")},
                           "detail": f"{base}/detail.geojson"},
        }]}  # fmt: skip
        (root / "feed.geojson").write_text(json.dumps(feed))
        reports, records = [], []
        for items, now in (("v1.json", "2018-09-13T00:00:00Z"), ("v2.json", "2018-09-18T00:00:00Z")):
            with stac_api(absolute_items(scene_dir / items, scene_dir / f"abs-{items}")) as api:
                reports.append(earthquake_watch(
                    feed=f"{base}/feed.geojson", out_dir=str(out), catalog=api,
                    checkpoint=str(tiny_unet_checkpoint), block=BLOCK, now=now, retry_delay_s=0.1,
                    workers=1, tile_deg=TILE_DEG, max_radius_km=50.0,
                ))  # fmt: skip
            records.append(json.loads((out / "events.json").read_text())["events"][EVENT])
    return {"out": out / EVENT, "reports": reports, "records": records, "grid": grid_v, "owned": owned}


def _event_grid() -> EventGrid:
    from pipeline.event.mosaic import event_grid

    return event_grid(_tiles().values(), EPICENTRE, BLOCK)


def test_version_1_is_one_map_of_the_whole_event(event_run: dict[str, Any]) -> None:
    edir, rec1 = event_run["out"], event_run["records"][0]
    assert rec1["area_source"] == "shakemap" and sorted(t["id"] for t in rec1["tiles"]) == sorted(_tiles())
    v1 = rec1["versions"][0]
    assert v1["store"] == "mosaic.zarr/v1" and sorted(v1["swept_tiles"]) == sorted(_tiles())
    # the layout the test is about: four tiles, each owning one region of a 2 x 2 grid
    assert event_run["grid"].shape == (2 * BLOCK, 2 * BLOCK)
    assert sorted(event_run["owned"].values()) == [(0,), (1,), (2,), (3,)]
    ds = xr.open_zarr(str(edir / v1["store"]))  # one call opens the whole event
    assert ds.sizes["y"] == event_run["grid"].shape[0] and ds.sizes["x"] == event_run["grid"].shape[1]
    assert ds.attrs["proj:code"] == "EPSG:32654"
    with rasterio.open(edir / "v1" / "probability.tif") as cog:  # one COG of the whole event
        assert (cog.height, cog.width) == event_run["grid"].shape
    assert (edir / "v1" / "map" / "index.html").is_file()
    assert v1["tile_coverage"][CLOUDY_TILE] < 0.9
    assert all(v1["tile_coverage"][t] > 0.995 for t in _tiles() if t != CLOUDY_TILE)
    summary = json.loads((edir / "v1" / "summary.json").read_text())
    polys = json.loads((edir / "v1" / "landslides.geojson").read_text())["features"]
    assert summary["observed"]["count"] == len(polys)
    assert summary["area"]["swept_km2"] > 0 and summary["store"] == "../mosaic.zarr/v1"


def test_version_2_changes_only_the_improved_tiles_regions(event_run: dict[str, Any]) -> None:
    edir, rec2 = event_run["out"], event_run["records"][1]
    v1, v2 = rec2["versions"]
    assert v2["swept_tiles"] == [CLOUDY_TILE]
    changed = set(event_run["owned"][CLOUDY_TILE])
    assert set(v2["regions"]) == changed and changed
    assert v2["tile_coverage"][CLOUDY_TILE] > 0.995 and v2["coverage"] > v1["coverage"]
    p1, p2 = edir / v1["store"], edir / v2["store"]
    grid = event_run["grid"]
    same = 0
    for r in grid.regions():
        key = f"{r.rows[0] // BLOCK}.{r.cols[0] // BLOCK}"
        for var in ("probability", "valid", "slope"):
            a, b = p1 / var / key, p2 / var / key
            if r.index in changed:
                assert b.is_file() and (not a.is_file() or a.stat().st_ino != b.stat().st_ino)
            elif a.is_file():
                assert b.stat().st_ino == a.stat().st_ino  # the same file: identical and not copied
                same += 1
            else:
                assert not b.exists()
    assert same >= 3 * 3
    ds1, ds2 = xr.open_zarr(str(p1)), xr.open_zarr(str(p2))
    inside = np.zeros(grid.shape, dtype=bool)
    for r in grid.regions():
        if r.index in changed:
            inside[slice(*r.rows), slice(*r.cols)] = True
    a, b = ds1["probability"].values, ds2["probability"].values
    np.testing.assert_array_equal(a[~inside], b[~inside])
    assert not np.array_equal(a[inside], b[inside], equal_nan=True)
    cost = v2["storage"]
    v1_bytes = v1["storage"]["total_bytes"]
    print(f"\nversion 2 wrote {cost['new_bytes']} of its {cost['total_bytes']} bytes; version 1: {v1_bytes}")
    assert cost["new_bytes"] < 0.6 * v1["storage"]["total_bytes"]
    summary = json.loads((edir / "v2" / "summary.json").read_text())
    polys = json.loads((edir / "v2" / "landslides.geojson").read_text())["features"]
    assert summary["observed"]["count"] == len(polys)


def test_version_web_map_draws_every_swept_tile_from_the_store(event_run: dict[str, Any]) -> None:
    """The web map of version 2 in headless Chromium: probability pixels in two different tiles
    (the re-swept one and one taken over from version 1) have the store's colours."""
    pytest.importorskip("pipeline.products.webmap")
    browser = pytest.importorskip("pipeline.products.webmap.browser")
    from ..products.test_webmap_browser import BACKGROUND, _composite, _screenshot, _unproject

    if browser.find_chromium() is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    edir, grid = event_run["out"], event_run["grid"]
    v2 = event_run["records"][1]["versions"][1]
    ds = xr.open_zarr(str(edir / v2["store"]))
    prob = np.asarray(ds["probability"].values)
    to_grid = Transformer.from_crs("EPSG:4326", grid.epsg, always_xy=True)
    with browser.Chromium(width=900, height=800) as page:
        page.navigate((edir / "v2" / "map" / "index.html").as_uri())
        page.wait_for("window.landslideWebMap && window.landslideWebMap.ready")
        page.evaluate("window.landslideWebMap.show(['probability'])")
        img = _screenshot(page)
        table = page.evaluate("document.getElementById('summary').textContent")
        ys, xs = np.mgrid[20:780:6, 20:880:6]
        xs, ys = xs.ravel(), ys.ravel()
        lon, lat = _unproject(page, xs, ys)
    gx, gy = to_grid.transform(lon, lat)
    col = np.floor((gx - grid.west) / grid.resolution).astype(int)
    row = np.floor((grid.north - gy) / grid.resolution).astype(int)
    ok = (row >= 2) & (row < grid.shape[0] - 2) & (col >= 2) & (col < grid.shape[1] - 2)
    checked = {}
    for tid in (CLOUDY_TILE, "x7097y2133"):
        w, s, e, n = _tiles()[tid]
        sel = ok & (lon > w + 0.002) & (lon < e - 0.002) & (lat > s + 0.002) & (lat < n - 0.002)
        r, c = row[sel], col[sel]
        nb = np.stack([prob[r + dr, c + dc] for dr in (-2, 0, 2) for dc in (-2, 0, 2)])
        uniform = np.isfinite(nb).all(0) & (np.nanmax(nb, 0) - np.nanmin(nb, 0) <= 0.04)
        assert uniform.sum() >= 20, (tid, uniform.sum())
        px = img[ys[sel][uniform], xs[sel][uniform]]
        expected = _composite(prob[r[uniform], c[uniform]], BACKGROUND)
        close = np.abs(px - expected).max(axis=1) <= 16
        checked[tid] = float(close.mean())
    assert all(v >= 0.9 for v in checked.values()), checked
    summary = json.loads((edir / "v2" / "summary.json").read_text())
    # "Area swept" is an area (that of the dashed outline), the area's source is named apart
    shown = re.search(r"Area swept \(km²\)([0-9.,]+)", table)
    swept = summary["area"]["swept_km2"]  # the table shows whole km² from 100 up, else 2 decimals
    assert shown and float(shown.group(1).replace(",", "")) == pytest.approx(
        swept, abs=0.5 if swept >= 100 else 0.01
    )
    assert "Area planned fromshakemap" in table
