"""STAC search and signing behind one narrow seam.

All catalog I/O lives in this package; everything downstream works on plain :class:`pystac.Item`
lists.

* :mod:`~pipeline.catalog.protocol`: :class:`Catalog`, the Protocol the rest of the pipeline uses
  (``search(collection, bbox, start, end, max_cloud=None) -> list[pystac.Item]``), its error and
  the search semantics both implementations share;
* :mod:`~pipeline.catalog.stac_api`: :class:`StacApiCatalog`, a STAC API through pystac-client;
* :mod:`~pipeline.catalog.static`: :class:`StaticCatalog`, a local STAC file filtered in Python;
* :mod:`~pipeline.catalog.signing`: :func:`sign_items` and keeping signatures out of records;
* :func:`open_catalog` picks a catalog from a source string.

Search semantics (identical for both implementations):

* ``bbox`` is WGS84 ``(west, south, east, north)``, checked by :func:`pipeline.geo.validate_bbox`
  with the rules of :class:`pipeline.geo.BBox` (the one bbox rule set; a search may reach the
  poles, an area to map stops at 84°). ``west > east`` is **rejected**: when the box is narrower
  across 180° than with its longitudes swapped, the message names the two boxes to search instead
  (nothing here splits it for you), else the swapped box. ``south > north`` is reported as such.
* ``start`` / ``end`` are an inclusive UTC date window: ``start 00:00:00Z`` to
  ``end 23:59:59.999999Z``. Items with ``start_datetime``/``end_datetime`` match when their range
  overlaps the window.
* ``max_cloud`` keeps items with ``eo:cloud_cover <= max_cloud``; items without the property (a
  DEM) are kept.
* An item matches the box when its geometry intersects it (its ``bbox`` when it has no geometry).
* Results are sorted by datetime, then id.

Signing is its own step (:func:`sign_items`), because Planetary Computer SAS tokens last about
45 minutes: search once, then sign fresh copies just before each region batch is read. Signed
hrefs must never be logged or persisted: record :func:`strip_signature` of an href instead.

The bbox names (``BBox``, ``validate_bbox``, ``MAX_ABS_LAT``, ...) live in :mod:`pipeline.geo`;
they are offered here too, as before the split.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.catalog.protocol import (
    Catalog,
    CatalogError,
    Signer,
    date_window,
    intersects,
    matches,
    sort_key,
)
from pipeline.catalog.signing import (
    PLANETARY_COMPUTER_URL,
    identity_signer,
    is_planetary_computer,
    is_signed,
    sign_items,
    strip_signature,
)
from pipeline.catalog.stac_api import StacApiCatalog
from pipeline.catalog.static import StaticCatalog
from pipeline.geo import MAX_ABS_LAT, BBox, BBoxError, Bounds, bbox_suggestions, validate_bbox

__all__ = [
    "MAX_ABS_LAT",
    "PLANETARY_COMPUTER_URL",
    "BBox",
    "BBoxError",
    "Bounds",
    "Catalog",
    "CatalogError",
    "Signer",
    "StacApiCatalog",
    "StaticCatalog",
    "bbox_suggestions",
    "date_window",
    "identity_signer",
    "intersects",
    "is_planetary_computer",
    "is_signed",
    "matches",
    "open_catalog",
    "sign_items",
    "sort_key",
    "strip_signature",
    "validate_bbox",
]


def open_catalog(source: str | None, signer: Signer | None = None) -> Catalog:
    """Open a catalog from a source string.

    Args:
        source: None for the Planetary Computer STAC API; an ``http(s)://`` URL of a STAC API;
            or the path of a local STAC file (see :class:`StaticCatalog`).
        signer: Overrides the default signer: ``planetary_computer.sign_inplace`` for the
            Planetary Computer, no signing for other APIs and for files.

    Returns:
        The catalog. APIs are contacted lazily, on the first search.

    Raises:
        CatalogError: If ``source`` is neither a URL nor an existing file.

    """
    if source is None:
        source = PLANETARY_COMPUTER_URL
    if re.match(r"^https?://", source, flags=re.IGNORECASE):
        if signer is None and is_planetary_computer(source):
            import planetary_computer

            signer = planetary_computer.sign_inplace
        return StacApiCatalog(source, signer=signer)
    path = Path(source).expanduser()
    if path.is_file():
        return StaticCatalog(path)
    raise CatalogError(
        f"catalog {source!r} is neither an http(s) STAC API URL nor an existing STAC JSON file"
    )
