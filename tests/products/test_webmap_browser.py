"""The web map in a real headless Chromium (Debian's ``chromium``, WebGL on SwiftShader).

Built from the real demo sweep (``landslide demo``: the embedded scene, the shipped checkpoint,
the real sweep path). The page is opened from ``file://`` (tiles embedded, basemap unreachable)
and from a loopback HTTP server (plain XYZ tiles read by MapLibre's stock raster source, with a
loopback basemap). Each layer is drawn alone and its screenshot checked against the store:
polygon colour where the probability is above the threshold and nowhere else, the probability
colours where there is data, the background (or basemap) where there is none, the swept-area and
ShakeMap lines on their projected geometry; the legend's numbers and colour bar against the data.

Skipped only when no Chromium is installed and ``$CI`` is not set; in CI a missing browser fails
(:func:`tests.chromium.need_chromium`, shared with the event flow's browser test).
"""

from __future__ import annotations

import io
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pyproj import Transformer
from scipy import ndimage

from pipeline.cli import main
from pipeline.products.webmap import write_web_map
from pipeline.products.webmap.browser import Chromium, Page
from pipeline.products.webmap.tiles import lut
from pipeline.store import open_result
from pipeline.store.reader import store_crs, store_transform
from tests.chromium import need_chromium

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1200, 800
BACKGROUND = np.array([242, 240, 235])  # webmap.js BACKGROUND
CYAN = np.array([0, 183, 212])  # webmap.js COLORS.polygons (outline only: no fill colour)
BASEMAP_RGB = np.array([120, 200, 120])  # the loopback basemap's solid tiles
PAD = 40  # store pixels of "outside" around the grid, for lookups
STEP = 4  # screen pixels between samples


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    """The demo sweep, the layers given to the web map, and the store's probability for lookups."""

    root: Path
    store: Path
    polygons: Path
    area: Path
    shakemap: Path
    summary: Path
    prob: np.ndarray  # padded by PAD on every side with NaN; NaN where not valid
    threshold: float
    to_pixel: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    lo: float
    hi: float


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    need_chromium()
    root = tmp_path_factory.mktemp("webmap-demo")
    store = root / "demo.zarr"
    assert main(["demo", "--out", str(store), "--no-progress", "--workers", "2"]) == 0
    ds = open_result(store)
    prob = ds["probability"].values.astype(np.float32)
    prob[ds["valid"].values != 1] = np.nan
    t, crs = store_transform(ds), store_crs(ds)
    to_ll = Transformer.from_crs(crs, 4326, always_xy=True)
    ny, nx = prob.shape

    def lonlat(fx: float, fy: float) -> list[float]:
        return list(to_ll.transform(t.c + t.a * nx * fx, t.f + t.e * ny * fy))

    # the swept area: the grid's inner 80 %; the ShakeMap contour: an ellipse crossing the grid
    ring = [lonlat(fx, fy) for fx, fy in ((0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9), (0.1, 0.1))]
    area = root / "area.geojson"
    area.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    ellipse = [lonlat(0.05 + 0.5 * np.cos(a), 0.5 + 0.6 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 91)]
    shakemap = root / "shakemap.geojson"
    feature = {
        "type": "Feature",
        "properties": {"pga": 0.1},
        "geometry": {"type": "LineString", "coordinates": ellipse},
    }
    shakemap.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    summary = root / "summary.json"
    # the nested layout pipeline/event/summary.py writes (a flat one is covered in test_webmap.py)
    summary.write_text(
        json.dumps(
            {
                "title": "M6.6 demo event: landslides, version 2",
                "event": {
                    "id": "demo-l4s",
                    "magnitude": 6.6,
                    "time": "2018-09-05T18:07:59Z",
                    "place": "Iburi",
                },
                "version": {"n": 2, "window": ["2018-09-07", "2018-09-30"], "scenes": ["S2A_1", "S2B_2"]},
                "area": {"source": "shakemap", "land_km2": 812.5, "shakemap": {"version": 13}},
                "coverage": 0.958,
                "observed": {
                    "landslide_km2": 1.101,
                    "count": 62,
                    "largest": [{"area_m2": 226300.0, "mean_probability": 0.875, "pga_g": 0.41}],
                    "by_pga_g": {"0.4-0.6": {"landslide_km2": 1.25, "count": 50}},
                },
                "alert": {"level": "yellow", "basis": "observed landslide area (km2)", "note": ""},
                "model": {"name": "unet", "threshold": 0.73, "calibration": {"method": "temperature"}},
                "scenes": [{"id": "S2", "href": "https://x.blob.core.windows.net/s.tif?sig=SECRET"}],
            }
        )
    )
    to_xy = Transformer.from_crs(4326, crs, always_xy=True)
    inv = ~t

    def to_pixel(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = to_xy.transform(lon, lat)
        col, row = inv * (np.asarray(x), np.asarray(y))
        return np.floor(row).astype(int) + PAD, np.floor(col).astype(int) + PAD

    finite = prob[np.isfinite(prob)]
    return Demo(
        root=root,
        store=store,
        polygons=store.with_name("demo-products") / "landslides.geojson",
        area=area,
        shakemap=shakemap,
        summary=summary,
        prob=np.pad(prob, PAD, constant_values=np.nan),
        threshold=float(ds.attrs["landslide:threshold"]),
        to_pixel=to_pixel,
        lo=float(finite.min()),
        hi=float(finite.max()),
    )


def _site(demo: Demo, name: str, basemap: str) -> Path:
    return write_web_map(
        demo.root / name,
        store=demo.store,
        polygons=demo.polygons,
        area=demo.area,
        shakemap_contours=demo.shakemap,
        summary=demo.summary,
        versions=[("version 1", "../v1/index.html"), ("version 2 (current)", "index.html")],
        basemap=basemap,
    )


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Page]:
    with Chromium(width=WIDTH, height=HEIGHT) as page:
        yield page


