"""The event domain: from an earthquake (or a storm) to the area to sweep and its map versions.

Modules, in the order an event goes through them:

* :mod:`~pipeline.event.config`: constants and options (each default written once);
* :mod:`~pipeline.event.usgs`: the USGS feed and detail documents, through one reader;
* :mod:`~pipeline.event.shakemap`: a ShakeMap ``grid.xml`` and its shaken cells;
* :mod:`~pipeline.event.keefer`, :mod:`~pipeline.event.land`, :mod:`~pipeline.event.area`: the
  Keefer fallback, the land mask, the area on land and its size;
* :mod:`~pipeline.event.tiles`: sweep tiles, flat ones skipped;
* :mod:`~pipeline.event.state`: the events file and its records;
* :mod:`~pipeline.event.plan`: the area of an event, its post-event window, what a version sweeps;
* :mod:`~pipeline.event.versions`, :mod:`~pipeline.event.outputs`: writing a map version;
* :mod:`~pipeline.event.summary`: its summary and alert; :mod:`~pipeline.event.evidence`: NDVI
  change evidence;
* :mod:`~pipeline.event.commands`: ``landslide event-area``.

Nothing here imports Prefect or :mod:`flows`; the flows are thin wrappers around these modules.
"""
