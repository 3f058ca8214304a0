"""Maps that improve as clear imagery arrives: an earthquake's map, version after version.

Each poll calls :func:`advance_quake` on every active earthquake:

1. close it when it is older than ``close_days`` (or fail it when it never got imagery within
   ``give_up_days``);
2. (re)plan its area (:func:`flows.event_plan.plan_event`): a new ShakeMap version that grows the
   area yields the tiles it added;
3. search clear post-event scenes (cloud <= ``max_cloud``) from the day after the event to today;
4. decide what to sweep: for the first version, every tile some scene covers; later, the added
   tiles plus every tile that is not fully covered yet and that a *new* scene (not used by any
   version) overlaps. Nothing to sweep: nothing is written (a repeated poll does nothing);
5. write the next version ``OUT/<event>/v<n>/``: the chosen tiles are swept into new stores
   ``OUT/<event>/tiles/<tile>-v<n>.zarr`` (each a complete, resumable store, its products in
   ``tiles/<tile>-v<n>/``; other tiles keep their earlier stores), the version's
   ``landslides.geojson``, ``summary.json`` (:mod:`flows.event_summary`, also a Prefect
   artifact), ``item.json``, the web map when :mod:`pipeline.products.webmap` is installed, and
   the event's STAC Collection
   ``OUT/<event>/collection.json`` listing every version, the newest as ``current``.

The version being written is recorded in the events file before its first sweep (``building``),
so a crash is resumed by the next poll with the same tiles and window (a version that fails
``MAX_ATTEMPTS`` times is given up; the event keeps its earlier versions). An event is closed when
its coverage reaches ``close_coverage``. A per-event lock (:class:`flows.event_state.event_lock`)
keeps two sweeps of one event apart.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from shapely.geometry import box, shape

from flows import event_summary, version_outputs
from flows.event_plan import PlanOptions, event_dir, plan_event, plan_tiles
from flows.event_state import EventBusyError, EventRecord, EventState, event_lock, utc_iso
from flows.io_retry import backoff, retry_on_io
from flows.pending_events import WatchOptions, post_event_window
from pipeline import catalog
from pipeline import event_area as ea
from pipeline.store.atomic import write_atomic

S2_COLLECTION = "sentinel-2-l2a"
#: A tile with at least this share of clear data is complete (no re-sweep for new scenes).
TILE_FULL = 0.995
#: A version that failed this many times is given up (the event keeps its earlier versions).
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class VersionOptions:
    """When maps are rewritten and events closed.

    Attributes:
        close_coverage: Close an event once its coverage reaches this share.
        close_days: Close an event this many days after it (whatever its coverage).
        plan: How areas are planned.
        ndvi_pre_days: Write NDVI change evidence with a pre-event window of this many days
            (:mod:`flows.change_evidence`); None for none.
    """

    close_coverage: float = 0.95
    close_days: float = 45.0
    plan: PlanOptions = field(default_factory=PlanOptions)
    ndvi_pre_days: int | None = None


def _save(state: EventState, rec: EventRecord, note: str) -> None:
    rec.note, rec.updated = note, utc_iso(dt.datetime.now(dt.UTC))
    state.save()


@task(retries=3, retry_delay_seconds=backoff(10.0), retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def search_footprints(
    catalog_source: str | None, bbox: ea.BBox, start: dt.date, end: dt.date, max_cloud: float
) -> dict[str, ea.BBox]:
    """Clear post-event Sentinel-2 scenes over ``bbox``: id -> WGS84 bbox of the item (retried on I/O)."""
    items = catalog.open_catalog(catalog_source).search(S2_COLLECTION, bbox, start, end, max_cloud)
    out: dict[str, ea.BBox] = {}
    for it in items:
        w, s, e, n = shape(it.geometry).bounds if it.geometry else (it.bbox or bbox)
        out[it.id] = (float(w), float(s), float(e), float(n))
    return out


def advance_quake(
    state: EventState,
    rec: EventRecord,
    now: dt.datetime,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
) -> None:
    """One poll of one earthquake (see the module docstring); the record is updated in place."""
    if rec.status == "sweeping" and rec.building:
        log.info("event %s: resuming version %d", rec.id, rec.building["n"])
        _write_version(state, rec, opts, vopts, log)
        return
    event_time = dt.datetime.fromisoformat(rec.event_time)
    age_days = (now - event_time).total_seconds() / 86400
    if rec.versions and age_days > vopts.close_days:
        rec.status = "closed"
        _save(
            state,
            rec,
            f"closed: {age_days:.0f} days after the event (coverage {rec.versions[-1]['coverage']:.1%})",
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
    search = search_footprints.with_options(retry_delay_seconds=backoff(opts.retry_delay_s))
    scenes = search(opts.catalog, bbox, window[0], window[1], opts.max_cloud)
    rec.checks, rec.last_checked, rec.scenes = rec.checks + 1, utc_iso(now), sorted(scenes)
    todo = _choose(rec, tiles, added, scenes)
    if not todo:
        if not rec.versions and age_days > opts.give_up_days:
            rec.status = "failed"
            _save(
                state,
                rec,
                f"no clear scenes (cloud <= {opts.max_cloud:g}%) within {opts.give_up_days:g} days",
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
    rec.building = {
        "n": n,
        "window": [window[0].isoformat(), window[1].isoformat()],
        "tiles": [t.id for t in todo],
        "scenes": sorted(scenes),
    }
    _save(state, rec, f"writing version {n}: {len(todo)} tile(s)")
    log.info("event %s: %s", rec.id, rec.note)
    _write_version(state, rec, opts, vopts, log)


def _choose(
    rec: EventRecord, tiles: list[ea.AreaTile], added: list[ea.AreaTile], scenes: dict[str, ea.BBox]
) -> list[ea.AreaTile]:
    """Tiles to sweep in the next version (see the module docstring)."""

    def seen_by(t: ea.AreaTile, ids: set[str]) -> bool:
        return any(box(*scenes[i]).intersects(box(*t.bbox)) for i in ids)

    if not rec.versions:
        return [t for t in tiles if seen_by(t, set(scenes))]
    used = {s for v in rec.versions for s in v["scenes"]}
    new = set(scenes) - used
    cov = rec.versions[-1]["tile_coverage"]
    added_ids = {t.id for t in added}
    return [
        t
        for t in tiles
        if (t.id in added_ids and seen_by(t, set(scenes)))
        or (cov.get(t.id, 0.0) < TILE_FULL and seen_by(t, new))
    ]


def _write_version(
    state: EventState,
    rec: EventRecord,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
) -> None:
    b = rec.building
    assert b is not None
    edir = event_dir(opts.out_dir, rec.id)
    try:
        with event_lock(opts.out_dir, rec.id):
            stores = _sweep_tiles(rec, b, edir, opts, log)
            version = _finish_version(rec, b, stores, edir, opts, vopts, log)
    except Exception as exc:  # recorded; the next poll resumes the same version
        b["attempts"] = b.get("attempts", 0) + 1
        if b["attempts"] >= MAX_ATTEMPTS and not isinstance(exc, EventBusyError):
            rec.status, rec.building = ("watching" if rec.versions else "failed"), None
        why = f"{type(exc).__name__}: {exc}"
        _save(state, rec, f"version {b['n']} failed (attempt {b['attempts']}): {why}"[:500])
        log.error("event %s: %s", rec.id, rec.note)
        return
    rec.versions.append(version)
    rec.building = None
    cov = version["coverage"]
    rec.status = "closed" if cov >= vopts.close_coverage else "watching"
    rec.result = {"version": version["n"], "summary": version["summary"], "coverage": cov}
    _save(
        state,
        rec,
        f"version {version['n']} written, coverage {cov:.1%}"
        + (" (closed)" if rec.status == "closed" else ""),
    )
    log.info("event %s: %s", rec.id, rec.note)


def _sweep_tiles(
    rec: EventRecord, b: dict[str, Any], edir: Path, opts: WatchOptions, log: Logger | LoggerAdapter[Any]
) -> dict[str, str]:
    """Sweep (or resume) the version's tiles; return tile id -> store path relative to ``edir``."""
    from pipeline import store
    from pipeline.cluster import ClusterSpec, dask_client
    from pipeline.products.export import export_products, products_complete
    from pipeline.sweep import SweepConfig, run_sweep

    by_id = {t.id: t for t in plan_tiles(rec)}
    stores = dict(rec.versions[-1]["stores"]) if rec.versions else {}
    spec = ClusterSpec(scheduler=opts.scheduler, n_workers=opts.workers)
    with dask_client(spec) as (client, _):
        for tid in b["tiles"]:
            rel = f"tiles/{tid}-v{b['n']}.zarr"
            path = edir / rel
            if not store.is_complete(path):
                cfg = SweepConfig(
                    bbox=by_id[tid].bbox,
                    start=dt.date.fromisoformat(b["window"][0]),
                    end=dt.date.fromisoformat(b["window"][1]),
                    out=path,
                    catalog=opts.catalog,
                    checkpoint=Path(opts.checkpoint) if opts.checkpoint else None,
                    block=opts.block,
                    max_cloud=opts.max_cloud,
                    event_id=f"{rec.id}-{tid}",
                    cluster=spec,
                    progress=False,
                )
                s = run_sweep(cfg, client=client)
                log.info(
                    "event %s: tile %s swept: %.2f km2, %.1f%% valid",
                    rec.id,
                    tid,
                    s.area_km2,
                    100 * s.valid_fraction,
                )
            stores[tid] = rel
            products = path.with_suffix("")
            if opts.export and not products_complete(products):
                export_products(path, products)  # COG, polygons, pyramid, quicklook, item of the tile
    return stores


