"""Maps that improve as clear imagery arrives: an earthquake's map, version after version.

Each poll calls :func:`advance_quake` on every active earthquake:

1. close it when it is older than ``close_days`` (or fail it when it never got imagery within
   ``give_up_days``);
2. (re)plan its area (:func:`pipeline.event.plan.plan_event`): a new ShakeMap version that grows the
   area yields the tiles it added;
3. search clear post-event scenes (cloud <= ``max_cloud``) from the day after the event to today;
4. decide what to sweep: for the first version, every tile some scene covers; later, the added
   tiles plus every tile that is not fully covered yet and that a *new* scene (not used by any
   version) overlaps. Nothing to sweep: nothing is written (a repeated poll does nothing);
5. write the next version: the chosen tiles' regions of the event grid
   (:mod:`pipeline.event.mosaic`) are swept into one mosaic of the whole event,
   ``OUT/<event>/mosaic.zarr/v<n>`` (:mod:`pipeline.event.versions_store`: one ``run_sweep``
   restricted to those regions; every other region's chunks are hard links to the previous
   version's files, so storage grows with what changed; published by one rename once
   complete), and ``OUT/<event>/v<n>/``: the polygons of the whole mosaic
   ``landslides.geojson`` (a landslide is one polygon wherever it lies), one COG
   ``probability.tif``, the outline of the swept regions ``area.geojson``, ``summary.json``
   (:mod:`pipeline.event.summary`, also a Prefect artifact), ``item.json``, the web map of the
   whole event when :mod:`pipeline.products.webmap` is installed, and the event's STAC
   Collection ``OUT/<event>/collection.json`` listing every version, the newest as ``current``.

The version being written is recorded in the events file before its first sweep (``building``),
so a crash is resumed by the next poll with the same regions and window (the hidden build
directory resumes) (a version that fails
``MAX_ATTEMPTS`` times is given up; the event keeps its earlier versions). An event is closed when
its coverage reaches ``close_coverage``. A per-event lock (:class:`pipeline.event.state.event_lock`)
keeps two sweeps of one event apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from pipeline import catalog
from pipeline.event import outputs, summary
from pipeline.event import versions_store as vs
from pipeline.event.area import geodesic_km2
from pipeline.event.config import BBox, VersionOptions, WatchOptions
from pipeline.event.mosaic import EventGrid, event_grid, grown, regions_for, remap, tile_regions
from pipeline.event.plan import choose_tiles, event_dir, plan_event, plan_tiles, post_event_window
from pipeline.event.shakemap import parse_grid
from pipeline.event.state import (
    Building,
    EventRecord,
    EventState,
    Version,
    event_lock,
    record_failure,
    utc_iso,
    version_errors,
)
from pipeline.event.tiles import area_from_geojson
from pipeline.store.atomic import write_atomic

#: ``search(catalog, bbox, start, end, max_cloud) -> {scene id: WGS84 bbox}`` (the flow retries it).
Search = Callable[[str | None, BBox, dt.date, dt.date, float], dict[str, BBox]]
#: ``publish(event id, summary) -> artifact id or None`` (the flow logs a Prefect artifact).
Publish = Callable[[str, dict[str, Any]], str | None]


def _save(state: EventState, rec: EventRecord, note: str) -> None:
    rec.note, rec.updated = note, utc_iso(dt.datetime.now(dt.UTC))
    state.save()


def search_footprints(
    catalog_source: str | None, bbox: BBox, start: dt.date, end: dt.date, max_cloud: float
) -> dict[str, BBox]:
    """Clear post-event Sentinel-2 scenes over ``bbox``: id -> WGS84 bbox of the item."""
    from shapely.geometry import shape

    from pipeline.cube.items import S2_COLLECTION

    items = catalog.open_catalog(catalog_source).search(S2_COLLECTION, bbox, start, end, max_cloud)
    out: dict[str, BBox] = {}
    for it in items:
        w, s, e, n = shape(it.geometry).bounds if it.geometry else (it.bbox or bbox)
        out[it.id] = (float(w), float(s), float(e), float(n))
    return out


def _no_artifact(event_id: str, summary: dict[str, Any]) -> str | None:
    return None


def advance_quake(
    state: EventState,
    rec: EventRecord,
    now: dt.datetime,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
    *,
    search: Search = search_footprints,
    publish: Publish = _no_artifact,
) -> None:
    """One poll of one earthquake (see the module docstring); the record is updated in place.

    Args:
        state: The open events file (saved after every change).
        rec: The event's record.
        now: The poll's time.
        opts: How events are checked and swept.
        vopts: When maps are rewritten and events closed.
        log: Where progress goes.
        search: Finds clear scenes (the flow passes a retried task).
        publish: Publishes a version's summary (the flow logs a Prefect artifact).
    """
    if rec.status == "sweeping" and rec.building:
        log.info("event %s: resuming version %d", rec.id, rec.building.n)
        _write_version(state, rec, now, opts, vopts, log, publish)
        return
    event_time = dt.datetime.fromisoformat(rec.event_time)
    age_days = (now - event_time).total_seconds() / 86400
    if rec.versions and age_days > vopts.close_days:
        rec.status = "closed"
        _save(
            state,
            rec,
            f"closed: {age_days:.0f} days after the event (coverage {rec.versions[-1].coverage:.1%})",
        )
        return
    added = plan_event(rec, opts.out_dir, vopts.plan, opts.catalog, log)
    state.save()
    window = post_event_window(event_time, now, opts.window_days)
    if age_days < opts.wait_days or window is None:
        _save(state, rec, f"waiting: {age_days:.1f} of {max(opts.wait_days, 1.0):g} days after the event")
        return
    tiles = [t for t in plan_tiles(rec) if t.skip is None]
    if not tiles:
        rec.status = "failed" if not rec.versions else rec.status
        _save(state, rec, "nothing to sweep: the planned area has no tile on steep enough land")
        return
    bbox = (
        min(t.bbox[0] for t in tiles),
        min(t.bbox[1] for t in tiles),
        max(t.bbox[2] for t in tiles),
        max(t.bbox[3] for t in tiles),
    )
    scenes = search(opts.catalog, bbox, window[0], window[1], opts.max_cloud)
    rec.checks, rec.last_checked, rec.scenes = rec.checks + 1, utc_iso(now), sorted(scenes)
    todo = choose_tiles(rec, tiles, added, scenes)
    if not todo:
        if not rec.versions and age_days > opts.give_up_days:
            rec.status = "failed"
            _save(
                state,
                rec,
                f"no clear scenes (cloud <= {opts.max_cloud:g}%) within {opts.give_up_days:g} days",
            )
        elif rec.failed_versions and not set(scenes) - rec.used_scenes():
            given_up = rec.failed_versions[-1]
            _save(
                state,
                rec,
                f"version {given_up.n} was given up; waiting for a new clear scene ({given_up.reason})",
            )
        elif not rec.versions:
            _save(state, rec, f"no clear scenes yet in {window[0]}..{window[1]} (check {rec.checks})")
        else:
            _save(
                state, rec, f"version {len(rec.versions)} is current; no new clear scene over uncovered tiles"
            )
        log.info("event %s: %s", rec.id, rec.note)
        return
    n = len(rec.versions) + 1
    rec.status = "sweeping"
    rec.building = Building(
        n=n,
        window=(window[0].isoformat(), window[1].isoformat()),
        tiles=tuple(t.id for t in todo),
        scenes=tuple(sorted(scenes)),
    )
    _save(state, rec, f"writing version {n}: {len(todo)} tile(s)")
    log.info("event %s: %s", rec.id, rec.note)
    _write_version(state, rec, now, opts, vopts, log, publish)


def _write_version(
    state: EventState,
    rec: EventRecord,
    now: dt.datetime,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
    publish: Publish,
) -> None:
    b = rec.building
    assert b is not None
    edir = event_dir(opts.out_dir, rec.id)
    try:
        with event_lock(opts.out_dir, rec.id):
            grid, regions = _sweep_version(rec, b, edir, opts, log)
            version = _finish_version(rec, b, grid, regions, edir, opts, vopts, log, publish)
    except version_errors() as exc:  # recorded; retried at the next poll, then given up
        _save(state, rec, record_failure(rec, exc, now))
        log.error("event %s: %s", rec.id, rec.note)
        return
    rec.versions.append(version)
    rec.building = None
    cov = version.coverage
    rec.status = "closed" if cov >= vopts.close_coverage else "watching"
    rec.result = {"version": version.n, "summary": version.summary, "coverage": cov}
    _save(
        state,
        rec,
        f"version {version.n} written, coverage {cov:.1%}" + (" (closed)" if rec.status == "closed" else ""),
    )
    log.info("event %s: %s", rec.id, rec.note)


def _grid(rec: EventRecord, opts: WatchOptions) -> EventGrid:
    """The event's grid: the epicentre's UTM zone over every planned tile, holding earlier grids."""
    from pipeline.sweep.config import check_block

    check_block(opts.block)  # the sweep's own rule, before the grid needs it
    tiles = [t.bbox for t in plan_tiles(rec) if t.skip is None]
    if rec.lon is not None and rec.lat is not None:
        centre = (rec.lon, rec.lat)
    else:  # no epicentre recorded: the middle of the tiles
        centre = (
            (min(t[0] for t in tiles) + max(t[2] for t in tiles)) / 2,
            (min(t[1] for t in tiles) + max(t[3] for t in tiles)) / 2,
        )
    grid = event_grid(tiles, centre, opts.block)
    prev = rec.versions[-1].grid if rec.versions else None
    if prev is not None and (prev.epsg, prev.region) != (grid.epsg, grid.region):
        prev = None  # another block size: the earlier version cannot be a base
    return grown(grid, prev)


def _sweep_version(
    rec: EventRecord, b: Building, edir: Path, opts: WatchOptions, log: Logger | LoggerAdapter[Any]
) -> tuple[EventGrid, tuple[int, ...]]:
    """Sweep (or resume) the version's regions into one mosaic store and publish it.

    One :func:`pipeline.sweep.run_sweep` over the event grid, restricted to the regions of the
    chosen tiles; every other region is hard-linked from the previous version (not copied).

    Returns:
        The grid and the regions computed.
    """
    from pipeline.cluster import ClusterSpec
    from pipeline.store import is_complete
    from pipeline.sweep import SweepConfig, run_sweep

    grid = _grid(rec, opts)
    owned = tile_regions(grid, {t.id: t.bbox for t in plan_tiles(rec) if t.skip is None})
    prev = rec.versions[-1] if rec.versions else None
    shares = prev is not None and prev.grid is not None and prev.grid.offset_ok(grid)
    base = vs.version_path(edir, prev.n) if prev is not None and shares else None
    # without a base on this lattice (an old layout, another block size) sweep every swept tile
    earlier = () if prev is None else tuple(t for t in (*prev.swept_tiles, *prev.tiles_swept) if t in owned)
    tids = b.tiles if base is not None else (*earlier, *b.tiles)
    regions = regions_for(owned, tids)
    if vs.published(edir, b.n):
        return grid, regions
    by_index = {r.index: r for r in grid.regions()}
    spec = ClusterSpec(scheduler=opts.scheduler, n_workers=opts.workers)
    cfg = SweepConfig(
        bbox=catalog.BBox(*grid.wgs84_bounds(by_index[i] for i in regions)),
        start=dt.date.fromisoformat(b.window[0]),
        end=dt.date.fromisoformat(b.window[1]),
        out=vs.building_path(edir, b.n, _build_key(b, regions, base)),
        catalog=opts.catalog,
        checkpoint=Path(opts.checkpoint) if opts.checkpoint else None,
        block=opts.block,
        region_blocks=1,
        max_cloud=opts.max_cloud,
        event_id=f"{rec.id}-v{b.n}",
        cluster=spec,
        progress=False,
        grid=grid.spec,
        only_regions=regions,
        base=base,
    )
    if not is_complete(cfg.out):  # a build killed after its sweep completed is only published
        s = run_sweep(cfg)
        log.info("event %s: version %d: %d region(s) swept, %.1f%% valid", rec.id, b.n, len(regions),
                 100 * s.valid_fraction)  # fmt: skip
    vs.publish(cfg.out, vs.version_path(edir, b.n))
    vs.remove_builds(edir, b.n)
    return grid, regions


def _build_key(b: Building, regions: tuple[int, ...], base: Path | None) -> str:
    """A short hash of what a version's build is (window, regions, base)."""
    import hashlib

    doc = json.dumps([list(b.window), list(regions), str(base) if base else None])
    return hashlib.sha256(doc.encode()).hexdigest()[:10]


