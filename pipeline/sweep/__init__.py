"""A regional sweep: configuration, a pure plan, and the executor that carries it out.

* :mod:`~pipeline.sweep.config`: :class:`SweepConfig` and the only home of the defaults (light);
* :mod:`~pipeline.sweep.plan`: ``plan_sweep(config, checkpoint, scenes) -> SweepPlan`` (pure);
* :mod:`~pipeline.sweep.regions`: one region's graph: pre-flight, cube, ``map_overlap``, write;
* :mod:`~pipeline.sweep.run`: ``run_sweep(config) -> SweepSummary``, the executor;
* :mod:`~pipeline.sweep.summary`: what a sweep reports;
* :mod:`~pipeline.sweep.commands`: the ``sweep`` and ``demo`` subcommands.

Heavy names (``run_sweep`` and what needs Dask or xarray) are loaded on first use, so importing
this package for its configuration costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.sweep.config import (
    CHIP,
    DEFAULT_BLOCK,
    DEM_WINDOW,
    DEMO_BLOCK,
    REGION_MARGIN,
    RESOLUTION,
    SweepConfig,
)

if TYPE_CHECKING:
    from pipeline.cube import DEM_COLLECTION, S2_COLLECTION
    from pipeline.sweep.plan import (
        Checkpoint,
        Region,
        Scenes,
        SweepPlan,
        area_geobox,
        plan_regions,
        plan_sweep,
        window_geobox,
    )
    from pipeline.sweep.regions import region_probability
    from pipeline.sweep.run import check_scenes, run_sweep, search_scenes
    from pipeline.sweep.summary import SweepSummary, summary_json

_LAZY = {
    "DEM_COLLECTION": "pipeline.cube", "S2_COLLECTION": "pipeline.cube",
    "Checkpoint": "pipeline.sweep.plan", "Region": "pipeline.sweep.plan", "Scenes": "pipeline.sweep.plan",
    "SweepPlan": "pipeline.sweep.plan", "area_geobox": "pipeline.sweep.plan",
    "plan_regions": "pipeline.sweep.plan", "plan_sweep": "pipeline.sweep.plan",
    "window_geobox": "pipeline.sweep.plan", "region_probability": "pipeline.sweep.regions",
    "run_sweep": "pipeline.sweep.run", "search_scenes": "pipeline.sweep.run",
    "check_scenes": "pipeline.sweep.run",
    "SweepSummary": "pipeline.sweep.summary", "summary_json": "pipeline.sweep.summary",
}  # fmt: skip

__all__ = [
    "CHIP",
    "DEFAULT_BLOCK",
    "DEMO_BLOCK",
    "DEM_COLLECTION",
    "DEM_WINDOW",
    "REGION_MARGIN",
    "RESOLUTION",
    "S2_COLLECTION",
    "Checkpoint",
    "Region",
    "Scenes",
    "SweepConfig",
    "SweepPlan",
    "SweepSummary",
    "area_geobox",
    "check_scenes",
    "plan_regions",
    "plan_sweep",
    "region_probability",
    "run_sweep",
    "search_scenes",
    "summary_json",
    "window_geobox",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline.sweep' has no attribute {name!r}")
