"""Schedules for the flows, served from one long-running process (``flow.serve`` / ``serve``).

``python -m flows.deploy --out /data/landslides`` serves:

* ``earthquake-watch/every-30-min``: a poll of the USGS M4.5+ past-day feed every 30 minutes
  (interval schedule; one run at a time);
* ``storm-sweep/daily``: a daily re-check (cron ``0 6 * * *`` UTC) of a storm given with
  ``--storm-id ID --storm-bbox W S E N --storm-date YYYY-MM-DD`` (only when given);
* ``regional-sweep/on-demand``: no schedule; start it with
  ``prefect deployment run regional-sweep/on-demand -p event_id=... -p bbox=[...] ...``.

``serve`` needs a Prefect API: a ``prefect server start`` (or Prefect Cloud) with
``PREFECT_API_URL`` set, see ``docs/flows.md``.
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import serve

from flows.earthquake_watch import earthquake_watch
from flows.regional_sweep import regional_sweep
from flows.storm_sweep import storm_sweep

WATCH_INTERVAL_S = 30 * 60
STORM_CRON = "0 6 * * *"


def deployments(out_dir: str, catalog: str | None = None, storm: dict[str, Any] | None = None) -> list[Any]:
    """The deployments to serve (Prefect ``RunnerDeployment`` objects)."""
    common = {"out_dir": out_dir, "catalog": catalog}
    out = [
        earthquake_watch.to_deployment(
            name="every-30-min", interval=WATCH_INTERVAL_S, parameters=common, concurrency_limit=1,
            description="Poll the USGS feed; sweep large on-land earthquakes once clear imagery exists.",
        ),
        regional_sweep.to_deployment(name="on-demand", parameters=common, description="One event's sweep."),
    ]  # fmt: skip
    if storm:
        out.append(
            storm_sweep.to_deployment(
                name="daily", cron=STORM_CRON, parameters={**common, **storm}, concurrency_limit=1,
                description="Re-check a storm's area daily until it is swept.",
            )
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    """Serve the deployments until interrupted."""
    p = argparse.ArgumentParser(
        prog="python -m flows.deploy", description="Serve the landslide flows on schedules."
    )
    p.add_argument("--out", required=True, help="output directory of every flow")
    p.add_argument("--catalog", help="STAC API URL or local catalog file (default: Planetary Computer)")
    p.add_argument("--storm-id")
    p.add_argument("--storm-bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"))
    p.add_argument("--storm-date")
    args = p.parse_args(argv)
    storm = None
    if args.storm_id:
        if not (args.storm_bbox and args.storm_date):
            p.error("--storm-id needs --storm-bbox and --storm-date")
        storm = {"event_id": args.storm_id, "bbox": args.storm_bbox, "event_date": args.storm_date}
    serve(*deployments(args.out, args.catalog, storm))


if __name__ == "__main__":
    main()
