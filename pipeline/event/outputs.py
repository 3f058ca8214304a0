"""What each map version publishes besides its summary: STAC item and collection, web map.

Both are built with pystac (its STAC version), as the sweep's item is
(:mod:`pipeline.products.stac_item`).

* ``v<n>/item.json``: a STAC Item per version (its summary, polygons, area, mosaic and COG as
  assets);
* ``collection.json``: the event's STAC Collection, one ``item`` link per version, the newest
  marked ``current`` (``landslide:current``, the ``latest-version`` link);
* ``v<n>/map/``: the web map (:func:`pipeline.products.webmap.write_web_map`) when that package
  is installed.

The summary is also logged as a Prefect markdown artifact by the flow (:mod:`flows.map_versions`).
"""

from __future__ import annotations

import datetime as dt
import json
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

import pystac
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from pipeline.event.state import EventRecord, Version
from pipeline.store.atomic import write_atomic


def web_map(
    vdir: Path, edir: Path, store: Path, outline: BaseGeometry, rec: EventRecord, n: int,
    log: Logger | LoggerAdapter[Any],
) -> None:  # fmt: skip
    """The version's web map of the whole event, when the web map writer is installed.

    The probability layer is the version's mosaic (every swept region); the dashed line is the
    outline of the swept regions (``v<n>/area.geojson``): the area whose landslides the map
    draws and counts.
    """
    try:
        from pipeline.products.webmap import write_web_map  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        log.info("event %s: no web map (pipeline.products.webmap is not installed)", rec.id)
        return
    from pipeline.event.area import geodesic_km2

    swept = vdir / "area.geojson"
    feature = {
        "type": "Feature",
        "geometry": mapping(outline),
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


def _when(iso: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _write(obj: pystac.STACObject, path: Path) -> None:
    doc = obj.to_dict(include_self_link=False, transform_hrefs=False)
    write_atomic(path, json.dumps(doc, indent=2))


def version_item(rec: EventRecord, version: Version, area: BaseGeometry) -> pystac.Item:
    """The version's STAC Item: summary, polygons, area, the mosaic and its COG as assets."""
    w, s, e, n = area.bounds
    start, end = version.window
    item = pystac.Item(
        id=f"{rec.id}-v{version.n}",
        geometry=mapping(box(w, s, e, n)),
        bbox=[w, s, e, n],
        datetime=_when(version.created),
        properties={
            "landslide:version": version.n,
            "landslide:coverage": version.coverage,
            "landslide:event_id": rec.id,
            "start_datetime": f"{start}T00:00:00Z",
            "end_datetime": f"{end}T23:59:59Z",
        },
        collection=rec.id,
    )
    item.add_link(pystac.Link("collection", "../collection.json", media_type=pystac.MediaType.JSON))
    assets = {
        "summary": ("summary.json", pystac.MediaType.JSON, "metadata"),
        "polygons": ("landslides.geojson", pystac.MediaType.GEOJSON, "data"),
        "area": ("../area.geojson", pystac.MediaType.GEOJSON, "metadata"),
        "mosaic": (f"../{version.store}", "application/vnd+zarr", "data"),
        "cog": ("probability.tif", pystac.MediaType.COG, "data"),
    }
    for key, (href, media, role) in assets.items():
        item.add_asset(key, pystac.Asset(href=href, media_type=media, roles=[role]))
    return item


def write_item(vdir: Path, rec: EventRecord, version: Version, area: BaseGeometry) -> None:
    """Write the version's STAC Item ``v<n>/item.json`` (:func:`version_item`)."""
    _write(version_item(rec, version, area), vdir / "item.json")


def event_collection(rec: EventRecord, versions: list[Version], area: BaseGeometry) -> pystac.Collection:
    """The event's STAC Collection: one item link per version, the newest marked ``current``."""
    w, s, e, n = area.bounds
    newest = versions[-1].n
    coll = pystac.Collection(
        id=rec.id,
        description=f"Landslides observed after {rec.place or rec.id}, one item per map version",
        extent=pystac.Extent(
            pystac.SpatialExtent([[w, s, e, n]]), pystac.TemporalExtent([[_when(rec.event_time), None]])
        ),
        license="other",
        extra_fields={
            "landslide:current": f"v{newest}",
            "landslide:versions": [
                {"n": v.n, "created": v.created, "coverage": v.coverage, "current": v.n == newest}
                for v in versions
            ],
        },
    )
    coll.add_link(pystac.Link("self", "collection.json", media_type=pystac.MediaType.JSON))
    for v in versions:
        title = f"version {v.n}" + (" (current)" if v.n == newest else "")
        coll.add_link(
            pystac.Link("item", f"v{v.n}/item.json", media_type=pystac.MediaType.GEOJSON, title=title)
        )
    coll.add_link(pystac.Link("latest-version", f"v{newest}/item.json", media_type=pystac.MediaType.GEOJSON))
    return coll


def write_collection(edir: Path, rec: EventRecord, versions: list[Version], area: BaseGeometry) -> None:
    """Write the event's STAC Collection ``collection.json`` (:func:`event_collection`)."""
    _write(event_collection(rec, versions, area), edir / "collection.json")
