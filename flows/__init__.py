"""Prefect 3 flows around the sweep: one event's sweep, an earthquake watch, a storm sweep.

* :mod:`flows.regional_sweep`: search, sweep, export for one event, idempotent per event id;
* :mod:`flows.earthquake_watch`: polls the USGS feed and sweeps large on-land earthquakes once
  post-event imagery exists;
* :mod:`flows.storm_sweep`: the same for a user-given area and event date;
* :mod:`flows.deploy`: schedules for all of them through ``serve``.

The pure parts (feed parsing, the magnitude -> area rule, the land mask, the state file) do not
import Prefect; see ``docs/flows.md``.
"""
