"""STAC Item for one sweep's products, and a STAC Collection for a series of sweeps.

The Item (STAC 1.1.0) describes one finished sweep: geometry/bbox in WGS84 (the store's grid
footprint), ``start_datetime``/``end_datetime`` the sweep's image window and ``datetime`` its end,
the projection extension (v2.0.0: code, shape, transform, native bbox) on the Item with per-asset
overrides where an asset has another CRS, the raster extension (v1.1.0, ``raster:bands`` with
``nodata``, ``data_type``, ``unit``, ``sampling``, ``spatial_resolution``) on the COG asset (the
STAC 1.1 asset-level ``nodata`` is left out: rustac 0.9 cannot read ``"nan"`` there), and one
``derived_from`` link per input scene to that scene's canonical STAC Item URL (see
:func:`source_href`). Asset hrefs are relative to the Item's directory.

A series of sweeps over one region is one Collection whose ``item`` links are the sweeps,
ordered by end date; :func:`update_collection` adds or replaces an Item by id and recomputes the
extent from all linked Items, so running it again with the same Item changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pystac
import shapely
import xarray as xr
from pyproj import Transformer
from shapely.geometry import box, mapping

from pipeline.store.atomic import atomic_output
from pipeline.store.reader import store_crs, store_transform

STAC_VERSION = "1.1.0"
PROJECTION_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"

#: Asset key -> (media type, roles, title).
ASSET_TYPES: dict[str, tuple[str, list[str], str]] = {
    "zarr": ("application/vnd+zarr", ["data"], "Result store (probability, valid, slope)"),
    "cog": (
        "image/tiff; application=geotiff; profile=cloud-optimized",
        ["data"],
        "Landslide probability (COG)",
    ),
    "polygons": ("application/vnd.apache.parquet", ["data"], "Landslide polygons (GeoParquet)"),
    "polygons_geojson": ("application/geo+json", ["data"], "Landslide polygons (GeoJSON, WGS84)"),
    "pyramid": ("application/vnd+zarr", ["visual"], "Web Mercator pyramid (Zarr)"),
    "quicklook": ("image/png", ["overview"], "Quicklook"),
}
#: Asset key -> CRS when it differs from the store's.
ASSET_CRS = {"polygons_geojson": "EPSG:4326", "pyramid": "EPSG:3857", "quicklook": None}


def strip_query(href: str) -> str:
    """Drop the query, fragment and user info of a URL (e.g. a SAS token); paths keep their path.

    Everything that can carry a credential goes: ``?st=...&se=...&sig=...``, ``#...`` and
    ``user:password@``.
    """
    parts = urlsplit(href)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return href.split("?", 1)[0].split("#", 1)[0]
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def source_href(href: str) -> str | None:
    """The canonical, unsigned URL of an input scene's STAC Item, or None if it has none.

    The sweep records each scene's ``self`` link: a STAC API's item URL
    (``https://.../collections/C/items/ID``) or, for a static catalog, the item file's absolute
    path. Those are returned without query, fragment or user info. An item read from an
    ItemCollection file has no URL of its own (the sweep then records its bare id); a bare id
    would resolve to nothing next to the Item, so it gets no link (the id is still listed in
    ``landslide:source_items``).
    """
    parts = urlsplit(href)
    if parts.scheme and len(parts.scheme) > 1:
        return strip_query(href) if parts.netloc or parts.scheme == "file" else None
    return strip_query(href) if Path(href).is_absolute() else None


def _parse_date(value: str) -> date:
    return datetime.fromisoformat(str(value)).date()


def window_datetimes(ds: xr.Dataset) -> tuple[datetime, datetime]:
    """Return the sweep's window as UTC datetimes: start of the first day, end of the last day."""
    start = datetime.combine(_parse_date(ds.attrs["landslide:start"]), time.min, tzinfo=UTC)
    end = datetime.combine(_parse_date(ds.attrs["landslide:end"]), time(23, 59, 59), tzinfo=UTC)
    return start, end


def item_id(ds: xr.Dataset) -> str:
    """Return a stable id for the sweep: event id (or a hash of the grid) and the window."""
    start = _parse_date(ds.attrs["landslide:start"]).isoformat()
    end = _parse_date(ds.attrs["landslide:end"]).isoformat()
    event = ds.attrs.get("landslide:event_id")
    if not event:
        grid = json.dumps([ds.attrs.get("proj:code"), list(store_transform(ds))[:6], dict(ds.sizes)])
        event = "sweep-" + hashlib.sha256(grid.encode()).hexdigest()[:10]
    return f"{event}_{start}_{end}"


def _footprint(ds: xr.Dataset) -> tuple[list[float], dict[str, Any], list[float]]:
    """Return the WGS84 bbox, the WGS84 footprint geometry and the native bbox."""
    t = store_transform(ds)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    x0, y0 = t.c, t.f
    x1, y1 = t @ (nx, ny)
    native = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    to_ll = Transformer.from_crs(store_crs(ds), 4326, always_xy=True)
    poly = box(*native).segmentize(max(native[2] - native[0], native[3] - native[1]) / 4)
    ll = shapely.transform(poly, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    bbox = [round(v, 7) for v in ll.bounds]
    geom = json.loads(json.dumps(mapping(ll)))  # tuples -> lists
    geom["coordinates"] = [[[round(x, 7), round(y, 7)] for x, y in ring] for ring in geom["coordinates"]]
    return bbox, geom, native


def build_item(
    ds: xr.Dataset,
    assets: dict[str, Path],
    item_dir: str | os.PathLike[str],
    *,
    threshold: float,
    polygon_count: int,
    area_km2: float,
) -> pystac.Item:
    """Build the STAC Item of one sweep's products.

    Args:
        ds: The result store (lazy).
        assets: Asset key (see :data:`ASSET_TYPES`) -> path of the written product.
        item_dir: Directory the Item JSON will be written to; asset hrefs are relative to it.
        threshold: Probability threshold used for the polygons.
        polygon_count: Number of landslide polygons.
        area_km2: Total landslide area, square kilometres.

    Returns:
        The Item (not yet saved).

    """
    bbox, geom, native = _footprint(ds)
    start, end = window_datetimes(ds)
    attrs = ds.attrs
    t = store_transform(ds)
    shape = [int(ds.sizes["y"]), int(ds.sizes["x"])]
    properties: dict[str, Any] = {
        "start_datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "title": f"Landslide probability {start.date()} to {end.date()}",
        "proj:code": store_crs(ds).to_string() if attrs.get("proj:code") is None else attrs["proj:code"],
        "proj:shape": shape,
        "proj:transform": [float(v) for v in list(t)[:6]],
        "proj:bbox": [float(v) for v in native],
        "landslide:model": attrs.get("landslide:model"),
        "landslide:checkpoint_sha256": attrs.get("landslide:checkpoint_sha256"),
        "landslide:threshold": float(threshold),
        "landslide:polygon_count": int(polygon_count),
        "landslide:area_km2": float(area_km2),
        "landslide:skipped_scenes": list(attrs.get("landslide:skipped_scenes", [])),
        "landslide:software_version": attrs.get("landslide:software_version"),
    }
    scenes: list[dict[str, Any]] = list(attrs.get("landslide:scenes", []))
    properties["landslide:source_items"] = [
        {"id": str(sc.get("id")), "collection": sc.get("collection")} for sc in scenes
    ]
    if attrs.get("landslide:event_id"):
        properties["landslide:event_id"] = attrs["landslide:event_id"]
    item = pystac.Item(
        id=item_id(ds),
        geometry=geom,
        bbox=bbox,
        datetime=end,
        properties=properties,
        stac_extensions=[PROJECTION_EXT, RASTER_EXT],
    )
    base = Path(item_dir).resolve()
    for key, path in assets.items():
        media, roles, title = ASSET_TYPES[key]
        extra: dict[str, Any] = {}
        if key in ASSET_CRS:
            extra["proj:code"] = ASSET_CRS[key]
        if key == "cog":
            res = abs(t.a)
            # nodata etc. only inside raster:bands: rustac 0.9 cannot parse the STAC 1.1 asset-level
            # ``"nodata": "nan"`` (valid per the core schema) and then refuses the whole item
            extra["raster:bands"] = [
                {
                    "nodata": "nan",
                    "data_type": "float32",
                    "unit": "1",
                    "sampling": "area",
                    "spatial_resolution": res,
                }
            ]
        href = os.path.relpath(Path(path).resolve(), base)
        item.add_asset(
            key, pystac.Asset(href=href, media_type=media, roles=roles, title=title, extra_fields=extra)
        )
    for scene in scenes:
        target = source_href(str(scene.get("href", "")))
        if target is not None:
            item.add_link(
                pystac.Link(
                    rel="derived_from",
                    target=target,
                    media_type="application/geo+json",
                    title=scene.get("id"),
                )
            )
    return item


def item_to_dict(item: pystac.Item) -> dict[str, Any]:
    """Serialise an Item as written (relative hrefs kept, no self link)."""
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    d["stac_version"] = STAC_VERSION
    return d


def _write_json(obj: dict[str, Any], path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def write_item(item: pystac.Item, path: str | os.PathLike[str]) -> Path:
    """Write the Item JSON atomically and set its self href."""
    out = Path(path)
    _write_json(item_to_dict(item), out)
    item.set_self_href(str(out.resolve()))
    return out


def _rel(target: Path, start_dir: Path) -> str:
    rel = os.path.relpath(target.resolve(), start_dir.resolve())
    return rel if rel.startswith(".") else f"./{rel}"


def update_collection(
    collection_path: str | os.PathLike[str],
    item: pystac.Item,
    *,
    collection_id: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Add or replace ``item`` in the series Collection at ``collection_path`` (created if absent).

    The Item must already be written (``write_item``): its file is updated to point at the
    Collection. Item links are keyed by Item id, sorted by ``end_datetime``; the extent is
    recomputed from every linked Item file. Calling it twice with the same Item is a no-op.

    Args:
        collection_path: ``collection.json`` of the series.
        item: The sweep's Item, with a self href.
        collection_id: Id for a new Collection (default: the event id, else ``landslide-sweeps``).
        description: Description for a new Collection.

    Returns:
        The Collection as written.

    Raises:
        ValueError: The Item has no self href.

    """
    item_href = item.get_self_href()
    if item_href is None:
        raise ValueError("write the item (write_item) before adding it to a collection")
    cpath = Path(collection_path)
    cdir = cpath.parent.resolve()
    coll: dict[str, Any]
    if cpath.exists():
        coll = json.loads(cpath.read_text())
    else:
        cid = collection_id or item.properties.get("landslide:event_id") or "landslide-sweeps"
        coll = {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "id": cid,
            "title": f"Landslide sweeps: {cid}",
            "description": description
            or "Landslide probability sweeps of one region; each item is one sweep (image window).",
            "license": "other",
            "extent": {},
            "links": [],
        }
    item_path = Path(item_href)
    entry = {"rel": "item", "href": _rel(item_path, cdir), "type": "application/geo+json", "title": item.id}
    links = [lk for lk in coll["links"] if not (lk.get("rel") == "item" and lk.get("title") == item.id)]
    items: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for link in [lk for lk in links if lk.get("rel") == "item"] + [entry]:
        path = (cdir / link["href"]).resolve()
        if path.exists():
            items.append((link, json.loads(path.read_text())))
    items.sort(key=lambda li: (li[1]["properties"].get("end_datetime", ""), li[1]["id"]))
    others = [lk for lk in links if lk.get("rel") not in ("item", "self", "root")]
    coll["links"] = [
        {"rel": "root", "href": f"./{cpath.name}", "type": "application/json"},
        *others,
        *[li[0] for li in items],
    ]
    boxes = [li[1]["bbox"] for li in items]
    union = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    starts = [li[1]["properties"].get("start_datetime") or li[1]["properties"]["datetime"] for li in items]
    ends = [li[1]["properties"].get("end_datetime") or li[1]["properties"]["datetime"] for li in items]
    coll["extent"] = {
        "spatial": {"bbox": [union, *boxes] if len(boxes) > 1 else [union]},
        "temporal": {"interval": [[min(starts), max(ends)]]},
    }
    _write_json(coll, cpath)

    item_dict = json.loads(item_path.read_text())
    item_dict["collection"] = coll["id"]
    rel = _rel(cpath, item_path.parent)
    keep = [lk for lk in item_dict.get("links", []) if lk.get("rel") not in ("collection", "parent", "root")]
    item_dict["links"] = [
        *keep,
        {"rel": "collection", "href": rel, "type": "application/json"},
        {"rel": "parent", "href": rel, "type": "application/json"},
        {"rel": "root", "href": rel, "type": "application/json"},
    ]
    _write_json(item_dict, item_path)
    item.collection_id = coll["id"]
    return coll
