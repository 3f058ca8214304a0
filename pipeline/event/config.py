"""The event domain's constants and options: each written once, here.

Constants that belong to a lower layer are imported from their one home, not copied: the
latitude limit (:mod:`pipeline.catalog`), the DEM search window and the block size
(:mod:`pipeline.sweep.config`). The collection ids live in :mod:`pipeline.cube.items`; the
modules that search import them where they search (importing the cube loads Dask, which
``landslide event-area`` does not need).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from pipeline.catalog import MAX_ABS_LAT as MAX_ABS_LAT
from pipeline.errors import UserError
from pipeline.sweep.config import DEFAULT_BLOCK
from pipeline.sweep.config import DEM_WINDOW as DEM_WINDOW

#: A WGS84 box ``(west, south, east, north)`` in degrees.
BBox = tuple[float, float, float, float]

#: USGS Ground Failure counts only cells with PGA >= 0.10 g.
DEFAULT_PGA_G: Final = 0.10
#: Sweep tile side in degrees (about 22 x 16-22 km at mid latitudes; ~2,000 px a side at 10 m).
DEFAULT_TILE_DEG: Final = 0.2
#: A tile whose steepest coarse-overview slope is below this is flat (no landslides to map).
DEFAULT_FLAT_DEG: Final = 3.0
#: Land mask growth before the clip (degrees; ~10 km), because 1:110m coastlines are coarse.
LAND_MARGIN_DEG: Final = 0.1
#: How the land mask is described to users.
LAND_MASK_NOTE: Final = f"Natural Earth 1:110m, grown by {LAND_MARGIN_DEG:g} degree"
#: PGA bin edges (g) of the summary's area-by-PGA table and of the ShakeMap contours.
PGA_BINS_G: Final = (0.10, 0.20, 0.40, 0.80)
#: Cap of the Keefer disc radius (km): a fallback sweep is at most a 100 x 100 km box.
DEFAULT_MAX_RADIUS_KM: Final = 50.0
#: Smallest magnitude the earthquake watch tracks.
DEFAULT_MIN_MAGNITUDE: Final = 6.0
#: Scene cloud cover (%) that counts as clear for an event.
DEFAULT_EVENT_MAX_CLOUD: Final = 40.0
#: Longest post-event window searched and swept (days, from the day after the event).
DEFAULT_WINDOW_DAYS: Final = 30
#: Days without clear imagery after which an event fails.
DEFAULT_GIVE_UP_DAYS: Final = 30.0
#: First retry delay of network reads (seconds; doubles per retry).
DEFAULT_RETRY_DELAY_S: Final = 10.0
#: Close an event once this share of its area has clear data ...
DEFAULT_CLOSE_COVERAGE: Final = 0.95
#: ... or this many days after it.
DEFAULT_CLOSE_DAYS: Final = 45.0
#: A tile with at least this share of clear data is complete (no re-sweep for new scenes).
TILE_FULL: Final = 0.995
#: A version that failed this many times is given up (the event keeps its earlier versions).
MAX_ATTEMPTS: Final = 3
#: Event ids, ShakeMap sources and versions that may become file names: letters, digits, '.',
#: '_' and '-', starting with a letter or digit, at most 128 (no '/', no '..' component).
SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Largest document read from the network or a file (feed, detail document; bytes).
MAX_DOCUMENT_BYTES: Final = 32 * 2**20
#: Largest ShakeMap ``grid.xml`` downloaded (bytes; real grids are a few MB, large events ~50 MB).
MAX_GRID_BYTES: Final = 256 * 2**20


def safe_name(value: str, what: str) -> str:
    """``value`` when it is a safe file name (:data:`SAFE_NAME`).

    Raises:
        UserError: Naming ``what`` it is and the rule.
    """
    if not SAFE_NAME.match(value):
        raise UserError(f"{what} {value!r} must be letters, digits, '.', '_' or '-' (at most 128)")
    return value


def area_rule(pga_g: float | None = None, mmi: float | None = None) -> str:
    """The threshold rule as users read it: ``"PGA >= 0.1 g"`` or ``"MMI >= 6"``."""
    if mmi is not None:
        return f"MMI >= {mmi:g}"
    return f"PGA >= {DEFAULT_PGA_G if pga_g is None else pga_g:g} g"


@dataclass(frozen=True)
class PlanOptions:
    """How areas are planned (from the watch's parameters).

    Attributes:
        use_shakemap: Look for a ShakeMap in the detail document.
        pga_g: PGA threshold (g).
        mmi: MMI threshold instead of PGA, or None.
        tile_deg: Sweep tile side (degrees).
        flat_deg: Tiles whose steepest coarse slope is below this are skipped.
        max_radius_km: Cap of the Keefer disc (the fallback).
    """

    use_shakemap: bool = True
    pga_g: float = DEFAULT_PGA_G
    mmi: float | None = None
    tile_deg: float = DEFAULT_TILE_DEG
    flat_deg: float = DEFAULT_FLAT_DEG
    max_radius_km: float = DEFAULT_MAX_RADIUS_KM

    @property
    def rule(self) -> str:
        """The threshold rule as text (:func:`area_rule`)."""
        return area_rule(self.pga_g, self.mmi)


@dataclass(frozen=True)
class WatchOptions:
    """How pending events are checked and swept (from the flows' parameters).

    Attributes:
        out_dir: Output directory (events file, stores, products).
        catalog: STAC API URL or local catalog file; None for Planetary Computer.
        checkpoint: Model checkpoint; None for the shipped one.
        max_cloud: Scene cloud cover (%) that counts as clear; also the sweep's limit.
        wait_days: Minimum days after the event before sweeping (let clear scenes accumulate).
        window_days: Longest post-event window searched and swept.
        give_up_days: Days after the event after which a still-pending event fails.
        block: Sweep block size.
        export: Write the products.
        retry_delay_s: First retry delay of catalog searches (doubles per retry, 3 retries).
        scheduler: Dask scheduler address, or None for a local cluster.
        workers: Local Dask workers.
    """

    out_dir: str
    catalog: str | None = None
    checkpoint: str | None = None
    max_cloud: float = DEFAULT_EVENT_MAX_CLOUD
    wait_days: float = 0.0
    window_days: int = DEFAULT_WINDOW_DAYS
    give_up_days: float = DEFAULT_GIVE_UP_DAYS
    block: int = DEFAULT_BLOCK
    export: bool = True
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S
    scheduler: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class VersionOptions:
    """When maps are rewritten and events closed.

    Attributes:
        close_coverage: Close an event once its coverage reaches this share.
        close_days: Close an event this many days after it (whatever its coverage).
        plan: How areas are planned.
        ndvi_pre_days: Write NDVI change evidence with a pre-event window of this many days
            (:mod:`pipeline.event.evidence`); None for none.
    """

    close_coverage: float = DEFAULT_CLOSE_COVERAGE
    close_days: float = DEFAULT_CLOSE_DAYS
    plan: PlanOptions = field(default_factory=PlanOptions)
    ndvi_pre_days: int | None = None
