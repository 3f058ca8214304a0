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

from typing import TYPE_CHECKING

from pipeline.lazy import lazy_face
from pipeline.sweep.config import CHIP as CHIP
from pipeline.sweep.config import DEFAULT_BLOCK as DEFAULT_BLOCK
from pipeline.sweep.config import DEM_WINDOW as DEM_WINDOW
from pipeline.sweep.config import DEMO_BLOCK as DEMO_BLOCK
from pipeline.sweep.config import REGION_MARGIN as REGION_MARGIN
from pipeline.sweep.config import RESOLUTION as RESOLUTION
from pipeline.sweep.config import SweepConfig as SweepConfig

if TYPE_CHECKING:
    from pipeline.cube import DEM_COLLECTION as DEM_COLLECTION
    from pipeline.cube import S2_COLLECTION as S2_COLLECTION
    from pipeline.sweep.plan import Checkpoint as Checkpoint
    from pipeline.sweep.plan import Region as Region
    from pipeline.sweep.plan import Scenes as Scenes
    from pipeline.sweep.plan import SweepPlan as SweepPlan
    from pipeline.sweep.plan import area_geobox as area_geobox
    from pipeline.sweep.plan import plan_regions as plan_regions
    from pipeline.sweep.plan import plan_sweep as plan_sweep
    from pipeline.sweep.plan import window_geobox as window_geobox
    from pipeline.sweep.regions import region_probability as region_probability
    from pipeline.sweep.run import check_scenes as check_scenes
    from pipeline.sweep.run import run_sweep as run_sweep
    from pipeline.sweep.run import search_scenes as search_scenes
    from pipeline.sweep.summary import SweepSummary as SweepSummary
    from pipeline.sweep.summary import summary_json as summary_json

#: The names above, each written once (see :mod:`pipeline.lazy`); the lazy ones load on first use.
__all__, __getattr__ = lazy_face(__name__, __file__)