def tile_coverage(store_path: Path, part: Any) -> float:
    """Share of ``part`` (WGS84 geometry) with clear data in a store's ``valid``."""
    import numpy as np
    import shapely
    from pyproj import Transformer
    from rasterio.features import geometry_mask

    from pipeline.store import open_result

    ds = open_result(store_path)
    to_crs = Transformer.from_crs("EPSG:4326", ds.rio.crs, always_xy=True)
    geom = shapely.transform(part, lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])))
    inside = geometry_mask(
        [geom], out_shape=(ds.sizes["y"], ds.sizes["x"]), transform=ds.rio.transform(), invert=True
    )
    if not inside.any():
        return 0.0
    valid = np.asarray(ds["valid"].values, dtype=bool)
    return float(valid[inside].mean())


def _tile_polygons(
    rec: EventRecord, b: dict[str, Any], tid: str, path: Path, opts: WatchOptions, vopts: VersionOptions
) -> Any:
    """One tile's landslide polygons (WGS84), with NDVI change evidence when it is asked for."""
    from flows.change_evidence import annotate, evidence_path, write_evidence
    from pipeline.products.polygons import landslide_polygons
    from pipeline.store import open_result

    gdf = landslide_polygons(open_result(path)).to_crs(4326)
    if vopts.ndvi_pre_days is None:
        return gdf
    evidence = evidence_path(path)
    if tid in b["tiles"] and not evidence.exists():
        window = (dt.date.fromisoformat(b["window"][0]), dt.date.fromisoformat(b["window"][1]))
        event_time = dt.datetime.fromisoformat(rec.event_time)
        write_evidence(path, opts.catalog, event_time, window, opts.max_cloud, vopts.ndvi_pre_days)
    return annotate(gdf, evidence) if evidence.exists() else gdf