@pytest.fixture(scope="module")
def file_page(demo: Demo, browser: Page) -> tuple[Page, str]:
    """The page from file://, its basemap on a closed loopback port (offline)."""
    basemap = f"http://127.0.0.1:{_closed_port()}/basemap/{{z}}/{{x}}/{{y}}.png"
    index = _site(demo, "site-file", basemap)
    browser.console.clear()
    browser.navigate(index.as_uri())
    browser.wait_for("window.landslideWebMap && window.landslideWebMap.ready")
    return browser, basemap.split("/basemap/")[0]


# ----------------------------------------------------------------------------- helpers


def _screenshot(page: Page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)


def _show(page: Page, groups: list[str]) -> np.ndarray:
    page.evaluate(f"window.landslideWebMap.show({json.dumps(groups)})")
    return _screenshot(page)


def _map_samples(page: Page) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen sample points (x, y) inside the map and away from its controls, with a keep mask."""
    rects = page.evaluate(
        """(() => {
          const r = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
          return {map: r(document.getElementById('map')),
                  ctrls: [...document.querySelectorAll('.maplibregl-ctrl')].map(r)};
        })()"""
    )
    left, top, right, bottom = rects["map"]
    ys, xs = np.mgrid[int(top) + 6 : int(bottom) - 6 : STEP, int(left) + 6 : int(right) - 6 : STEP]
    xs, ys = xs.ravel(), ys.ravel()
    keep = np.ones(xs.shape, bool)
    for x0, y0, x1, y1 in rects["ctrls"]:
        keep &= ~((xs >= x0 - 6) & (xs <= x1 + 6) & (ys >= y0 - 6) & (ys <= y1 + 6))
    return xs[keep], ys[keep], keep


def _unproject(page: Page, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = json.dumps(np.stack([xs, ys], 1).tolist())
    ll = page.evaluate(
        f"{pts}.map(p => {{ const l = window.landslideWebMap.map.unproject(p); return [l.lng, l.lat]; }})"
    )
    a = np.asarray(ll, float)
    return a[:, 0], a[:, 1]


def _project(page: Page, coords: list[list[float]]) -> list[tuple[float, float]]:
    js = "c => { const p = window.landslideWebMap.map.project(c); return [p.x, p.y]; }"
    out = page.evaluate(f"{json.dumps(coords)}.map({js})")
    return [(float(x), float(y)) for x, y in out]


@dataclass
class Classes:
    """Sample points classified by the store's 5 x 5 neighbourhood of each."""

    xs: np.ndarray
    ys: np.ndarray
    none: np.ndarray  # no valid data in the neighbourhood (or outside the grid)
    near_edge_none: np.ndarray  # no data, but valid data within 8 store pixels
    uniform: np.ndarray  # all valid, probability within 0.04
    p: np.ndarray  # probability at the point
    above: np.ndarray  # all valid and >= threshold
    below: np.ndarray  # nothing >= threshold


