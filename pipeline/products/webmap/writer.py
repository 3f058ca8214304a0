"""Write the web map of one sweep: a self-contained static folder around ``index.html``.

Layout of the folder (everything relative, nothing fetched from elsewhere except the optional
online basemap)::

    index.html            the page (MapLibre GL JS, vendored)
    webmap.js, webmap.css the page's code and style
    vendor/               maplibre-gl.js, maplibre-gl.css, LICENSE.txt (pinned npm release)
    data/map-data.js      every vector layer, the legend's numbers, the summary, the versions
    data/tiles.js         the probability tiles as base64, for file:// (absent if too large)
    data/*.geojson        the same layers as plain files, to download
    tiles/{z}/{x}/{y}.png the probability as XYZ tiles (see :mod:`.tiles`)

Chromium forbids ``fetch``/XHR of local files from a ``file://`` page, so the data travel as
script files; over HTTP the page reads ``tiles/`` like any XYZ client.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pyproj import Transformer

from pipeline.errors import UserError
from pipeline.products.webmap.tiles import (
    ALPHA_FULL,
    ALPHA_MIN,
    COLORMAP,
    blank_png,
    embed_tiles,
    lut,
    write_tiles,
)
from pipeline.store.atomic import atomic_output
from pipeline.store.reader import open_result, store_crs, store_threshold, store_transform

#: The pinned MapLibre GL JS release in ``vendor/`` (``npm pack maplibre-gl@5.24.1``, BSD-3-Clause).
MAPLIBRE_VERSION = "5.24.1"
#: Online basemap: OpenStreetMap's standard raster tiles (used only when they load).
DEFAULT_BASEMAP = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
BASEMAP_ATTRIBUTION = "© OpenStreetMap contributors"
DATA_ATTRIBUTION = "Contains modified Copernicus Sentinel data"
#: Largest base64 size of the tiles embedded for ``file://`` viewing; beyond it, serve over HTTP.
EMBED_LIMIT_BYTES = 32 * 1024 * 1024
_STATIC = ("webmap.js", "webmap.css")
_VENDOR = ("maplibre-gl.js", "maplibre-gl.css", "LICENSE.txt")
_URL_QUERY = re.compile(r"^(https?://[^?#\s]*)[?#].*$", re.IGNORECASE)


@dataclass(frozen=True)
class Layers:
    """The vector layers of a web map, as WGS84 GeoJSON FeatureCollections."""

    polygons: dict[str, Any]
    area: dict[str, Any]
    shakemap: dict[str, Any] | None


def scrub(value: Any) -> Any:
    """Return ``value`` with query strings (signatures, tokens) cut from every URL in it.

    Non-finite numbers (NaN, infinities: not JSON) become None.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        m = _URL_QUERY.match(value)
        return m.group(1) if m else value
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _feature_collection(obj: Any, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or "type" not in obj:
        raise UserError(f"{what} is not GeoJSON")
    if obj["type"] == "FeatureCollection":
        return {"type": "FeatureCollection", "features": list(obj.get("features") or [])}
    if obj["type"] == "Feature":
        return {"type": "FeatureCollection", "features": [obj]}
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": obj}]}


def read_vector(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Read a vector file as a WGS84 FeatureCollection (GeoJSON as is; others via geopandas).

    Raises:
        UserError: The file is missing or not a readable vector file.

    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no {what} file at {p}")
    if p.suffix.lower() in (".json", ".geojson"):
        try:
            return scrub(_feature_collection(json.loads(p.read_text()), f"{what} {p}"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{what} {p} is not valid JSON ({exc})") from exc
    import geopandas as gpd

    try:
        gdf = gpd.read_parquet(p) if p.suffix.lower() == ".parquet" else gpd.read_file(p)
    except Exception as exc:  # pyogrio/pyarrow raise several types
        raise UserError(f"cannot read {what} {p} ({type(exc).__name__})") from exc
    if gdf.crs is not None:
        gdf = gdf.to_crs(4326)
    out: dict[str, Any] = json.loads(gdf.to_json(drop_id=True))
    return scrub(_feature_collection(out, f"{what} {p}"))


def _extent_wgs84(ds: xr.Dataset) -> list[list[float]]:
    """The store grid's outline as a WGS84 ring (densified: UTM edges are not straight in lon/lat)."""
    t = store_transform(ds)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    steps = np.linspace(0.0, 1.0, 11)
    cols = np.concatenate([steps * nx, np.full(11, nx), steps[::-1] * nx, np.zeros(11)])
    rows = np.concatenate([np.zeros(11), steps * ny, np.full(11, ny), steps[::-1] * ny])
    xs, ys = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    lon, lat = Transformer.from_crs(store_crs(ds), 4326, always_xy=True).transform(xs, ys)
    return [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]


def _bounds(fc: dict[str, Any]) -> list[float] | None:
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if isinstance(c, list | tuple) and c and isinstance(c[0], int | float):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        elif isinstance(c, list | tuple):
            for v in c:
                walk(v)

    for f in fc.get("features", []):
        g = f.get("geometry") or {}
        walk(g.get("coordinates", []))
        for sub in g.get("geometries", []) or []:
            walk(sub.get("coordinates", []))
    if not xs:
        return None
    return [min(xs), min(ys), max(xs), max(ys)]


def _union(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    if a is None or b is None:
        return a or b
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _store_polygons(ds: xr.Dataset) -> dict[str, Any]:
    from pipeline.products.polygons import landslide_polygons

    gdf = landslide_polygons(ds, threshold=store_threshold(ds))
    out: dict[str, Any] = scrub(json.loads(gdf.to_crs(4326).to_json(drop_id=True)))
    return out


def _scene_counts(scenes: Sequence[Any]) -> dict[str, int]:
    """Sentinel-2 scenes and DEM tiles among a store's ``landslide:scenes``, counted apart."""
    from pipeline.cube.items import DEM_COLLECTION, S2_COLLECTION

    def count(collection: str) -> int:
        return sum(1 for s in scenes if isinstance(s, dict) and s.get("collection") == collection)

    return {"sentinel-2_scenes": count(S2_COLLECTION), "dem_tiles": count(DEM_COLLECTION)}


def _store_facts(ds: xr.Dataset) -> dict[str, Any]:
    a = ds.attrs
    scenes = _scene_counts(a.get("landslide:scenes") or [])
    facts = {
        "event_id": a.get("landslide:event_id"),
        "model": a.get("landslide:model"),
        "checkpoint_sha256": (a.get("landslide:checkpoint_sha256") or "")[:12] or None,
        "window": f"{a['landslide:start']} to {a['landslide:end']}"
        if a.get("landslide:start") and a.get("landslide:end")
        else None,
        # the DEM is an input too, but not a scene: "Sentinel-2 scenes 1, DEM tiles 1", never "Scenes 2"
        "sentinel-2_scenes": scenes["sentinel-2_scenes"] or None,
        "dem_tiles": scenes["dem_tiles"] or None,
        "crs": a.get("proj:code"),
        "software_version": a.get("landslide:software_version"),
    }
    return {k: v for k, v in facts.items() if v is not None}


def _probability_range(ds: xr.Dataset) -> tuple[float, float]:
    from dask.base import compute

    p = ds["probability"]
    lo_arr, hi_arr = compute(p.min(), p.max())  # one pass over the store
    lo, hi = float(lo_arr), float(hi_arr)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise UserError("the store has no valid probability to map")
    return lo, hi


def _contour_values(fc: dict[str, Any] | None) -> list[str]:
    if fc is None:
        return []
    keys = ("label", "value", "pga", "PGA", "mmi", "MMI")
    values: list[str] = []
    for f in fc["features"]:
        props = f.get("properties") or {}
        for k in keys:
            if props.get(k) is not None:
                text = str(props[k]) if k in ("label", "value") else f"{k.upper()} {props[k]}"
                if text not in values:
                    values.append(text)
                break
    return values


def _copy_static(dest: Path) -> None:
    pkg = resources.files("pipeline.products.webmap")
    for name in _STATIC:
        (dest / name).write_bytes(pkg.joinpath("static", name).read_bytes())
    (dest / "vendor").mkdir()
    for name in _VENDOR:
        (dest / "vendor" / name).write_bytes(pkg.joinpath("vendor", name).read_bytes())


def _links_html(heading: str, links: list[dict[str, str]]) -> str:
    if not links:
        return ""
    items = "".join(f'<li><a href="{escape(v["href"])}">{escape(v["label"])}</a></li>' for v in links)
    return f"    <h2>{escape(heading)}</h2><ul>{items}</ul>\n"


def _index_html(
    title: str, embedded: bool, versions: list[dict[str, str]], downloads: list[dict[str, str]]
) -> str:
    # the version and data links also as plain HTML: readable without JavaScript and by scripts
    fallback = (
        f"  <noscript>\n    <h1>{escape(title)}</h1>\n"
        f"{_links_html('Versions', versions)}{_links_html('Data', downloads)}  </noscript>\n"
    )
    tiles_tag = '  <script src="data/tiles.js"></script>\n' if embedded else ""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n'
        '  <meta charset="utf-8">\n'
        '  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"  <title>{escape(title)}</title>\n"
        '  <link rel="icon" href="data:,">\n'  # no favicon request (a 404 on static servers)
        '  <link rel="stylesheet" href="vendor/maplibre-gl.css">\n'
        '  <link rel="stylesheet" href="webmap.css">\n'
        "</head>\n<body>\n"
        '  <div id="map"></div>\n'
        '  <aside id="panel"></aside>\n'
        f"{fallback}"
        '  <script src="vendor/maplibre-gl.js"></script>\n'
        '  <script src="data/map-data.js"></script>\n'
        f"{tiles_tag}"
        '  <script src="webmap.js"></script>\n'
        "</body>\n</html>\n"
    )


def _js_assign(name: str, value: Any) -> str:
    return f"window.{name} = {json.dumps(value, separators=(',', ':'), allow_nan=False)};\n"


def write_web_map(
    out_dir: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str],
    polygons: str | os.PathLike[str] | None = None,
    area: str | os.PathLike[str] | None = None,
    shakemap_contours: str | os.PathLike[str] | None = None,
    summary: str | os.PathLike[str] | None = None,
    versions: Sequence[tuple[str, str]] = (),
    title: str | None = None,
    basemap: str | None = DEFAULT_BASEMAP,
    embed_limit_bytes: int = EMBED_LIMIT_BYTES,
) -> Path:
    """Write the web map of a complete result store into ``out_dir`` (replaced whole).

    Args:
        out_dir: The folder to write (created; an existing one is replaced atomically).
        store: The sweep's Zarr result store (the probability layer and the legend's range).
        polygons: Landslide polygons (GeoJSON, GeoParquet or any OGR file); from the store at its
            threshold if None.
        area: The swept area (e.g. ``landslide event-area``'s GeoJSON); the store's extent if None.
        shakemap_contours: ShakeMap contour lines or polygons (GeoJSON); the layer is left out if
            None. A ``label``, ``value``, ``pga`` or ``mmi`` property names each contour.
        summary: An event ``summary.json``; whatever keys it has are shown.
        versions: ``(label, relative path)`` of each version of the event's map, listed as links.
        title: Page title; the summary's ``title``, the event id, or "Landslide map" if None.
        basemap: XYZ URL template of the online basemap (tried once, dropped when unreachable);
            None for none.
        embed_limit_bytes: Tiles larger than this (base64) are not embedded for ``file://``.

    Returns:
        The path of ``index.html``.

    Raises:
        UserError: The store is missing or incomplete, or an input file is unreadable.

    """
    ds = open_result(store)
    layers = Layers(
        polygons=read_vector(polygons, "polygons") if polygons is not None else _store_polygons(ds),
        area=read_vector(area, "area")
        if area is not None
        else _feature_collection({"type": "Polygon", "coordinates": [_extent_wgs84(ds)]}, "store extent"),
        shakemap=read_vector(shakemap_contours, "ShakeMap contours")
        if shakemap_contours is not None
        else None,
    )
    summary_obj: dict[str, Any] | None = None
    if summary is not None:
        sp = Path(summary)
        try:
            loaded = json.loads(sp.read_text())
        except FileNotFoundError as exc:
            raise UserError(f"no summary file at {sp}") from exc
        except ValueError as exc:
            raise UserError(f"summary {sp} is not valid JSON ({exc})") from exc
        summary_obj = scrub(loaded) if isinstance(loaded, dict) else {"summary": scrub(loaded)}
    facts = _store_facts(ds)
    page_title = title or (summary_obj or {}).get("title") or facts.get("event_id") or "Landslide map"
    lo, hi = _probability_range(ds)
    extent = _extent_wgs84(ds)
    extent_bounds = _bounds({"features": [{"geometry": {"coordinates": extent}}]})
    threshold = float(ds.attrs["landslide:threshold"]) if "landslide:threshold" in ds.attrs else None

    target = Path(out_dir)
    with atomic_output(target) as tmp:
        tmp.mkdir(parents=True)
        tileset = write_tiles(ds, tmp / "tiles")
        embedded = embed_tiles(tileset, embed_limit_bytes)
        _copy_static(tmp)
        data = tmp / "data"
        data.mkdir()
        downloads: list[dict[str, str]] = []
        for key, fc in (
            ("landslides", layers.polygons),
            ("area", layers.area),
            ("shakemap", layers.shakemap),
        ):
            if fc is not None:
                (data / f"{key}.geojson").write_text(json.dumps(fc))
                downloads.append({"label": f"{key}.geojson", "href": f"data/{key}.geojson"})
        if summary_obj is not None:
            (data / "summary.json").write_text(json.dumps(summary_obj, indent=2))
            downloads.append({"label": "summary.json", "href": "data/summary.json"})
        payload = {
            "title": str(page_title),
            "bounds": _union(extent_bounds, _bounds(layers.area)),
            "tiles": {
                "path": "tiles/{z}/{x}/{y}.png",
                "min_zoom": tileset.min_zoom,
                "max_zoom": tileset.max_zoom,
                "bounds": extent_bounds,
                "count": tileset.count,
                "embedded": embedded is not None,
            },
            "colormap": {
                "name": COLORMAP,
                "alpha_min": ALPHA_MIN,
                "alpha_full": ALPHA_FULL,
                "lut": lut().tolist(),
            },
            "probability": {"min": lo, "max": hi, "threshold": threshold},
            "polygons": layers.polygons,
            "area": layers.area,
            "shakemap": layers.shakemap,
            "shakemap_values": _contour_values(layers.shakemap),
            "store": scrub(facts),
            "summary": summary_obj,
            "versions": [{"label": str(label), "href": str(href)} for label, href in versions],
            "downloads": downloads,
            "basemap": {"url": basemap, "attribution": BASEMAP_ATTRIBUTION} if basemap else None,
            "attribution": DATA_ATTRIBUTION,
            "maplibre_version": MAPLIBRE_VERSION,
        }
        (data / "map-data.js").write_text(_js_assign("LANDSLIDE_WEBMAP", payload))
        if embedded is not None:
            tiles_payload = {"blank": base64.b64encode(blank_png()).decode("ascii"), "tiles": embedded}
            (data / "tiles.js").write_text(_js_assign("LANDSLIDE_TILES", tiles_payload))
        html = _index_html(str(page_title), embedded is not None, payload["versions"], downloads)
        (tmp / "index.html").write_text(html)
    return target / "index.html"
