"""What each map version publishes besides its summary: STAC item and collection, web map.

* ``v<n>/item.json``: a STAC Item per version (its summary, polygons, area and tile stores as
  assets);
* ``collection.json``: the event's STAC Collection, one ``item`` link per version, the newest
  marked ``current`` (``landslide:current``, the ``latest-version`` link);
* ``v<n>/map/``: the web map (:func:`pipeline.products.webmap.write_web_map`) when that package
  is installed.

The summary is also logged as a Prefect markdown artifact by the flow (:mod:`flows.map_versions`).
"""

from __future__ import annotations

import json
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from shapely.geometry import box

from pipeline.event.state import EventRecord
from pipeline.store.atomic import write_atomic


def web_map(
    vdir: Path, edir: Path, stores: dict[str, str], rec: EventRecord, n: int, log: Logger | LoggerAdapter[Any]
) -> None:
    """The version's web map, when the web map writer is installed (``pipeline.products.webmap``)."""
    try:
        from pipeline.products.webmap import write_web_map  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        log.info("event %s: no web map (pipeline.products.webmap is not installed)", rec.id)
        return
    area_doc = json.loads((edir / "area.geojson").read_text())
    area_only = vdir / "area.geojson"
    area_only.write_text(json.dumps({"type": "FeatureCollection", "features": area_doc["features"][:1]}))
    largest = max(stores.values(), key=lambda rel: sum(f.stat().st_size for f in (edir / rel).rglob("*")))
    contours = edir / "shakemap" / "contours.geojson"
    write_web_map(
        vdir / "map",
        store=edir / largest,
        polygons=vdir / "landslides.geojson",
        area=area_only,
        shakemap_contours=contours if contours.exists() and rec.area_source == "shakemap" else None,
        summary=vdir / "summary.json",
        versions=[(f"version {v}", f"../../v{v}/map/index.html") for v in range(1, n + 1)],
    )


def write_item(vdir: Path, rec: EventRecord, version: dict[str, Any], area: Any) -> None:
    """The version's STAC Item ``v<n>/item.json``: summary, polygons, area and stores as assets."""
    w, s, e, n = area.bounds
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"{rec.id}-v{version['n']}",
        "bbox": [w, s, e, n],
        "geometry": json.loads(json.dumps(box(w, s, e, n).__geo_interface__)),
        "properties": {
            "datetime": version["created"],
            "landslide:version": version["n"],
            "landslide:coverage": version["coverage"],
            "landslide:event_id": rec.id,
            "start_datetime": version["window"][0] + "T00:00:00Z",
            "end_datetime": version["window"][1] + "T23:59:59Z",
        },
        "links": [{"rel": "collection", "href": "../collection.json", "type": "application/json"}],
        "assets": {
            "summary": {"href": "summary.json", "type": "application/json", "roles": ["metadata"]},
            "polygons": {"href": "landslides.geojson", "type": "application/geo+json", "roles": ["data"]},
            "area": {"href": "../area.geojson", "type": "application/geo+json", "roles": ["metadata"]},
            **{
                f"store-{k}": {"href": f"../{v}", "type": "application/vnd+zarr", "roles": ["data"]}
                for k, v in version["stores"].items()
            },
        },
        "collection": rec.id,
    }
    write_atomic(vdir / "item.json", json.dumps(item, indent=2))


def write_collection(edir: Path, rec: EventRecord, versions: list[dict[str, Any]], area: Any) -> None:
    """The event's STAC Collection: one item link per version, the newest marked ``current``."""
    w, s, e, n = area.bounds
    newest = versions[-1]["n"]
    links = [{"rel": "self", "href": "collection.json", "type": "application/json"}]
    links += [
        {
            "rel": "item",
            "href": f"v{v['n']}/item.json",
            "type": "application/geo+json",
            "title": f"version {v['n']}" + (" (current)" if v["n"] == newest else ""),
        }
        for v in versions
    ]
    links.append({"rel": "latest-version", "href": f"v{newest}/item.json", "type": "application/geo+json"})
    coll = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": rec.id,
        "license": "other",
        "description": f"Landslides observed after {rec.place or rec.id}, one item per map version",
        "extent": {"spatial": {"bbox": [[w, s, e, n]]}, "temporal": {"interval": [[rec.event_time, None]]}},
        "links": links,
        "landslide:current": f"v{newest}",
        "landslide:versions": [
            {"n": v["n"], "created": v["created"], "coverage": v["coverage"], "current": v["n"] == newest}
            for v in versions
        ],
    }
    write_atomic(edir / "collection.json", json.dumps(coll, indent=2))
