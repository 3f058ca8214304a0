"""Flow ``regional-sweep``: search, sweep and export the products of one event, once.

Outputs of event ``E`` under ``out_dir``: the result store ``E.zarr``, the products in ``E/``
(:data:`pipeline.products.export.FILE_NAMES`) and the flow's result as ``E.json``.

Idempotent per event id:

* store complete and products present: nothing is computed; the recorded result is returned;
* store complete, products missing (or ``export`` newly asked for): only the export runs;
* store partial (``in_progress``): the sweep resumes it (same parameters -> same fingerprint;
  other parameters make the sweep refuse the store, by design);
* no store: a full run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pystac
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.io_retry import backoff, retry_on_io
from pipeline import catalog, store
from pipeline.cluster import ClusterSpec
from pipeline.errors import UserError
from pipeline.event.config import DEFAULT_RETRY_DELAY_S, safe_name
from pipeline.products.export import export_products, products_complete
from pipeline.store.atomic import write_atomic
from pipeline.sweep import DEFAULT_BLOCK, S2_COLLECTION, Scenes, SweepConfig, run_sweep
from pipeline.sweep.run import search_scenes as sweep_search


class NoImageryError(UserError):
    """No post-event scene matches the area and window."""


def event_paths(out_dir: str | os.PathLike[str], event_id: str) -> dict[str, Path]:
    """Where an event's outputs live: ``store``, ``products`` (a directory), ``result`` (JSON).

    Raises:
        UserError: If the event id is not a safe file name.
    """
    safe_name(event_id, "event id")
    out = Path(out_dir)
    return {"store": out / f"{event_id}.zarr", "products": out / event_id, "result": out / f"{event_id}.json"}


def products_present(products_dir: Path) -> bool:
    """Whether ``products_dir`` holds a complete export (its completion record, written last)."""
    return products_complete(products_dir)


def store_status(path: Path) -> str | None:
    """``complete``, ``in_progress`` or None (no landslide store at ``path``)."""
    attrs = store.read_attrs(path) if path.exists() else None
    return None if attrs is None else attrs.get(store.STATUS)


@task(
    retries=3,
    retry_delay_seconds=backoff(DEFAULT_RETRY_DELAY_S),
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def search_scenes(
    catalog_source: str | None, bbox: list[float], start: str, end: str, max_cloud: float | None
) -> list[str]:
    """Ids of the post-event Sentinel-2 L2A scenes over ``bbox`` (retried on catalog I/O errors)."""
    cat = catalog.open_catalog(catalog_source)
    items = cat.search(
        S2_COLLECTION, tuple(bbox), dt.date.fromisoformat(start), dt.date.fromisoformat(end), max_cloud
    )
    return [it.id for it in items]


@task(
    retries=3,
    retry_delay_seconds=backoff(DEFAULT_RETRY_DELAY_S),
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def search_items(config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The sweep's one search (retried on catalog I/O errors); the items are passed to the sweep."""
    cfg = _config(config)
    found = sweep_search(cfg, catalog.open_catalog(cfg.catalog))
    return {"s2": [it.to_dict() for it in found.s2], "dem": [it.to_dict() for it in found.dem]}


