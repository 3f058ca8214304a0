"""Prefect 3 flows around the sweep: one event's sweep, an earthquake watch, a storm sweep.

* :mod:`flows.regional_sweep`: search, sweep, export for one event, idempotent per event id;
* :mod:`flows.earthquake_watch`: polls the USGS feed; plans each large earthquake's area from
  its ShakeMap (:mod:`flows.event_plan`, :mod:`flows.usgs_detail`, :mod:`pipeline.event_area`)
  or the Keefer disc (:mod:`flows.sweep_area`), and writes map versions as clear imagery arrives
  (:mod:`flows.map_versions`, :mod:`flows.event_summary`, :mod:`flows.version_outputs`,
  :mod:`flows.change_evidence`);
* :mod:`flows.storm_sweep`: a user-given area and event date, swept once imagery exists;
* :mod:`flows.deploy`: schedules for all of them through ``serve``.

The pure parts (feed and detail parsing, the area rules, the land mask, the state file) do not
import Prefect; see ``docs/flows.md``.
"""