def _classify(page: Page, demo: Demo) -> Classes:
    xs, ys, _ = _map_samples(page)
    lon, lat = _unproject(page, xs, ys)
    row, col = demo.to_pixel(lon, lat)
    inside = (row >= 0) & (row < demo.prob.shape[0]) & (col >= 0) & (col < demo.prob.shape[1])
    row, col = np.clip(row, 0, demo.prob.shape[0] - 1), np.clip(col, 0, demo.prob.shape[1] - 1)
    p = demo.prob
    fin = np.isfinite(p)
    all_fin = ndimage.minimum_filter(fin, 5, mode="constant", cval=False)
    any_fin = ndimage.maximum_filter(fin, 5, mode="constant", cval=False)
    near = ndimage.maximum_filter(fin, 17, mode="constant", cval=False)
    lo = ndimage.minimum_filter(np.where(fin, p, np.inf), 5)
    hi = ndimage.maximum_filter(np.where(fin, p, -np.inf), 5)
    above = all_fin & (lo >= demo.threshold)
    below = hi < demo.threshold
    at = (row, col)
    none = ~inside | ~any_fin[at]
    return Classes(
        xs=xs,
        ys=ys,
        none=none,
        near_edge_none=inside & ~any_fin[at] & near[at],
        uniform=inside & all_fin[at] & (hi[at] - lo[at] <= 0.04),
        p=np.where(fin[at], p[at], np.nan),
        above=inside & above[at],
        below=~inside | below[at],
    )


def _composite(p: np.ndarray, under: np.ndarray) -> np.ndarray:
    table = lut().astype(float)
    c = table[np.clip(np.round(p * 255), 0, 255).astype(int)]
    a = c[:, 3:4] / 255.0
    return c[:, :3] * a + under * (1 - a)


def _errors(page: Page, allowed_prefix: str | None = None) -> list[str]:
    return [
        f"{e.source}: {e.text} {e.url}"
        for e in page.console
        if e.is_error and not (allowed_prefix and e.url.startswith(allowed_prefix))
    ]


# ----------------------------------------------------------------------------- file://


def test_browser_file_page_loads_without_console_errors(file_page: tuple[Page, str]) -> None:
    page, basemap_prefix = file_page
    state = page.evaluate(
        "({tiles: landslideWebMap.tileMode, basemap: landslideWebMap.basemap, errors: landslideWebMap.errors,"
        " webgl: !!landslideWebMap.map.painter.context.gl})"
    )
    assert state == {"tiles": "embedded", "basemap": "none", "errors": [], "webgl": True}
    # the only error allowed is the offline basemap probe's failed request
    assert _errors(page, basemap_prefix) == []
    assert page.evaluate("document.getElementById('basemap-status').textContent").startswith(
        "Basemap: offline"
    )