@task(cache_policy=NO_CACHE)
def sweep_task(
    config: dict[str, Any], items: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """Run (or resume) the sweep on the items already found and return its summary as a dict."""
    scenes = None
    if items is not None:
        s2, dem = ([pystac.Item.from_dict(d) for d in items[k]] for k in ("s2", "dem"))
        scenes = Scenes(tuple(s2), tuple(dem))
    return asdict(run_sweep(_config(config), scenes=scenes))


def _config(config: dict[str, Any]) -> SweepConfig:
    return SweepConfig(
        bbox=tuple(config["bbox"]),
        start=dt.date.fromisoformat(config["start"]),
        end=dt.date.fromisoformat(config["end"]),
        out=Path(config["out"]),
        catalog=config["catalog"],
        checkpoint=Path(config["checkpoint"]) if config["checkpoint"] else None,
        block=config["block"],
        max_cloud=config["max_cloud"],
        event_id=config["event_id"],
        cluster=ClusterSpec(scheduler=config["scheduler"], n_workers=config["workers"]),
        progress=False,
    )


@task(cache_policy=NO_CACHE)
def export_task(store_path: str, products_dir: str) -> dict[str, str]:
    """Write every product of the finished store into ``products_dir``."""
    return {k: str(v) for k, v in export_products(store_path, products_dir).items()}


def _summary_from_store(path: Path) -> dict[str, Any]:
    """The headline numbers a complete store records (when no result file survives)."""
    attrs = store.read_attrs(path) or {}
    keys = (
        "area_km2",
        "valid_fraction",
        "landslide_km2",
        "threshold",
        "start",
        "end",
        "bbox",
        "completed_at",
    )
    return {"out": str(path), **{k: attrs.get(f"landslide:{k}") for k in keys}}


def _write_result(path: Path, result: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(result, indent=2, default=str))


@flow(name="regional-sweep", log_prints=True)
def regional_sweep(
    event_id: str,
    bbox: list[float],
    start: str,
    end: str,
    out_dir: str,
    catalog: str | None = None,
    checkpoint: str | None = None,
    block: int = DEFAULT_BLOCK,
    export: bool = True,
    max_cloud: float | None = 80.0,
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Sweep one event's area and export its products, doing only what is not done yet.

    Args:
        event_id: Event identifier; names the outputs (``out_dir/<event_id>.zarr`` ...).
        bbox: WGS84 ``[west, south, east, north]``.
        start: First day of the post-event window (ISO date).
        end: Last day of the window, inclusive (ISO date).
        out_dir: Directory of the outputs.
        catalog: STAC API URL or local catalog file; None for Planetary Computer.
        checkpoint: Model checkpoint; None for the shipped one.
        block: Sweep block size in pixels (a multiple of 512).
        export: Also write the products.
        max_cloud: Maximum scene cloud cover (%) for the sweep's composite.
        scheduler: Address of an existing Dask scheduler; None starts a local cluster.
        workers: Local Dask workers (None: the sweep's default).

    Returns:
        ``event_id``, ``action`` (``swept``, ``exported`` or ``nothing_to_do``), ``store``,
        ``summary`` (the sweep summary) and ``products`` (product key -> path; empty without
        export).
    """
    log = get_run_logger()
    paths = event_paths(out_dir, event_id)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    status = store_status(paths["store"])
    done_products = products_present(paths["products"]) or not export
    if status == "complete" and done_products and paths["result"].is_file():
        log.info("event %s is already complete in %s: nothing to do", event_id, paths["store"])
        return {**json.loads(paths["result"].read_text()), "action": "nothing_to_do"}

    if status == "complete":
        summary = (
            json.loads(paths["result"].read_text())["summary"] if paths["result"].is_file()
            else _summary_from_store(paths["store"])
        )  # fmt: skip
        action = "exported"
    else:
        config = {
            "bbox": list(bbox), "start": start, "end": end, "out": str(paths["store"]), "catalog": catalog,
            "checkpoint": checkpoint, "block": block, "max_cloud": max_cloud, "event_id": event_id,
            "scheduler": scheduler, "workers": workers,
        }  # fmt: skip
        items = search_items(config)
        if not items["s2"]:
            raise NoImageryError(
                f"event {event_id}: no {S2_COLLECTION} scenes over {list(bbox)} between {start} and {end}"
            )
        log.info(
            "event %s: %d scene(s); %s the sweep",
            event_id,
            len(items["s2"]),
            "resuming" if status else "starting",
        )
        summary = sweep_task(config, items)
        action = "swept"
    products = export_task(str(paths["store"]), str(paths["products"])) if export else {}
    result = {
        "event_id": event_id, "action": action, "store": str(paths["store"]),
        "summary": summary, "products": products,
    }  # fmt: skip
    _write_result(paths["result"], result)
    log.info("event %s: %s; %.4f km2 of landslides", event_id, action, summary.get("landslide_km2") or 0.0)
    return result
