"""Flow ``storm-sweep``: sweep a user-given area after a storm, once clear imagery exists.

The storm is one record in ``OUT/events.json`` (kind ``storm``), handled like an earthquake
(:mod:`flows.pending_events`): run the flow on a schedule (``flows/deploy.py``) or by hand until
it reports ``swept``; every run before that re-checks for clear scenes, runs after that do
nothing. ``wait_days`` holds the sweep back so that clear scenes can accumulate (monsoon cloud).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger

from flows.pending_events import advance, parse_now
from flows.regional_sweep import event_paths
from pipeline.event.config import (
    DEFAULT_EVENT_MAX_CLOUD,
    DEFAULT_RETRY_DELAY_S,
    DEFAULT_WINDOW_DAYS,
    WatchOptions,
)
from pipeline.event.state import EventRecord, EventState, utc_iso
from pipeline.geo import validate_bbox
from pipeline.sweep.config import DEFAULT_BLOCK


@flow(name="storm-sweep", log_prints=True)
def storm_sweep(
    event_id: str,
    bbox: list[float],
    event_date: str,
    out_dir: str,
    catalog: str | None = None,
    checkpoint: str | None = None,
    wait_days: float = 0.0,
    max_cloud: float = DEFAULT_EVENT_MAX_CLOUD,
    window_days: int = DEFAULT_WINDOW_DAYS,
    give_up_days: float = 45.0,
    block: int = DEFAULT_BLOCK,
    export: bool = True,
    now: str | None = None,
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S,
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Track a storm's area and sweep it once clear post-event imagery exists.

    Args:
        event_id: Your id for the storm (names the outputs), e.g. ``2023-08-emilia``.
        bbox: WGS84 ``[west, south, east, north]``.
        event_date: Last day of the storm (ISO date); imagery is searched from the day after.
        out_dir: Output directory (shared events file with the earthquake watch is fine).
        catalog: STAC API URL or local catalog file; None for Planetary Computer.
        checkpoint: Model checkpoint; None for the shipped one.
        wait_days: Minimum days after ``event_date`` before sweeping.
        max_cloud: Scene cloud cover (%) that counts as clear.
        window_days: Longest post-event window.
        give_up_days: Days without clear imagery after which the storm fails.
        block: Sweep block size (pixels).
        export: Write the products.
        now: Evaluation time (ISO 8601; default now), for replaying past events.
        retry_delay_s: First retry delay of the catalog searches.
        scheduler: Dask scheduler address; None starts a local cluster.
        workers: Local Dask workers.

    Returns:
        The storm's record from the events file (``status``, ``note``, ``window``, ``result``...).
    """
    log = get_run_logger()
    event_paths(out_dir, event_id)  # validates the id
    box = list(validate_bbox(bbox))
    day = dt.date.fromisoformat(event_date)
    opts = WatchOptions(
        out_dir=out_dir, catalog=catalog, checkpoint=checkpoint, max_cloud=max_cloud, wait_days=wait_days,
        window_days=window_days, give_up_days=give_up_days, block=block, export=export,
        retry_delay_s=retry_delay_s, scheduler=scheduler, workers=workers,
    )  # fmt: skip
    with EventState(out_dir) as state:
        if event_id not in state:
            seen = utc_iso(dt.datetime.now(dt.UTC))
            event_time = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)
            state.add(EventRecord(
                id=event_id, kind="storm", status="pending", bbox=box, event_time=utc_iso(event_time),
                first_seen=seen, updated=seen, place="storm",
            ))  # fmt: skip
            state.save()
        rec = state.events[event_id]
        if rec.bbox != box or rec.event_time[:10] != event_date:
            log.warning(
                "event %s is tracked with bbox %s and date %s; using those",
                event_id,
                rec.bbox,
                rec.event_time[:10],
            )
        if rec.status in ("pending", "sweeping"):
            advance(state, rec, parse_now(now), opts, log)
        else:
            log.info("event %s is %s: nothing to do (%s)", event_id, rec.status, rec.note)
        return {
            "id": rec.id,
            "status": rec.status,
            "note": rec.note,
            "window": rec.window,
            "result": rec.result,
        }
