"""Prefect 3 flows around the sweep: one event's sweep, an earthquake watch, a storm sweep.

* :mod:`flows.regional_sweep`: search, sweep, export for one event, idempotent per event id;
* :mod:`flows.earthquake_watch`: polls the USGS feed; plans each large earthquake's area from
  its ShakeMap or the Keefer disc and writes map versions as clear imagery arrives
  (:mod:`flows.map_versions` around :mod:`pipeline.event.versions`);
* :mod:`flows.storm_sweep`: a user-given area and event date, swept once imagery exists;
* :mod:`flows.deploy`: schedules for all of them through ``serve``.

Everything an event is (feed and detail documents, ShakeMap, area, land, tiles, state, plan,
versions, summary, change evidence) lives in :mod:`pipeline.event`, which imports neither
Prefect nor this package; the flows here are thin wrappers. See ``docs/flows.md``.
"""
