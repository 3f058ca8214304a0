"""What each map version publishes besides its summary: STAC item and collection, web map, artifact.

* ``v<n>/item.json``: a STAC Item per version (its summary, polygons, area, mosaic and COG as
  assets);
* ``collection.json``: the event's STAC Collection, one ``item`` link per version, the newest
  marked ``current`` (``landslide:current``, the ``latest-version`` link);
* ``v<n>/map/``: the web map (:func:`pipeline.products.webmap.write_web_map`) when that package
  is installed;
* the summary as a Prefect markdown artifact (key ``<event>-summary``).
"""

from __future__ import annotations

import json
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from shapely.geometry import box

from flows.event_state import EventRecord
from pipeline.store.atomic import write_atomic


def artifact(event_id: str, summary: dict[str, Any]) -> str | None:
    """Log the summary as a Prefect markdown artifact; its id (None outside a flow run)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return None
    key = "".join(c if c.isalnum() else "-" for c in event_id.lower()) + "-summary"
    return str(
        create_markdown_artifact(
            key=key,
            markdown="```json\n" + json.dumps(summary, indent=2, default=str) + "\n```",
            description=f"landslide map of {event_id}, version {summary['version']['n']}",
        )
    )


def web_map(
    vdir: Path,
    edir: Path,
    store: Path,
    outline: Any,
    rec: EventRecord,
    n: int,
    log: Logger | LoggerAdapter[Any],
) -> None:
    """The version's web map of the whole event, when the web map writer is installed.

    The probability layer is the version's mosaic (every swept region); the dashed line is the
    outline of the swept regions, the area whose landslides the map draws and counts.
    """
    try:
        from pipeline.products.webmap import write_web_map  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        log.info("event %s: no web map (pipeline.products.webmap is not installed)", rec.id)
        return
    from pipeline.event_area import geodesic_km2

    swept = vdir / "area.geojson"
    feature = {
        "type": "Feature",
        "geometry": json.loads(json.dumps(outline.__geo_interface__)),
        "properties": {"label": "area swept", "swept_km2": round(geodesic_km2(outline), 3)},
    }
    write_atomic(swept, json.dumps({"type": "FeatureCollection", "features": [feature]}))
    contours = edir / "shakemap" / "contours.geojson"
    write_web_map(
        vdir / "map",
        store=store,
        polygons=vdir / "landslides.geojson",
        area=swept,
        shakemap_contours=contours if contours.exists() and rec.area_source == "shakemap" else None,
        summary=vdir / "summary.json",
        versions=[(f"version {v}", f"../../v{v}/map/index.html") for v in range(1, n + 1)],
    )


def write_item(vdir: Path, rec: EventRecord, version: dict[str, Any], area: Any) -> None:
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
            "mosaic": {
                "href": f"../{version['store']}",
                "type": "application/vnd+zarr",
                "roles": ["data"],
                "title": "probability mosaic of the whole event (xarray.open_zarr)",
            },
            "cog": {
                "href": "probability.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
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
