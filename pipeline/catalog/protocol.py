"""The catalog seam: the :class:`Catalog` Protocol, its error, and the shared search semantics.

Both implementations use the same date window, item matching, order and one-line item errors.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import pystac
from shapely.geometry import box, shape

from pipeline.errors import UserError
from pipeline.geo import Bounds

#: Something that signs one item: mutates it in place (like ``planetary_computer.sign_inplace``)
#: and/or returns the signed item.
Signer = Callable[[pystac.Item], Any]


class CatalogError(UserError):
    """A catalog problem the user can fix (unreachable API, bad item, unknown collection, bad window)."""


@runtime_checkable
class Catalog(Protocol):
    """The seam between the pipeline and any STAC source."""

    def search(
        self,
        collection: str,
        bbox: tuple[float, float, float, float],
        start: dt.date,
        end: dt.date,
        max_cloud: float | None = None,
    ) -> list[pystac.Item]:
        """Find the items of one collection intersecting ``bbox`` within ``[start, end]``.

        Args:
            collection: Collection id, e.g. ``"sentinel-2-l2a"``.
            bbox: WGS84 ``(west, south, east, north)``.
            start: First day of the window (UTC, inclusive).
            end: Last day of the window (UTC, inclusive).
            max_cloud: Keep items with ``eo:cloud_cover <= max_cloud`` (percent) when they have it.

        Returns:
            Items sorted by datetime, then id.

        Raises:
            CatalogError: Unreachable source, malformed item, bad bbox or window, unknown collection.

        """
        ...


def date_window(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Turn an inclusive date window into aware UTC datetimes ``[start 00:00, end 23:59:59.999999]``.

    Raises:
        CatalogError: If ``end`` is before ``start``.

    """
    if isinstance(start, dt.datetime):
        start = start.date()
    if isinstance(end, dt.datetime):
        end = end.date()
    if end < start:
        raise CatalogError(f"bad date window: end {end} is before start {start}")
    lo = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    hi = dt.datetime.combine(end, dt.time.max, tzinfo=dt.UTC)
    return lo, hi


def _item_time_range(item: pystac.Item) -> tuple[dt.datetime, dt.datetime] | None:
    if item.datetime is not None:
        t = _aware(item.datetime)
        return t, t
    props = item.properties
    if props.get("start_datetime") and props.get("end_datetime"):
        return (
            _aware(pystac.utils.str_to_datetime(props["start_datetime"])),
            _aware(pystac.utils.str_to_datetime(props["end_datetime"])),
        )
    return None


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def sort_key(item: pystac.Item) -> tuple[dt.datetime, str]:
    """Deterministic order: datetime (start of range), then id."""
    rng = _item_time_range(item)
    t = rng[0] if rng else dt.datetime.min.replace(tzinfo=dt.UTC)
    return (t, item.id)


def matches(
    item: pystac.Item,
    bbox: Bounds,
    window: tuple[dt.datetime, dt.datetime],
    max_cloud: float | None,
) -> bool:
    """Whether ``item`` intersects ``bbox``, overlaps ``window`` and passes the cloud limit."""
    rng = _item_time_range(item)
    if rng is None or rng[1] < window[0] or rng[0] > window[1]:
        return False
    if max_cloud is not None:
        cloud = item.properties.get("eo:cloud_cover")
        if cloud is not None and float(cloud) > max_cloud:
            return False
    return intersects(item, bbox)


def intersects(item: pystac.Item, bbox: Bounds) -> bool:
    """Whether an item's footprint (its geometry, else its bbox) intersects a WGS84 ``bbox``."""
    query = box(*bbox)
    if item.geometry is not None:
        return bool(shape(item.geometry).intersects(query))
    if item.bbox is not None and len(item.bbox) >= 4:
        b = item.bbox
        half = len(b) // 2
        return bool(box(b[0], b[1], b[half], b[half + 1]).intersects(query))
    return False


def parse_item(data: Any, where: str) -> pystac.Item:
    """Build an item from a dict, with a one-line error naming the item and where it came from."""
    if not isinstance(data, Mapping):
        raise CatalogError(
            f"malformed STAC item in {where}: expected a JSON object, got {type(data).__name__}"
        )
    item_id = data.get("id", "<no id>")
    if data.get("type") != "Feature":
        raise CatalogError(f"malformed STAC item {item_id!r} in {where}: type is not 'Feature'")
    for key in ("id", "properties", "assets"):
        if key not in data:
            raise CatalogError(f"malformed STAC item {item_id!r} in {where}: missing {key!r}")
    props = data["properties"]
    if not isinstance(props, Mapping) or not (
        props.get("datetime") or (props.get("start_datetime") and props.get("end_datetime"))
    ):
        raise CatalogError(f"malformed STAC item {item_id!r} in {where}: no datetime")
    try:
        return pystac.Item.from_dict(dict(data), preserve_dict=True)
    except Exception as exc:  # pystac raises many types on bad input
        raise CatalogError(f"malformed STAC item {item_id!r} in {where}: {one_line_reason(exc)}") from exc


def one_line_reason(exc: BaseException, limit: int = 200) -> str:
    """Return the innermost reason of an exception chain, on one line."""
    inner: BaseException = exc
    seen = {id(inner)}
    while True:
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    text = " ".join(str(inner).split()) or type(inner).__name__
    match = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if match:
        text = match.group(0)
    return text if len(text) <= limit else text[: limit - 3] + "..."
