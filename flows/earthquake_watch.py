"""Flow ``earthquake-watch``: poll the USGS feed, sweep large on-land earthquakes once.

Each poll (one flow run):

1. reads the feed (retried with exponential backoff on network errors, then fails clearly);
2. records every new earthquake with magnitude ``>= min_magnitude`` whose landslide disc
   (:mod:`pipeline.event.keefer`) touches land as ``pending`` in ``OUT/events.json``; ids already in
   the file, including ones listed twice in a feed, are never added again;
3. checks every pending event for clear post-event imagery and sweeps those that have some,
   one sweep per event (:mod:`flows.pending_events`).

Events stay in the file after they leave the feed (the 4.5_day feed keeps a day), so later polls
keep checking them for imagery. Command line (one poll; ``--help`` says how to run it offline
on local feed and detail files, :mod:`flows.watch_cli`)::

    python -m flows.earthquake_watch --feed URL|FILE --catalog URL|FILE --out DIR --once
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the command line: arguments and the feed checked before Prefect loads
    from flows.watch_cli import preflight

    preflight(sys.argv[1:])

import datetime as dt
import json
import logging
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.io_retry import backoff, retry_on_io
from flows.map_versions import advance_quake
from flows.pending_events import advance, parse_now
from flows.watch_cli import build_parser, error_line, feed_problem, prefect_defaults
from pipeline.errors import UserError
from pipeline.event.config import (
    DEFAULT_CLOSE_COVERAGE,
    DEFAULT_CLOSE_DAYS,
    DEFAULT_EVENT_MAX_CLOUD,
    DEFAULT_FLAT_DEG,
    DEFAULT_GIVE_UP_DAYS,
    DEFAULT_MAX_RADIUS_KM,
    DEFAULT_MIN_MAGNITUDE,
    DEFAULT_PGA_G,
    DEFAULT_RETRY_DELAY_S,
    DEFAULT_TILE_DEG,
    DEFAULT_WINDOW_DAYS,
    PlanOptions,
    VersionOptions,
    WatchOptions,
)
from pipeline.event.keefer import landslide_radius_km, sweep_bbox
from pipeline.event.state import EventRecord, EventState, utc_iso
from pipeline.event.usgs import DEFAULT_FEED_URL, Earthquake, parse_feed, read_feed
from pipeline.sweep.config import DEFAULT_BLOCK


@task(
    retries=3,
    retry_delay_seconds=backoff(DEFAULT_RETRY_DELAY_S),
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def fetch_feed(source: str) -> dict[str, Any]:
    """The feed document (retried on network errors only)."""
    return read_feed(source)


def track_new(
    state: EventState, quakes: list[Earthquake], min_magnitude: float, max_radius_km: float
) -> dict[str, list[str]]:
    """Add the new qualifying earthquakes to ``state`` as pending.

    Returns:
        Ids by outcome: ``new``, ``known`` (already tracked), ``below_threshold``, ``at_sea``.
    """
    out: dict[str, list[str]] = {"new": [], "known": [], "below_threshold": [], "at_sea": []}
    for q in quakes:
        if q.id in state:
            out["known"].append(q.id)
            continue
        if q.magnitude < min_magnitude:
            out["below_threshold"].append(q.id)
            continue
        radius = landslide_radius_km(q.magnitude, max_radius_km)
        bbox = sweep_bbox(q.lon, q.lat, radius)
        if bbox is None:
            out["at_sea"].append(q.id)
            continue
        seen = utc_iso(dt.datetime.now(dt.UTC))
        state.add(EventRecord(
            id=q.id, kind="earthquake", status="pending", bbox=list(bbox), event_time=utc_iso(q.time),
            first_seen=seen, updated=seen, magnitude=q.magnitude, place=q.place, lon=q.lon, lat=q.lat,
            detail=q.detail or None,
            note=f"M{q.magnitude:g}: disc of {radius:.1f} km around ({q.lon:.3f}, {q.lat:.3f})",
        ))  # fmt: skip
        out["new"].append(q.id)
    return out


@flow(name="earthquake-watch", log_prints=True)
def earthquake_watch(
    feed: str = DEFAULT_FEED_URL,
    out_dir: str = "out/earthquakes",
    catalog: str | None = None,
    checkpoint: str | None = None,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
    max_radius_km: float = DEFAULT_MAX_RADIUS_KM,
    max_cloud: float = DEFAULT_EVENT_MAX_CLOUD,
    wait_days: float = 0.0,
    window_days: int = DEFAULT_WINDOW_DAYS,
    give_up_days: float = DEFAULT_GIVE_UP_DAYS,
    block: int = DEFAULT_BLOCK,
    export: bool = True,
    now: str | None = None,
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S,
    scheduler: str | None = None,
    workers: int | None = None,
    use_shakemap: bool = True,
    pga_g: float = DEFAULT_PGA_G,
    mmi: float | None = None,
    tile_deg: float = DEFAULT_TILE_DEG,
    flat_deg: float = DEFAULT_FLAT_DEG,
    close_coverage: float = DEFAULT_CLOSE_COVERAGE,
    close_days: float = DEFAULT_CLOSE_DAYS,
    ndvi_pre_days: int | None = None,
) -> dict[str, Any]:
    """One poll: read the feed, track new events, check pending ones, sweep those with imagery.

    Args:
        feed: USGS GeoJSON summary feed URL or a local file in that format.
        out_dir: Directory of the events file and of every event's outputs.
        catalog: STAC API URL or local catalog file; None for Planetary Computer.
        checkpoint: Model checkpoint; None for the shipped one.
        min_magnitude: Smallest magnitude swept.
        max_radius_km: Cap on the sweep radius around the epicentre.
        max_cloud: Scene cloud cover (%) that counts as clear.
        wait_days: Minimum days after an event before it is swept.
        window_days: Longest post-event window.
        give_up_days: Days without clear imagery after which an event fails.
        block: Sweep block size (pixels).
        export: Write the products.
        now: Evaluation time (ISO 8601; default the current time), for replaying past events.
        retry_delay_s: First retry delay for the feed and catalog searches (doubles, 3 retries).
        scheduler: Dask scheduler address; None starts a local cluster per sweep.
        workers: Local Dask workers.
        use_shakemap: Plan from the event's ShakeMap when its detail document lists one.
        pga_g: PGA threshold of the ShakeMap area (g; USGS Ground Failure's 0.10).
        mmi: MMI threshold instead of PGA.
        tile_deg: Sweep tile side (degrees).
        flat_deg: Tiles whose steepest coarse DEM slope is below this are not swept.
        close_coverage: Close an event once this share of its area has clear data.
        close_days: Close an event this many days after it.
        ndvi_pre_days: Also write NDVI change evidence (pre-event window of this many days) and
            give each polygon ``ndvi_pre``/``ndvi_drop``; None for none.

    Returns:
        Ids by outcome of this poll (``new``, ``known``, ``below_threshold``, ``at_sea``) and by
        status in the events file afterwards (``pending``, ``sweeping``, ``watching``, ``swept``,
        ``closed``, ``failed``).
    """
    log = get_run_logger()
    t_now = parse_now(now)
    doc = fetch_feed.with_options(retry_delay_seconds=backoff(retry_delay_s))(feed)
    quakes = parse_feed(doc, feed)
    opts = WatchOptions(
        out_dir=out_dir, catalog=catalog, checkpoint=checkpoint, max_cloud=max_cloud, wait_days=wait_days,
        window_days=window_days, give_up_days=give_up_days, block=block, export=export,
        retry_delay_s=retry_delay_s, scheduler=scheduler, workers=workers,
    )  # fmt: skip
    vopts = VersionOptions(
        close_coverage=close_coverage, close_days=close_days, ndvi_pre_days=ndvi_pre_days,
        plan=PlanOptions(use_shakemap=use_shakemap, pga_g=pga_g, mmi=mmi, tile_deg=tile_deg,
                         flat_deg=flat_deg, max_radius_km=max_radius_km),
    )  # fmt: skip
    with EventState(out_dir) as state:
        report: dict[str, Any] = track_new(state, quakes, min_magnitude, max_radius_km)
        state.save()
        log.info("feed: %d earthquake(s); %d new to watch", len(quakes), len(report["new"]))
        for rec in state.active():
            if rec.kind == "earthquake" and rec.lon is not None:
                advance_quake(state, rec, t_now, opts, vopts, log)
            else:
                advance(state, rec, t_now, opts, log)
        for status in ("pending", "sweeping", "watching", "swept", "closed", "failed"):
            report[status] = sorted(r.id for r in state.events.values() if r.status == status)
    return report


#: Failures a user or the world can cause: reported as one line, not as a traceback.
EXPECTED_ERRORS = (UserError, OSError, TimeoutError)


class _ExpectedFailureOnce(logging.Filter):
    """Keep a record of an expected failure off the console: the CLI prints it as one line.

    The flow run's log in the Prefect API (another handler) keeps it, traceback and all.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], EXPECTED_ERRORS))


def _console_says_expected_failures_once() -> None:
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.addFilter(_ExpectedFailureOnce())


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.earthquake_watch``: one poll (``--once``) or a served schedule.

    Expected failures (bad input, a feed or catalog that cannot be read, I/O) end with one line
    on stderr and exit status 1; anything else is a bug and keeps its traceback.
    """
    args = build_parser((__doc__ or "").split("\n")[0]).parse_args(argv)
    prefect_defaults()
    problem = feed_problem(args.feed)
    if problem is not None:
        error_line(problem)
        return 1
    params: dict[str, Any] = {
        "feed": args.feed, "out_dir": args.out, "catalog": args.catalog, "checkpoint": args.checkpoint,
        "min_magnitude": args.min_magnitude, "max_radius_km": args.max_radius_km, "block": args.block,
        "use_shakemap": not args.no_shakemap, "pga_g": args.pga, "mmi": args.mmi, "tile_deg": args.tile_deg,
        "close_coverage": args.close_coverage, "close_days": args.close_days,
        "ndvi_pre_days": args.ndvi_pre_days,
    }  # fmt: skip
    if not args.once:
        earthquake_watch.serve(name="earthquake-watch-cli", interval=args.every_min * 60, parameters=params)
        return 0
    _console_says_expected_failures_once()
    try:
        report = earthquake_watch(**params, now=args.now)
    except EXPECTED_ERRORS as exc:  # one line; the flow run keeps the traceback
        error_line(str(exc))
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
