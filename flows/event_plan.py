"""Plan an earthquake's area: from its ShakeMap when the detail document lists one, else Keefer.

:func:`plan_event` is called at every poll of an active earthquake. It reads the detail document
(retried by the caller's policy on network errors), and when it lists a ShakeMap version that was
not planned from yet (dedupe key ``event:source:version``) it fetches ``grid.xml`` into
``OUT/<event>/shakemap/``, and plans the area (:mod:`pipeline.event_area`): cells with
PGA >= ``pga_g`` (or MMI >= ``mmi``) on land, cut into tiles, flat tiles skipped using the DEM
the catalog serves. It returns the tiles to sweep because the area grew (all of them for the
first plan). Without a ShakeMap (no detail URL, none listed, the detail or the grid cannot be
read) the first plan is the Keefer disc on land (:mod:`flows.sweep_area`), and the record says
why (``area_source: keefer``, ``area_note``); a ShakeMap listed at a later poll replaces it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from flows.event_state import EventRecord
from flows.sweep_area import disc, land, landslide_radius_km
from flows.usgs_detail import ShakeMapRef, read_bytes, read_detail, shakemap_ref
from pipeline import catalog
from pipeline import event_area as ea
from pipeline.errors import UserError
from pipeline.store.atomic import write_atomic

DEM_COLLECTION = "cop-dem-glo-30"
#: The DEM is static; its items carry a production date, so search it over a wide window.
DEM_WINDOW = (dt.date(1990, 1, 1), dt.date(2100, 12, 31))


@dataclass(frozen=True)
class PlanOptions:
    """How areas are planned (from the watch's parameters).

    Attributes:
        use_shakemap: Look for a ShakeMap in the detail document.
        pga_g: PGA threshold (g).
        mmi: MMI threshold instead of PGA, or None.
        tile_deg: Sweep tile side (degrees).
        flat_deg: Tiles whose steepest coarse slope is below this are skipped.
        max_radius_km: Cap of the Keefer disc (the fallback).
    """

    use_shakemap: bool = True
    pga_g: float = ea.DEFAULT_PGA_G
    mmi: float | None = None
    tile_deg: float = ea.DEFAULT_TILE_DEG
    flat_deg: float = ea.DEFAULT_FLAT_DEG
    max_radius_km: float = 50.0


def event_dir(out_dir: str | Path, event_id: str) -> Path:
    """Directory of one event's versions, tiles, ShakeMaps and collection."""
    return Path(out_dir) / event_id


def dem_probe(catalog_source: str | None, bbox: ea.BBox) -> ea.SlopeProbe | None:
    """A slope probe over the catalog's DEM tiles covering ``bbox`` (None when there are none).

    Items are signed with the catalog's signer (Planetary Computer) just before use; the probe
    reads them at once, so tokens do not expire, and the hrefs are never logged or written.
    """
    try:
        cat = catalog.open_catalog(catalog_source)
        items = cat.search(DEM_COLLECTION, bbox, DEM_WINDOW[0], DEM_WINDOW[1])
        items = catalog.sign_items(items, getattr(cat, "signer", None))
    except UserError:
        return None
    hrefs = [a.get_absolute_href() or a.href for it in items for k, a in it.assets.items() if k == "data"]
    return ea.dem_overview_probe(hrefs) if hrefs else None


def _bounds(area: Any) -> ea.BBox:
    w, s, e, n = area.bounds
    return (float(w), float(s), float(e), float(n))


def _tiles(area: Any, opts: PlanOptions, catalog_source: str | None) -> list[ea.AreaTile]:
    tiles = ea.split_tiles(area, opts.tile_deg)
    probe = dem_probe(catalog_source, _bounds(area)) if tiles else None
    return ea.mark_flat(tiles, probe, opts.flat_deg)


def _write_area(path: Path, area: Any, tiles: list[ea.AreaTile], props: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(ea.area_geojson(area, tiles, props)))


def _find_shakemap(rec: EventRecord, log: Logger | LoggerAdapter[Any]) -> tuple[ShakeMapRef | None, str]:
    if not rec.detail:
        return None, "the feed gave no detail document"
    try:
        ref = shakemap_ref(read_detail(rec.detail))
    except UserError as exc:
        log.warning("event %s: no ShakeMap: %s", rec.id, exc)
        return None, f"detail document unreadable: {exc}"[:300]
    return ref, "" if ref else "the detail document lists no ShakeMap grid"


def plan_event(
    rec: EventRecord,
    out_dir: str,
    opts: PlanOptions,
    catalog_source: str | None,
    log: Logger | LoggerAdapter[Any],
) -> list[ea.AreaTile]:
    """(Re)plan ``rec``'s area in place; return the tiles added by this plan (to sweep).

    Returns an empty list when nothing changed (the ShakeMap version was already planned from).
    """
    edir = event_dir(out_dir, rec.id)
    ref, why = _find_shakemap(rec, log) if opts.use_shakemap else (None, "ShakeMaps not used")
    if ref is not None and ref.key not in rec.shakemaps_done:
        try:
            grid_path = edir / "shakemap" / f"{ref.source}-v{ref.version}-grid.xml"
            grid_path.parent.mkdir(parents=True, exist_ok=True)
            grid_path.write_bytes(read_bytes(ref.grid_url))
            grid = ea.parse_grid(grid_path)
        except UserError as exc:
            why = f"ShakeMap {ref.key} unreadable: {exc}"[:300]
            log.warning("event %s: %s", rec.id, why)
        else:
            area = ea.clip_to_land(ea.shaken_area(grid, pga_g=opts.pga_g, mmi=opts.mmi), land())
            rule = f"MMI >= {opts.mmi:g}" if opts.mmi is not None else f"PGA >= {opts.pga_g:g} g"
            tiles = _tiles(area, opts, catalog_source)
            before = plan_tiles(rec)
            added = ea.added_tiles(before if rec.area_source == "shakemap" else [], tiles)
            rec.shakemaps_done.append(ref.key)
            rec.shakemap = {
                **asdict(ref),
                "layout": grid.layout,
                "grid": str(grid_path.relative_to(edir)),
                "rule": rule,
                "planned": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            rec.area_source, rec.area_note = (
                "shakemap",
                f"ShakeMap {ref.source} v{ref.version}: {rule}, on land",
            )
            rec.tiles = [asdict(t) for t in tiles]
            rec.bbox = list(_bounds(area)) if not area.is_empty else rec.bbox
            _write_area(
                edir / "area.geojson",
                area,
                tiles,
                {
                    "event_id": rec.id,
                    "source": "shakemap",
                    "rule": rule,
                    "shakemap_version": ref.version,
                    "land_km2": round(ea.geodesic_km2(area), 2),
                },
            )
            _write_contours(edir / "shakemap" / "contours.geojson", grid)
            log.info(
                "event %s: planned from %s: %d tile(s), %d added", rec.id, ref.key, len(tiles), len(added)
            )
            return [t for t in added if t.skip is None]
    if rec.tiles:
        return []
    # the fallback: the Keefer disc on land
    assert rec.magnitude is not None and rec.lon is not None and rec.lat is not None
    radius = landslide_radius_km(rec.magnitude, opts.max_radius_km)
    area = ea.clip_to_land(disc(rec.lon, rec.lat, radius), land())
    tiles = _tiles(area, opts, catalog_source)
    rec.area_source, rec.area_note = "keefer", f"Keefer disc of {radius:.1f} km on land ({why})"
    rec.tiles = [asdict(t) for t in tiles]
    _write_area(
        edir / "area.geojson",
        area,
        tiles,
        {
            "event_id": rec.id,
            "source": "keefer",
            "radius_km": round(radius, 2),
            "note": why,
            "land_km2": round(ea.geodesic_km2(area), 2),
        },
    )
    log.info("event %s: %s: %d tile(s)", rec.id, rec.area_note, len(tiles))
    return [t for t in tiles if t.skip is None]


def _write_contours(path: Path, grid: ea.ShakeGrid) -> None:
    feats = [
        {
            "type": "Feature",
            "geometry": mapping(geom),
            "properties": {"pga_g": level, "pga": level, "label": f"PGA >= {level:g} g"},
        }
        for level, geom in ea.pga_contours(grid)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def plan_tiles(rec: EventRecord) -> list[ea.AreaTile]:
    """The current plan's tiles as values."""
    return [
        ea.AreaTile(
            t["id"],
            (t["bbox"][0], t["bbox"][1], t["bbox"][2], t["bbox"][3]),
            float(t["area_km2"]),
            t.get("max_slope_deg"),
            t.get("skip"),
        )
        for t in rec.tiles
    ]