def test_browser_polygons_are_outlined_on_the_threshold_boundary_and_not_filled(
    file_page: tuple[Page, str], demo: Demo
) -> None:
    """The outline runs where the data cross the threshold; inside and outside is the background.

    A fill over the probability layer would blend into colours no legend shows, so there is none.
    """
    page, _ = file_page
    img = _show(page, ["polygons"])
    c = _classify(page, demo)
    px = img[c.ys, c.xs]
    is_line = np.abs(px - CYAN).max(axis=1) <= 60
    is_bg = np.abs(px - BACKGROUND).max(axis=1) <= 3
    boundary = ~c.above & ~c.below  # the 5 x 5 neighbourhood holds values on both sides
    assert c.above.sum() >= 100 and c.below.sum() >= 1000 and boundary.sum() >= 100
    assert is_bg[c.above].mean() >= 0.9, is_bg[c.above].mean()  # interiors are not filled
    assert is_line[c.below].mean() <= 0.005, is_line[c.below].mean()
    assert is_line[boundary].mean() >= 0.15, is_line[boundary].mean()
    # with only this layer on, everything else is the plain background
    assert (is_bg | is_line).mean() >= 0.99
    # the legend's swatch is the same outline over the panel's white, with no fill
    swatch = page.evaluate(
        "(() => { const s = getComputedStyle(document.querySelector('#legend-polygons .swatch'));"
        " return [s.backgroundColor, s.borderTopColor]; })()"
    )
    assert swatch == ["rgba(0, 0, 0, 0)", "rgb(0, 183, 212)"]


