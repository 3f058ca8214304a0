"""The command line of the earthquake watch, without Prefect: arguments, Prefect's settings, a pre-flight.

``python -m flows.earthquake_watch`` parses its arguments and reads the feed once *before*
Prefect is imported or a Prefect server started (:func:`preflight`), so ``--help``, a bad
argument and a feed that cannot be read (no network, a wrong host, a missing file, not a feed)
answer at once with one line, and Prefect's telemetry is off unless the operator turned it on
(:data:`PREFECT_DEFAULTS`). A feed that is only unreachable for now (connection refused,
HTTP 503) goes on to the flow, which retries it with backoff.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.event.config import (
    DEFAULT_CLOSE_COVERAGE,
    DEFAULT_CLOSE_DAYS,
    DEFAULT_MAX_RADIUS_KM,
    DEFAULT_MIN_MAGNITUDE,
    DEFAULT_PGA_G,
    DEFAULT_TILE_DEG,
)
from pipeline.event.usgs import DEFAULT_FEED_URL, FeedError, FeedUnreachableError, read_feed
from pipeline.sweep.config import DEFAULT_BLOCK

PROG = "python -m flows.earthquake_watch"

#: Prefect settings of the command line, set only where the environment has none: no telemetry,
#: client or server (the ephemeral server's heartbeat also wrote "database is locked" tracebacks
#: at exit), and Prefect's and Dask's own logging at WARNING (the poll's report is the JSON on
#: stdout).
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the server's telemetry heartbeat
    "DO_NOT_TRACK": "1",  # the client's (Prefect honours this standard variable)
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "DASK_LOGGING__DISTRIBUTED": "warning",  # the local cluster's start-up chatter, in every process
}

OFFLINE_HELP = """\
offline, on local files (no network):
  --feed FILE reads a USGS GeoJSON summary feed saved to disk. Each feature's properties.detail
  may be the path of a ComCat detail document saved to disk, and that document's ShakeMap
  download/grid.xml url the path of a grid.xml: local paths are followed only from documents
  you gave as local files (a document read over http(s) may only point to http(s)). With
  --catalog a local STAC catalog file, nothing is read from the network, e.g. the demo scene:

    python -m flows.earthquake_watch --feed tests/event/data/feed_demo.geojson --no-shakemap \\
        --catalog pipeline/demo/data/scene/catalog.json --out /tmp/quakes --once \\
        --max-radius-km 1.5 --block 512 --now 2018-09-15T00:00:00Z

  (--no-shakemap there because that feed's detail links point at the USGS site.)
"""


def build_parser(description: str = "") -> argparse.ArgumentParser:
    """The watch's argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=description,
        epilog=OFFLINE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--feed", default=DEFAULT_FEED_URL, help="USGS GeoJSON feed URL or file (default: M4.5+ past day)"
    )
    p.add_argument("--catalog", help="STAC API URL or local catalog file (default: Planetary Computer)")
    p.add_argument("--out", required=True, help="output directory (events.json, stores, products)")
    p.add_argument("--checkpoint", help="model checkpoint (default: the shipped one)")
    p.add_argument("--min-magnitude", type=float, default=DEFAULT_MIN_MAGNITUDE)
    p.add_argument("--max-radius-km", type=float, default=DEFAULT_MAX_RADIUS_KM)
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK)
    p.add_argument("--no-shakemap", action="store_true", help="plan Keefer discs only (no detail documents)")
    p.add_argument(
        "--pga", type=float, default=DEFAULT_PGA_G, help=f"PGA threshold in g (default {DEFAULT_PGA_G:g})"
    )
    p.add_argument("--mmi", type=float, help="MMI threshold instead of PGA")
    p.add_argument("--tile-deg", type=float, default=DEFAULT_TILE_DEG, help="sweep tile side in degrees")
    p.add_argument(
        "--close-coverage", type=float, default=DEFAULT_CLOSE_COVERAGE, help="close an event at this coverage"
    )
    p.add_argument(
        "--close-days", type=float, default=DEFAULT_CLOSE_DAYS, help="close an event after this many days"
    )
    p.add_argument("--ndvi-pre-days", type=int, help="NDVI change evidence with this pre-event window (days)")
    p.add_argument("--now", help="evaluation time, ISO 8601 (default: now)")
    p.add_argument(
        "--once", action="store_true", help="run one poll and exit (default: serve every --every-min)"
    )
    p.add_argument("--every-min", type=float, default=30.0, help="poll interval when serving (default 30)")
    return p


def prefect_defaults() -> None:
    """Set :data:`PREFECT_DEFAULTS` where the environment has no value (before Prefect is imported)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def feed_problem(feed: str) -> str | None:
    """Why ``feed`` cannot be read, when a retry would not fix it (host not found, no such file,
    not a feed); None when it was read, or is only unreachable for now (the flow retries it)."""
    try:
        read_feed(feed)
    except FeedUnreachableError:
        return None
    except FeedError as exc:
        return str(exc)
    return None


def error_line(message: str) -> None:
    """The one line of an expected failure, on stderr."""
    print(f"earthquake-watch: error: {message}", file=sys.stderr)


def preflight(argv: list[str] | None, description: str = "") -> argparse.Namespace:
    """Parse ``argv``, set Prefect's defaults and read the feed once; exit 1 with one line on a
    feed that cannot be read (:func:`feed_problem`)."""
    args = build_parser(description).parse_args(argv)
    prefect_defaults()
    problem = feed_problem(args.feed)
    if problem is not None:
        error_line(problem)
        raise SystemExit(1)
    return args
