"""Prefect face of the map versions (:mod:`pipeline.event.versions`): a retried search, an artifact.

:func:`advance_quake` runs one poll of one earthquake with the catalog search as a Prefect task
(retried on I/O errors with exponential backoff) and each version's summary logged as a Prefect
markdown artifact (key ``<event>-summary``).
"""

from __future__ import annotations

import datetime as dt
import json
from logging import Logger, LoggerAdapter
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.io_retry import backoff, retry_on_io
from pipeline.event import versions
from pipeline.event.config import DEFAULT_RETRY_DELAY_S, BBox, VersionOptions, WatchOptions
from pipeline.event.state import EventRecord, EventState


@task(
    retries=3,
    retry_delay_seconds=backoff(DEFAULT_RETRY_DELAY_S),
    retry_condition_fn=retry_on_io,
    cache_policy=NO_CACHE,
)
def search_footprints(
    catalog_source: str | None, bbox: BBox, start: dt.date, end: dt.date, max_cloud: float
) -> dict[str, BBox]:
    """Clear post-event Sentinel-2 scenes over ``bbox``: id -> WGS84 bbox (retried on I/O)."""
    return versions.search_footprints(catalog_source, bbox, start, end, max_cloud)


def artifact(event_id: str, summary: dict[str, Any]) -> str | None:
    """Log the summary as a Prefect markdown artifact; its id (None outside a flow run)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return None
    key = "".join(c if c.isalnum() else "-" for c in event_id.lower()) + "-summary"
    return str(
        create_markdown_artifact(
            key=key,
            markdown="```json\n" + json.dumps(summary, indent=2, default=str) + "\n```",
            description=f"landslide map of {event_id}, version {summary['version']['n']}",
        )
    )


def advance_quake(
    state: EventState,
    rec: EventRecord,
    now: dt.datetime,
    opts: WatchOptions,
    vopts: VersionOptions,
    log: Logger | LoggerAdapter[Any],
) -> None:
    """One poll of one earthquake (:func:`pipeline.event.versions.advance_quake`) inside a flow."""
    search = search_footprints.with_options(retry_delay_seconds=backoff(opts.retry_delay_s))
    versions.advance_quake(state, rec, now, opts, vopts, log, search=search, publish=artifact)
