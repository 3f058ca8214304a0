"""Plan an earthquake's area: from its ShakeMap when the detail document lists one, else Keefer.

:func:`plan_event` is called at every poll of an active earthquake. It reads the detail document
(retried by the caller's policy on network errors), and when it lists a ShakeMap version that was
not planned from yet (dedupe key ``event:source:version``) it fetches ``grid.xml`` into
``OUT/<event>/shakemap/``, and plans the area (:mod:`pipeline.event.area`,
:mod:`pipeline.event.tiles`): cells with PGA >= ``pga_g`` (or MMI >= ``mmi``) on land, cut
into tiles, flat tiles skipped using the DEM the catalog serves. It returns the tiles to sweep
because the area grew (all of them for the first plan). Without a ShakeMap (no detail URL, none
listed, the detail or the grid cannot be read) the first plan is the Keefer disc on land
(:mod:`pipeline.event.keefer`), and the record says why (``area_source: keefer``,
``area_note``); a ShakeMap listed at a later poll replaces it.

:func:`post_event_window` is the post-event window searched; :func:`choose_tiles` what the next
version sweeps.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from shapely.geometry import box, mapping

from pipeline import catalog
from pipeline.errors import UserError
from pipeline.event.area import geodesic_km2, keefer_area, shakemap_area
from pipeline.event.config import (
    DEM_WINDOW,
    MAX_GRID_BYTES,
    TILE_FULL,
    BBox,
    PlanOptions,
    area_rule,
    safe_name,
)
from pipeline.event.keefer import landslide_radius_km
from pipeline.event.shakemap import ShakeGrid, parse_grid, pga_contours
from pipeline.event.state import EventRecord, ShakeMapPlan
from pipeline.event.tiles import (
    AreaTile,
    SlopeProbe,
    added_tiles,
    area_geojson,
    dem_overview_probe,
    mark_flat,
    split_tiles,
)
from pipeline.event.usgs import ShakeMapRef, read_bytes, read_detail, shakemap_ref
from pipeline.store.atomic import write_atomic


def event_dir(out_dir: str | Path, event_id: str) -> Path:
    """Directory of one event's versions, tiles, ShakeMaps and collection.

    Raises:
        UserError: The id is not a safe file name (it would leave ``out_dir``).
    """
    return Path(out_dir) / safe_name(event_id, "event id")


def dem_probe(catalog_source: str | None, bbox: BBox) -> SlopeProbe | None:
    """A slope probe over the catalog's DEM tiles covering ``bbox`` (None when there are none).

    Items are signed with the catalog's signer (Planetary Computer) just before use; the probe
    reads them at once, so tokens do not expire, and the hrefs are never logged or written.
    """
    from pipeline.cube.items import DEM_COLLECTION

    try:
        cat = catalog.open_catalog(catalog_source)
        items = cat.search(DEM_COLLECTION, bbox, DEM_WINDOW[0], DEM_WINDOW[1])
        items = catalog.sign_items(items, getattr(cat, "signer", None))
    except UserError:
        return None
    hrefs = [a.get_absolute_href() or a.href for it in items for k, a in it.assets.items() if k == "data"]
    return dem_overview_probe(hrefs) if hrefs else None


def _bounds(area: Any) -> BBox:
    w, s, e, n = area.bounds
    return (float(w), float(s), float(e), float(n))


def _tiles(area: Any, opts: PlanOptions, catalog_source: str | None) -> list[AreaTile]:
    tiles = split_tiles(area, opts.tile_deg)
    probe = dem_probe(catalog_source, _bounds(area)) if tiles else None
    return mark_flat(tiles, probe, opts.flat_deg)


def _write_area(path: Path, area: Any, tiles: list[AreaTile], props: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(area_geojson(area, tiles, props)))


def _find_shakemap(rec: EventRecord, log: Logger | LoggerAdapter[Any]) -> tuple[ShakeMapRef | None, str]:
    if not rec.detail:
        return None, "the feed gave no detail document"
    try:
        ref = shakemap_ref(read_detail(rec.detail), rec.detail)
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
) -> list[AreaTile]:
    """(Re)plan ``rec``'s area in place; return the tiles added by this plan (to sweep).

    Returns an empty list when nothing changed (the ShakeMap version was already planned from).
    """
    edir = event_dir(out_dir, rec.id)
    ref, why = _find_shakemap(rec, log) if opts.use_shakemap else (None, "ShakeMaps not used")
    if ref is not None and ref.key not in rec.shakemaps_done:
        try:
            grid_path = edir / "shakemap" / f"{ref.source}-v{ref.version}-grid.xml"
            grid_path.parent.mkdir(parents=True, exist_ok=True)
            grid_path.write_bytes(read_bytes(ref.grid_url, "ShakeMap grid ", max_bytes=MAX_GRID_BYTES))
            grid = parse_grid(grid_path)
        except UserError as exc:
            why = f"ShakeMap {ref.key} unreadable: {exc}"[:300]
            log.warning("event %s: %s", rec.id, why)
        else:
            area = shakemap_area(grid, pga_g=opts.pga_g, mmi=opts.mmi)
            rule = opts.rule
            tiles = _tiles(area, opts, catalog_source)
            before = plan_tiles(rec)
            added = added_tiles(before if rec.area_source == "shakemap" else [], tiles)
            rec.shakemaps_done.append(ref.key)
            rec.shakemap = ShakeMapPlan(
                **asdict(ref),
                layout=grid.layout,
                grid=str(grid_path.relative_to(edir)),
                rule=rule,
                planned=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            )
            rec.area_source, rec.area_note = (
                "shakemap",
                f"ShakeMap {ref.source} v{ref.version}: {rule}, on land",
            )
            rec.tiles = list(tiles)
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
                    "land_km2": round(geodesic_km2(area), 2),
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
    area = keefer_area(rec.lon, rec.lat, radius)
    tiles = _tiles(area, opts, catalog_source)
    rec.area_source, rec.area_note = "keefer", f"Keefer disc of {radius:.1f} km on land ({why})"
    rec.tiles = list(tiles)
    _write_area(
        edir / "area.geojson",
        area,
        tiles,
        {
            "event_id": rec.id,
            "source": "keefer",
            "radius_km": round(radius, 2),
            "note": why,
            "land_km2": round(geodesic_km2(area), 2),
        },
    )
    log.info("event %s: %s: %d tile(s)", rec.id, rec.area_note, len(tiles))
    return [t for t in tiles if t.skip is None]


def _write_contours(path: Path, grid: ShakeGrid) -> None:
    feats = [
        {
            "type": "Feature",
            "geometry": mapping(geom),
            "properties": {"pga_g": level, "pga": level, "label": area_rule(level)},
        }
        for level, geom in pga_contours(grid)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def plan_tiles(rec: EventRecord) -> list[AreaTile]:
    """The current plan's tiles."""
    return list(rec.tiles)


