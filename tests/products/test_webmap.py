"""The web map folder and its XYZ tiles, without a browser (the browser tests are in
test_webmap_browser.py).

The tiles must be exactly the Zarr pyramid's chunks, colour-mapped, at the XYZ addresses the
pyramid's level attributes give; the folder must be relocatable, token-free and complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import main
from pipeline.errors import UserError
from pipeline.products.export import ExportSummary
from pipeline.products.pyramid import ORIGIN, TILE, WORLD, _tile_range, zoom_range
from pipeline.products.webmap import MAPLIBRE_VERSION, write_web_map
from pipeline.products.webmap.screenshot import read_map_data
from pipeline.products.webmap.tiles import (
    ALPHA_MIN,
    EXTRA_COARSE_ZOOMS,
    blank_png,
    colorize,
    lut,
    tile_zooms,
    write_tiles,
)
from pipeline.store import open_result

from .store_fixture import FixtureStore, make_store

VENDOR = Path(__file__).resolve().parents[2] / "pipeline" / "products" / "webmap" / "vendor"


def _rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGBA"))


@pytest.fixture(scope="module")
def webmap(store: FixtureStore, exported: ExportSummary, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("webmap")
    summary = root / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "event_id": "us2000h8ty",
                "alert": "orange",
                "observed_area_km2": 12.5,
                "coverage": 0.81,
                "pga_g_at_largest": math.nan,  # json.dumps writes NaN; the page's JSON must not
                "scenes": ["https://example.blob.core.windows.net/c/s.tif?st=2026&sig=SECRET"],
            }
        )
    )
    return write_web_map(
        root / "site" / "v2",
        store=store.path,
        polygons=exported.paths["polygons"],  # GeoParquet in UTM: reprojected to WGS84
        summary=summary,
        versions=[("version 1", "../v1/index.html"), ("version 2 (current)", "index.html")],
    ).parent


def test_tiles_are_the_pyramid_chunks_at_their_xyz_address(exported: ExportSummary, webmap: Path) -> None:
    tree = xr.open_datatree(exported.paths["pyramid"], engine="zarr")
    table = lut()
    checked = 0
    for name, node in tree.children.items():
        level = node.ds
        zoom, tx0, ty0 = level.attrs["zoom"], level.attrs["tile_x0"], level.attrs["tile_y0"]
        prob = level["probability"].values
        rows, cols = prob.shape[0] // TILE, prob.shape[1] // TILE
        for i in range(rows):
            for j in range(cols):
                chunk = prob[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
                tile = _rgba(webmap / "tiles" / str(zoom) / str(tx0 + j) / f"{ty0 + i}.png")
                np.testing.assert_array_equal(
                    tile, colorize(chunk, table), err_msg=f"level {name} ({i}, {j})"
                )
                checked += 1
        # nothing beyond the level's tile range
        xs = sorted(int(p.name) for p in (webmap / "tiles" / str(zoom)).iterdir())
        assert xs == list(range(tx0, tx0 + cols))
    assert checked >= 5


def test_coarser_zooms_are_single_tiles_holding_the_mosaic(store: FixtureStore, webmap: Path) -> None:
    ds = open_result(store.path)
    min_zoom, max_zoom = zoom_range(ds)
    zooms = tile_zooms(ds)
    assert zooms == range(max(0, min_zoom - EXTRA_COARSE_ZOOMS), max_zoom + 1)
    assert sorted(int(p.name) for p in (webmap / "tiles").iterdir()) == list(zooms)
    for z in range(zooms.start, min_zoom):
        files = list((webmap / "tiles" / str(z)).glob("*/*.png"))
        assert len(files) == 1
        alpha = _rgba(files[0])[..., 3]
        assert 0 < (alpha > 0).sum() < alpha.size  # the mosaic is a small opaque patch


def test_folder_is_complete_relocatable_and_token_free(store: FixtureStore, webmap: Path) -> None:
    index = (webmap / "index.html").read_text()
    for ref in (
        "vendor/maplibre-gl.js",
        "vendor/maplibre-gl.css",
        "data/map-data.js",
        "data/tiles.js",
        "webmap.js",
    ):
        assert f'"{ref}"' in index and (webmap / ref).is_file()
    assert (
        (webmap / "vendor" / "LICENSE.txt")
        .read_text()
        .startswith("Copyright (c) 2023, MapLibre contributors")
    )
    texts = [
        p.read_text() for p in webmap.rglob("*") if p.suffix in (".html", ".js", ".json", ".geojson", ".css")
    ]
    assert not any("sig=" in t or "SECRET" in t for t in texts)
    # the version links are also plain HTML (no JavaScript needed to find them)
    assert '<a href="../v1/index.html">version 1</a>' in index
    assert not any(str(webmap.parent) in t or str(store.path) in t for t in texts)  # no absolute paths
    data = read_map_data(webmap)
    assert data["maplibre_version"] == MAPLIBRE_VERSION
    assert data["versions"] == [
        {"label": "version 1", "href": "../v1/index.html"},
        {"label": "version 2 (current)", "href": "index.html"},
    ]
    assert data["summary"]["alert"] == "orange"
    assert data["summary"]["pga_g_at_largest"] is None
    assert data["summary"]["scenes"] == ["https://example.blob.core.windows.net/c/s.tif"]
    assert {d["href"] for d in data["downloads"]} == {
        "data/landslides.geojson",
        "data/area.geojson",
        "data/summary.json",
    }


def test_legend_numbers_and_layers_come_from_the_data(
    store: FixtureStore, exported: ExportSummary, webmap: Path
) -> None:
    data = read_map_data(webmap)
    finite = store.probability[np.isfinite(store.probability)]
    assert data["probability"]["min"] == pytest.approx(float(finite.min()))
    assert data["probability"]["max"] == pytest.approx(float(finite.max()))
    assert data["probability"]["threshold"] == pytest.approx(0.6)
    polygons = json.loads(exported.paths["polygons_geojson"].read_text())
    assert len(data["polygons"]["features"]) == len(polygons["features"]) == len(store.kept())
    area = {f["properties"]["id"]: f["properties"]["area_m2"] for f in data["polygons"]["features"]}
    assert sorted(area.values(), reverse=True) == sorted(
        (b.pixels * 100.0 for b in store.kept()), reverse=True
    )
    # the default swept area is the store's outline, which contains every polygon vertex
    w, s, e, n = data["tiles"]["bounds"]
    for f in data["polygons"]["features"]:
        for lon, lat in f["geometry"]["coordinates"][0]:
            assert w <= lon <= e and s <= lat <= n
    assert data["shakemap"] is None and data["tiles"]["embedded"] is True


def test_tiles_over_the_embed_limit_are_served_not_embedded(store: FixtureStore, tmp_path: Path) -> None:
    index = write_web_map(tmp_path / "wm", store=store.path, embed_limit_bytes=1, basemap=None)
    assert not (index.parent / "data" / "tiles.js").exists()
    assert "tiles.js" not in index.read_text()
    data = read_map_data(index.parent)
    assert data["tiles"]["embedded"] is False and data["basemap"] is None
    assert len(list((index.parent / "tiles").rglob("*.png"))) == data["tiles"]["count"]


def test_rewrite_replaces_the_folder_whole(store: FixtureStore, tmp_path: Path) -> None:
    out = tmp_path / "wm"
    write_web_map(out, store=store.path, basemap=None)
    (out / "stale.txt").write_text("from an older version")
    write_web_map(out, store=store.path, basemap=None)
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["wm"]  # no temporary folder left behind


def test_bad_inputs_are_user_errors(store: FixtureStore, tmp_path: Path) -> None:
    partial = make_store(tmp_path / "partial.zarr", status="in_progress")
    with pytest.raises(UserError, match="not a complete sweep"):
        write_web_map(tmp_path / "a", store=partial.path)
    with pytest.raises(UserError, match="no result store"):
        write_web_map(tmp_path / "b", store=tmp_path / "missing.zarr")
    with pytest.raises(UserError, match="no polygons file"):
        write_web_map(tmp_path / "c", store=store.path, polygons=tmp_path / "none.geojson")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        write_web_map(tmp_path / "d", store=store.path, summary=bad)
    notgeo = tmp_path / "x.geojson"
    notgeo.write_text('{"a": 1}')
    with pytest.raises(UserError, match="not GeoJSON"):
        write_web_map(tmp_path / "e", store=store.path, area=notgeo)
    assert not any(p.name in "abcde" for p in tmp_path.iterdir())


def test_export_web_map_flag_writes_the_folder(store: FixtureStore, tmp_path: Path, capsys) -> None:
    assert main(["export", str(store.path), "--out", str(tmp_path / "out"), "--web-map"]) == 0
    index = tmp_path / "out" / "webmap" / "index.html"
    assert index.is_file() and str(index) in capsys.readouterr().out
    data = read_map_data(index.parent)
    exported = json.loads((tmp_path / "out" / "landslides.geojson").read_text())
    assert len(data["polygons"]["features"]) == len(exported["features"])


def test_vendored_maplibre_is_the_pinned_npm_release() -> None:
    readme = (VENDOR / "README.md").read_text()
    assert f"maplibre-gl@{MAPLIBRE_VERSION}" in readme
    for name in ("maplibre-gl.js", "maplibre-gl.css"):
        digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert f"| {name} | {digest} |" in readme
    assert f"/v{MAPLIBRE_VERSION}/LICENSE.txt" in (VENDOR / "maplibre-gl.js").read_text()[:300]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(0.0, 1.0), st.just(math.nan)), min_size=1, max_size=64))
def test_colorize_property_nan_transparent_alpha_monotone(values: list[float]) -> None:
    p = np.asarray(values, np.float32)
    rgba = colorize(p)
    finite = np.isfinite(p)
    assert (rgba[~finite] == 0).all()
    assert (rgba[finite, 3] >= round(ALPHA_MIN * 255)).all()
    order = np.argsort(p[finite], kind="stable")
    assert (np.diff(rgba[finite, 3][order].astype(int)) >= 0).all()
    table = lut()
    np.testing.assert_array_equal(rgba[finite], table[np.round(p[finite] * 255).astype(int)])


@settings(max_examples=150, deadline=None)
@given(
    st.floats(-179.0, 178.0),
    st.floats(-80.0, 79.0),
    st.floats(1e-4, 1.0),
    st.floats(1e-4, 1.0),
    st.integers(0, 18),
)
def test_tile_range_property_covers_exactly(
    lon: float, lat: float, dlon: float, dlat: float, zoom: int
) -> None:
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, 3857, always_xy=True)
    bounds = tr.transform_bounds(lon, lat, lon + dlon, lat + dlat)
    tx0, ty0, tx1, ty1 = _tile_range(bounds, zoom)
    size = WORLD / 2**zoom
    west, south, east, north = bounds
    tol = 1e-6 * size  # an overshoot under a millionth of a tile (1/4000 pixel) takes no new tile
    assert tx0 <= tx1 and ty0 <= ty1
    # the range covers the bounds ...
    assert -ORIGIN + tx0 * size <= west + tol and -ORIGIN + (tx1 + 1) * size >= east - tol
    assert ORIGIN - ty0 * size >= north - tol and ORIGIN - (ty1 + 1) * size <= south + tol
    # ... and no outer tile row or column could be dropped
    assert -ORIGIN + (tx0 + 1) * size > west and -ORIGIN + tx1 * size < east
    assert ORIGIN - (ty0 + 1) * size < north and ORIGIN - ty1 * size > south


def test_write_tiles_counts_blank_tiles(store: FixtureStore, tmp_path: Path) -> None:
    ds = open_result(store.path)
    tiles = write_tiles(ds, tmp_path / "t")
    files = list((tmp_path / "t").rglob("*.png"))
    assert tiles.count == len(files)
    assert tiles.blank == sum(f.read_bytes() == blank_png() for f in files)
    assert tiles.nbytes == sum(f.stat().st_size for f in files)


def test_browser_driver_reports_a_browser_that_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.products.webmap.browser import BrowserError, Chromium, find_chromium

    monkeypatch.setenv("LANDSLIDE_CHROMIUM", "/bin/false")
    assert find_chromium() == "/bin/false"
    with pytest.raises(BrowserError, match="exited with status"), Chromium() as _page:
        pass


@pytest.mark.parametrize(("ci", "outcome"), [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    """Every browser test calls ``need_chromium``: under ``CI=1`` no browser is a failure, not a skip."""
    from tests.chromium import need_chromium

    monkeypatch.setenv("LANDSLIDE_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        need_chromium()
