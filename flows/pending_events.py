"""Shared by the earthquake watch and the storm sweep: wait for imagery, then sweep once.

Each poll calls :func:`advance` on every active record of the events file:

1. too early (``now < event + wait_days``, or no whole day since the event yet): stays pending;
2. search Sentinel-2 L2A scenes with cloud cover ``<= max_cloud`` over the area from the day
   after the event to ``min(today, day after + window_days - 1)`` (retried on I/O errors);
3. none: stays pending (``checks`` + 1), or fails after ``give_up_days`` without imagery;
4. some: the record becomes ``sweeping`` with its window written to the events file *before*
   the sweep starts, then :func:`flows.regional_sweep.regional_sweep` runs as a subflow; the
   record ends ``swept`` (with the result) or ``failed`` (with the error). A record found
   ``sweeping`` (a crash mid-sweep) is swept again with the recorded window, which resumes the
   same store.
"""

from __future__ import annotations

import datetime as dt
from logging import Logger, LoggerAdapter
from typing import Any

from flows.io_retry import backoff
from flows.regional_sweep import regional_sweep, search_scenes
from pipeline.event.config import WatchOptions as WatchOptions
from pipeline.event.plan import post_event_window
from pipeline.event.state import EventRecord, EventState, utc_iso, version_errors


def parse_now(now: str | None) -> dt.datetime:
    """The poll's notion of now: ``now`` (ISO, naive means UTC) or the current UTC time."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    t = dt.datetime.fromisoformat(now.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def advance(
    state: EventState,
    rec: EventRecord,
    now: dt.datetime,
    opts: WatchOptions,
    log: Logger | LoggerAdapter[Any],
) -> None:
    """Check one active event for imagery and sweep it if there is some (see the module docstring).

    The record is updated in place and the events file saved after every change.
    """
    event_time = dt.datetime.fromisoformat(rec.event_time)
    if rec.status == "sweeping" and rec.window:
        log.info("event %s: resuming its interrupted sweep", rec.id)
        _sweep(state, rec, rec.window, opts, log)
        return
    age_days = (now - event_time).total_seconds() / 86400
    window = post_event_window(event_time, now, opts.window_days)
    if age_days < opts.wait_days or window is None:
        _touch(
            state, rec, note=f"waiting: {age_days:.1f} of {max(opts.wait_days, 1.0):g} days after the event"
        )
        return
    search = search_scenes.with_options(retry_delay_seconds=backoff(opts.retry_delay_s))
    scenes = search(opts.catalog, rec.bbox, window[0].isoformat(), window[1].isoformat(), opts.max_cloud)
    rec.checks += 1
    rec.last_checked = utc_iso(now)
    rec.scenes = scenes
    if not scenes:
        if age_days > opts.give_up_days:
            rec.status = "failed"
            _touch(
                state,
                rec,
                note=f"no clear scenes (cloud <= {opts.max_cloud:g}%) within {opts.give_up_days:g} days",
            )
            log.warning("event %s: giving up, %s", rec.id, rec.note)
        else:
            _touch(state, rec, note=f"no clear scenes yet in {window[0]}..{window[1]} (check {rec.checks})")
            log.info("event %s: %s", rec.id, rec.note)
        return
    rec.status, rec.window = "sweeping", [window[0].isoformat(), window[1].isoformat()]
    _touch(state, rec, note=f"{len(scenes)} clear scene(s); sweeping")
    log.info("event %s: %s", rec.id, rec.note)
    _sweep(state, rec, rec.window, opts, log)


def _touch(state: EventState, rec: EventRecord, note: str) -> None:
    rec.note, rec.updated = note, utc_iso(dt.datetime.now(dt.UTC))
    state.save()


def _sweep(
    state: EventState,
    rec: EventRecord,
    window: list[str],
    opts: WatchOptions,
    log: Logger | LoggerAdapter[Any],
) -> None:
    try:
        result = regional_sweep(
            event_id=rec.id, bbox=rec.bbox, start=window[0], end=window[1], out_dir=opts.out_dir,
            catalog=opts.catalog, checkpoint=opts.checkpoint, block=opts.block, export=opts.export,
            max_cloud=opts.max_cloud, scheduler=opts.scheduler, workers=opts.workers,
        )  # fmt: skip
    except version_errors() as exc:  # a failed sweep is recorded, the other events still run
        rec.status = "failed"
        _touch(state, rec, note=f"sweep failed: {type(exc).__name__}: {exc}"[:500])
        log.error("event %s: %s", rec.id, rec.note)
        return
    rec.status, rec.result = "swept", result
    _touch(state, rec, note=f"swept: {result['store']}")
    log.info("event %s: %s", rec.id, rec.note)