def post_event_window(
    event_time: dt.datetime, now: dt.datetime, window_days: int
) -> tuple[dt.date, dt.date] | None:
    """The day after the event to ``min(today, that day + window_days - 1)``; None if still empty."""
    start = event_time.astimezone(dt.UTC).date() + dt.timedelta(days=1)
    end = min(now.astimezone(dt.UTC).date(), start + dt.timedelta(days=window_days - 1))
    return (start, end) if end >= start else None


def choose_tiles(
    rec: EventRecord, tiles: list[AreaTile], added: list[AreaTile], scenes: dict[str, BBox]
) -> list[AreaTile]:
    """Tiles to sweep in the next version.

    For the first version, every tile some scene covers; later, the added tiles (the area grew)
    that some scene covers, plus every tile that is not fully covered yet (:data:`TILE_FULL`)
    and that a *new* scene (not used by any version) overlaps.
    """

    def seen_by(t: AreaTile, ids: set[str]) -> bool:
        return any(box(*scenes[i]).intersects(box(*t.bbox)) for i in ids)

    if not rec.versions and not rec.failed_versions:
        return [t for t in tiles if seen_by(t, set(scenes))]
    if not rec.versions:  # only failed tries so far: new scenes give a new first version
        new = set(scenes) - rec.used_scenes()
        return [t for t in tiles if seen_by(t, new)]
    new = set(scenes) - rec.used_scenes()
    cov = rec.versions[-1].tile_coverage
    added_ids = {t.id for t in added}
    return [
        t
        for t in tiles
        if (t.id in added_ids and seen_by(t, set(scenes)))
        or (cov.get(t.id, 0.0) < TILE_FULL and seen_by(t, new))
    ]