def _finish_version(
    rec: EventRecord,
    b: dict[str, Any],
    stores: dict[str, str],
    edir: Path,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
) -> dict[str, Any]:
    import geopandas as gpd
    import pandas as pd

    from pipeline.store import read_attrs

    n = b["n"]
    vdir = edir / f"v{n}"
    vdir.mkdir(parents=True, exist_ok=True)
    area = ea.area_from_geojson(json.loads((edir / "area.geojson").read_text()))
    tiles = [t for t in plan_tiles(rec) if t.skip is None]
    tile_cov: dict[str, float] = {}
    for t in tiles:
        rel = stores.get(t.id)
        tile_cov[t.id] = tile_coverage(edir / rel, area.intersection(box(*t.bbox))) if rel else 0.0
    total = sum(t.area_km2 for t in tiles)
    coverage = sum(tile_cov[t.id] * t.area_km2 for t in tiles) / total if total else 0.0
    frames = [_tile_polygons(rec, b, tid, edir / rel, opts, vopts) for tid, rel in stores.items()]
    polys = (
        pd.concat(frames, ignore_index=True)
        if frames
        else gpd.GeoDataFrame({"area_m2": []}, geometry=[], crs=4326)
    )
    polys = gpd.GeoDataFrame(polys, geometry="geometry", crs=4326)
    if len(polys):
        polys = polys[polys.geometry.representative_point().within(area.buffer(1e-6))].reset_index(drop=True)
    polys_path = vdir / "landslides.geojson"
    polys.to_file(polys_path, driver="GeoJSON", engine="pyogrio") if len(polys) else polys_path.write_text(
        json.dumps({"type": "FeatureCollection", "features": []})
    )
    grid = (
        ea.parse_grid(edir / rec.shakemap["grid"]) if rec.shakemap and rec.area_source == "shakemap" else None
    )
    attrs = read_attrs(edir / next(iter(stores.values()))) or {} if stores else {}
    used = sorted(
        {
            s["id"]
            for rel in stores.values()
            for s in (read_attrs(edir / rel) or {}).get("landslide:scenes", [])
            if s.get("collection") == "sentinel-2-l2a"
        }
    )
    obs = event_summary.observed(polys, grid)
    created = utc_iso(dt.datetime.now(dt.UTC))
    summary = {
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
            "window": b["window"],
            "scenes": used,
        },
        "area": {
            "source": rec.area_source,
            "note": rec.area_note,
            "land_km2": round(ea.geodesic_km2(area), 3),
            "shakemap": {k: rec.shakemap.get(k) for k in ("version", "source", "layout", "rule")}
            if rec.shakemap
            else None,
            "tiles_swept": len(stores),
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
        "alert": event_summary.alert(obs["landslide_km2"], coverage),
        "model": event_summary.model_info(attrs, opts.checkpoint),
        "stores": {k: f"../{v}" for k, v in stores.items()},
    }
    write_atomic(vdir / "summary.json", json.dumps(summary, indent=2, default=str))
    artifact_id = version_outputs.artifact(rec.id, summary)
    version_outputs.web_map(vdir, edir, stores, rec, n, log)
    version = {
        "n": n,
        "created": created,
        "window": b["window"],
        "scenes": used,
        "swept_tiles": list(b["tiles"]),
        "stores": stores,
        "tile_coverage": tile_cov,
        "coverage": round(coverage, 4),
        "summary": f"v{n}/summary.json",
        "artifact": artifact_id,
        "shakemap_version": rec.shakemap.get("version") if rec.shakemap else None,
    }
    version_outputs.write_item(vdir, rec, version, area)
    version_outputs.write_collection(edir, rec, [*rec.versions, version], area)
    return version