def test_browser_polygon_pop_up_has_labels_and_units(file_page: tuple[Page, str], demo: Demo) -> None:
    """Clicking inside the largest polygon opens a pop-up of human labels with units."""
    page, _ = file_page
    from shapely.geometry import shape

    feature = json.loads(demo.polygons.read_text())["features"][0]
    inside = shape(feature["geometry"]).representative_point()
    page.evaluate("window.landslideWebMap.show()")
    x, y = _project(page, [[inside.x, inside.y]])[0]
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    page.pump(0.5)
    rows = page.evaluate(
        "[...document.querySelectorAll('.maplibregl-popup table.popup-fields tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    page.evaluate("document.querySelectorAll('.maplibregl-popup').forEach(p => p.remove())")
    labels = dict(rows)
    assert set(labels) >= {"Area", "Mean probability", "Max probability", "Mean slope"}, rows
    assert not any("_" in k for k in labels), rows  # no raw field names
    assert labels["Area"].endswith(" m²") and labels["Mean slope"].endswith("°")


def test_browser_probability_layer_colours_match_the_store(file_page: tuple[Page, str], demo: Demo) -> None:
    page, _ = file_page
    img = _show(page, ["probability"])
    c = _classify(page, demo)
    px = img[c.ys, c.xs]
    bg = np.abs(px - BACKGROUND).max(axis=1) <= 3
    assert c.none.sum() >= 1000 and bg[c.none].mean() >= 0.99
    # placement: just outside the data (within 8 store pixels of it) is still background
    assert c.near_edge_none.sum() >= 100 and bg[c.near_edge_none].mean() >= 0.97, bg[c.near_edge_none].mean()
    u = c.uniform & np.isfinite(c.p)
    expected = _composite(c.p[u], BACKGROUND)
    close = np.abs(px[u] - expected).max(axis=1) <= 16
    assert u.sum() >= 500 and close.mean() >= 0.9, (u.sum(), close.mean())
    assert not bg[u].any()  # where there is data, something is drawn


def _line_check(page: Page, img: np.ndarray, lines: list[list[list[float]]], colour_test: Any) -> None:
    xs, ys, _ = _map_samples(page)
    h, w = img.shape[:2]
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    along: list[tuple[float, float]] = []
    for coords in lines:
        pts = _project(page, coords)
        draw.line(pts, fill=255, width=9)
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            n = max(1, int(np.hypot(x1 - x0, y1 - y0) / 2))
            along += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(n)]
    near_line = np.asarray(mask) > 0
    coloured = colour_test(img)
    region = np.zeros((h, w), bool)
    region[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    # nothing of the line's colour away from the projected geometry ...
    assert (coloured & region & ~near_line).sum() <= 20
    # ... and the line is drawn along it (dashes: within 4 px of every point)
    grown = ndimage.maximum_filter(coloured, 9)
    pts = [(int(x), int(y)) for x, y in along if region[int(y) % h, int(x) % w] and 0 <= x < w and 0 <= y < h]
    assert len(pts) >= 100
    hit = np.mean([grown[y, x] for x, y in pts])
    assert hit >= 0.95, hit


def test_browser_swept_area_line_is_drawn_on_the_area(file_page: tuple[Page, str], demo: Demo) -> None:
    page, _ = file_page
    img = _show(page, ["area"])
    ring = json.loads(demo.area.read_text())["coordinates"][0]

    def blue(a: np.ndarray) -> np.ndarray:
        r, g, b = a[..., 0], a[..., 1], a[..., 2]
        return (b - r > 60) & (b - g > 40)

    _line_check(page, img, [ring], blue)


def test_browser_shakemap_contour_is_drawn_on_the_contour(file_page: tuple[Page, str], demo: Demo) -> None:
    page, _ = file_page
    img = _show(page, ["shakemap"])
    line = json.loads(demo.shakemap.read_text())["features"][0]["geometry"]["coordinates"]

    def purple(a: np.ndarray) -> np.ndarray:
        r, g, b = a[..., 0], a[..., 1], a[..., 2]
        return (r - g > 50) & (b - g > 60) & (g < 150)

    _line_check(page, img, [line], purple)


def test_browser_legend_matches_the_data_range(file_page: tuple[Page, str], demo: Demo) -> None:
    page, _ = file_page
    page.evaluate("window.landslideWebMap.show()")
    info = page.evaluate(
        """(() => {
          document.getElementById('colorbar').scrollIntoView({block: 'center'});
          const r = id => { const b = document.getElementById(id).getBoundingClientRect();
                            return [b.left, b.top, b.width, b.height]; };
          const d = document.getElementById('prob-range').dataset;
          return {bar: r('colorbar'), range: r('cb-range'), thr: r('cb-threshold'), min: d.min, max: d.max,
                  text: document.getElementById('legend').textContent};
        })()"""
    )
    assert float(info["min"]) == pytest.approx(demo.lo, abs=5e-4)
    assert float(info["max"]) == pytest.approx(demo.hi, abs=5e-4)
    left, top, width, height = info["bar"]
    assert width == 256
    assert info["range"][0] - left == pytest.approx(demo.lo * 256, abs=1.0)
    assert info["range"][2] == pytest.approx((demo.hi - demo.lo) * 256, abs=1.5)
    assert info["thr"][0] - left == pytest.approx(demo.threshold * 256, abs=1.5)
    n = len(json.loads(demo.polygons.read_text())["features"])
    assert f"{n} polygon(s)" in info["text"] and "ShakeMap contour (PGA 0.1)" in info["text"]
    # the colour bar's pixels are the tiles' colour table over the panel's white
    bar = np.asarray(
        Image.open(io.BytesIO(page.screenshot((left, top, width, height)))).convert("RGB")
    ).astype(int)[height // 2]
    expected = _composite(np.arange(256) / 255.0, np.array([255, 255, 255]))
    marks = [demo.lo * 256, demo.hi * 256, demo.threshold * 256]
    cols = [x for x in range(256) if min(abs(x - m) for m in marks) > 3]
    assert np.abs(bar[cols] - expected[cols]).max() <= 2


def test_browser_summary_alert_and_versions(file_page: tuple[Page, str]) -> None:
    page, _ = file_page
    dom = page.evaluate(
        """(() => ({
          title: document.querySelector('#panel h1').textContent,
          alert: document.getElementById('alert').className + ' '
                 + document.getElementById('alert').textContent,
          summary: document.getElementById('summary').textContent,
          pga: document.getElementById('by-pga').textContent,
          largest: document.getElementById('largest').textContent,
          versions: [...document.querySelectorAll('#versions a')]
                    .map(a => [a.textContent, a.getAttribute('href')]),
        }))()"""
    )
    assert dom["title"] == "M6.6 demo event: landslides, version 2"
    assert dom["alert"] == "alert alert-yellow Alert: YELLOW"
    for text in (
        "Observed landslide area (km²)1.10",
        "Landslides62",
        "Clear-data coverage95.8 %",
        "Area planned fromshakemap",
        "ShakeMap version13",
        "Map version2",
        "Imagery window2018-09-07 to 2018-09-30",
        "Scenes used2",
        "Calibrationtemperature",
    ):
        assert text in dom["summary"]
    assert "SECRET" not in dom["summary"] and "sig=" not in dom["summary"]
    assert dom["pga"] == "PGA (g)km² · count0.4-0.61.25 · 50"
    assert dom["largest"] == "1226,300 m², p 0.875, PGA 0.410 g"
    assert dom["versions"] == [["version 1", "../v1/index.html"], ["version 2 (current)", "index.html"]]
    # a legend checkbox hides its layers
    page.evaluate("document.getElementById('toggle-polygons').click()")
    assert page.evaluate("landslideWebMap.map.getLayoutProperty('polygons-fill', 'visibility')") == "none"
    page.evaluate("window.landslideWebMap.show()")


# ----------------------------------------------------------------------------- http://


class _Handler(SimpleHTTPRequestHandler):
    """Serves the site folder and, under ``/basemap/``, a solid-colour basemap tile for any z/x/y."""

    requests: list[tuple[str, int]]
    basemap_png: bytes

    def do_GET(self) -> None:
        if self.path.startswith("/basemap/"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(self.basemap_png)))
            self.end_headers()
            self.wfile.write(self.basemap_png)
            return
        super().do_GET()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.requests.append((self.path, int(code)))

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_browser_http_xyz_tiles_and_online_basemap(demo: Demo, browser: Page) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), tuple(int(v) for v in BASEMAP_RGB)).save(buf, "PNG")
    requests: list[tuple[str, int]] = []
    site_root = demo.root / "served"
    site_root.mkdir(exist_ok=True)
    handler = type("H", (_Handler,), {"requests": requests, "basemap_png": buf.getvalue()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(site_root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        _site(demo, "served/v2", f"{base}/basemap/{{z}}/{{x}}/{{y}}.png")
        browser.console.clear()
        browser.navigate(f"{base}/v2/index.html")
        browser.wait_for("window.landslideWebMap && window.landslideWebMap.ready")
        assert browser.evaluate("[landslideWebMap.tileMode, landslideWebMap.basemap]") == ["xyz", "online"]
        assert _errors(browser) == []
        img = _show(browser, ["basemap", "probability"])
        c = _classify(browser, demo)
        px = img[c.ys, c.xs]
        on_basemap = np.abs(px - BASEMAP_RGB).max(axis=1) <= 3
        assert bg_share(on_basemap, c.none) >= 0.99
        assert c.near_edge_none.sum() >= 100 and on_basemap[c.near_edge_none].mean() >= 0.97
        u = c.uniform & np.isfinite(c.p)
        close = np.abs(px[u] - _composite(c.p[u], BASEMAP_RGB)).max(axis=1) <= 16
        assert u.sum() >= 500 and close.mean() >= 0.9, close.mean()
    finally:
        server.shutdown()
        server.server_close()
    tiles = [(p, code) for p, code in requests if p.startswith("/v2/tiles/")]
    assert tiles and all(code == 200 for _, code in tiles), [t for t in tiles if t[1] != 200]
    assert all(code == 200 for _, code in requests)  # no 404 for anything the page asked for


def bg_share(match: np.ndarray, where: np.ndarray) -> float:
    assert where.sum() >= 1000
    return float(match[where].mean())