def _version_polygons(
    rec: EventRecord, b: Building, path: Path, opts: WatchOptions, vopts: VersionOptions
) -> Any:
    """The version's landslide polygons from its whole mosaic (WGS84), with NDVI evidence if asked."""
    from pipeline.event.evidence import annotate, evidence_path, write_evidence

    gdf = vs.version_polygons(path)
    if vopts.ndvi_pre_days is None:
        return gdf
    evidence = evidence_path(path)
    if not evidence.exists():
        window = (dt.date.fromisoformat(b.window[0]), dt.date.fromisoformat(b.window[1]))
        event_time = dt.datetime.fromisoformat(rec.event_time)
        write_evidence(path, opts.catalog, event_time, window, opts.max_cloud, vopts.ndvi_pre_days)
    return annotate(gdf, evidence) if evidence.exists() else gdf


def _finish_version(
    rec: EventRecord,
    b: Building,
    egrid: EventGrid,
    regions: tuple[int, ...],
    edir: Path,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
    publish: Publish,
) -> Version:
    from shapely.geometry import box

    from pipeline.cube.items import S2_COLLECTION
    from pipeline.products.cog import write_cog
    from pipeline.store import atomic_output, open_result, read_attrs

    n = b.n
    vdir = edir / f"v{n}"
    vdir.mkdir(parents=True, exist_ok=True)
    path = vs.version_path(edir, n)
    area = area_from_geojson(json.loads((edir / "area.geojson").read_text()))
    tiles = [t for t in plan_tiles(rec) if t.skip is None]
    prev = rec.versions[-1] if rec.versions else None
    earlier = remap(prev.grid, egrid, prev.swept_regions) if prev is not None and prev.grid else ()
    swept = tuple(sorted({*earlier, *regions}))
    swept_tiles = tuple(sorted({*(prev.tiles_swept if prev else ()), *b.tiles}))
    outline = vs.swept_outline(egrid, swept)
    tile_cov = {t.id: vs.tile_coverage(path, area.intersection(box(*t.bbox))) for t in tiles}
    total = sum(t.area_km2 for t in tiles)
    coverage = sum(tile_cov[t.id] * t.area_km2 for t in tiles) / total if total else 0.0
    # every polygon of the mosaic: what the map draws is what is counted (the swept regions)
    polys = _version_polygons(rec, b, path, opts, vopts)
    polys_path = vdir / "landslides.geojson"
    polys.to_file(polys_path, driver="GeoJSON", engine="pyogrio") if len(polys) else polys_path.write_text(
        json.dumps({"type": "FeatureCollection", "features": []})
    )
    with atomic_output(vdir / "probability.tif") as tmp:
        write_cog(open_result(path), tmp)
    cost = vs.storage(
        path, [vs.version_path(edir, k) for k in range(1, n) if vs.version_path(edir, k).is_dir()]
    )
    grid = parse_grid(edir / rec.shakemap.grid) if rec.shakemap and rec.area_source == "shakemap" else None
    attrs = read_attrs(path) or {}
    used = sorted(
        {*(prev.scenes if prev else ())}
        | {s["id"] for s in attrs.get("landslide:scenes", []) if s.get("collection") == S2_COLLECTION}
    )
    obs = summary.observed(polys, grid)
    created = utc_iso(dt.datetime.now(dt.UTC))
    summary_doc = {
        "title": f"M{rec.magnitude or 0:g} {rec.place or rec.id}: landslides, version {n}",
        "event": {
            "id": rec.id,
            "magnitude": rec.magnitude,
            "time": rec.event_time,
            "place": rec.place,
            "lon": rec.lon,
            "lat": rec.lat,
        },
        "version": {
            "n": n,
            "created": created,
            "window": list(b.window),
            "scenes": used,
        },
        "area": {
            "source": rec.area_source,
            "note": rec.area_note,
            "land_km2": round(geodesic_km2(area), 3),
            "shakemap": {
                "version": rec.shakemap.version,
                "source": rec.shakemap.source,
                "layout": rec.shakemap.layout,
                "rule": rec.shakemap.rule,
            }
            if rec.shakemap
            else None,
            "swept_km2": round(geodesic_km2(outline), 3),
            "tiles_swept": len(swept_tiles),
            "tiles": len(tiles),
            "tiles_flat": sum(1 for t in plan_tiles(rec) if t.skip == "flat"),
        },
        "coverage": round(coverage, 4),
        "observed": obs,
        "change_evidence": (
            {"ndvi_pre_days": vopts.ndvi_pre_days, "polygon_fields": ["ndvi_pre", "ndvi_post", "ndvi_drop"]}
            if vopts.ndvi_pre_days is not None
            else None
        ),
        "alert": summary.alert(obs["landslide_km2"], coverage),
        "model": summary.model_info(attrs, opts.checkpoint),
        "store": f"../{path.relative_to(edir).as_posix()}",
        "cog": "probability.tif",
    }
    write_atomic(vdir / "summary.json", json.dumps(summary_doc, indent=2, default=str))
    artifact_id = publish(rec.id, summary_doc)
    outputs.web_map(vdir, edir, path, outline, rec, n, log)
    version = Version(
        n=n,
        created=created,
        window=b.window,
        scenes=tuple(used),
        swept_tiles=b.tiles,
        store=path.relative_to(edir).as_posix(),
        tile_coverage=tile_cov,
        coverage=round(coverage, 4),
        summary=f"v{n}/summary.json",
        artifact=artifact_id,
        shakemap_version=rec.shakemap.version if rec.shakemap else None,
        grid=egrid,
        regions=regions,
        swept_regions=swept,
        tiles_swept=swept_tiles,
        storage=dataclasses.asdict(cost),
    )
    outputs.write_item(vdir, rec, version, outline)
    outputs.write_collection(edir, rec, [*rec.versions, version], outline)
    return version
