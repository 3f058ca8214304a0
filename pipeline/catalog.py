"""STAC search and signing behind one narrow seam.

All catalog I/O lives here; everything downstream works on plain :class:`pystac.Item` lists.

* :class:`Catalog` is the Protocol the rest of the pipeline uses:
  ``search(collection, bbox, start, end, max_cloud=None) -> list[pystac.Item]``.
* :class:`StacApiCatalog` talks to a STAC API through pystac-client (pagination included).
  Cloud cover is filtered server-side with the ``query`` extension where the API conforms to it
  (Planetary Computer does) and always re-checked client-side, so a server without it
  (``rustac serve``'s in-memory backend) gives the same answer. CQL2 ``filter`` is not used.
* :class:`StaticCatalog` reads a local ItemCollection / FeatureCollection JSON, a JSON list of
  items, a single item, or a static ``catalog.json`` / ``collection.json`` (walked recursively),
  and filters in Python. Relative asset hrefs become absolute paths.
* :func:`open_catalog` picks one from a source string.

Search semantics (identical for both implementations):

* ``bbox`` is WGS84 ``(west, south, east, north)``, checked by :func:`validate_bbox` with the
  rules of :class:`BBox` (the one bbox rule set; a search may reach the poles, an area to map
  stops at 84°). ``west > east`` is **rejected**: when the box is narrower across 180° than
  with its longitudes swapped, the message names the two boxes to search instead (this module
  does not split it for you), else the swapped box. ``south > north`` is reported as such.
* ``start`` / ``end`` are an inclusive UTC date window: ``start 00:00:00Z`` to
  ``end 23:59:59.999999Z``. Items with ``start_datetime``/``end_datetime`` match when their range
  overlaps the window.
* ``max_cloud`` keeps items with ``eo:cloud_cover <= max_cloud``; items without the property (a
  DEM) are kept.
* An item matches the box when its geometry intersects it (its ``bbox`` when it has no geometry).
* Results are sorted by datetime, then id.

This module is longer than most (about 650 lines) on purpose: the two catalog implementations,
the search semantics they share and the bbox rules use one error type and are read together;
split, each part would import the others.

Signing is its own step (:func:`sign_items`), because Planetary Computer SAS tokens last about
45 minutes: search once, then sign fresh copies just before each region batch is read. Signed
hrefs must never be logged or persisted: record :func:`strip_signature` of an href instead.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pystac
from shapely.geometry import box, shape

from pipeline.errors import UserError

#: The Planetary Computer STAC API, the default catalog.
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
_PC_HOST = "planetarycomputer.microsoft.com"

#: Query parameters that carry a signature (Azure SAS, generic tokens, AWS and GCS presigning).
_SIGNATURE_KEYS = frozenset(
    {"st", "se", "sp", "sv", "sr", "sig", "skoid", "sktid", "skt", "ske", "sks", "skv", "spr", "token"}
)
_SIGNATURE_PREFIXES = ("x-amz-", "x-goog-")

#: Something that signs one item: mutates it in place (like ``planetary_computer.sign_inplace``)
#: and/or returns the signed item.
Signer = Callable[[pystac.Item], Any]

#: Plain WGS84 ``(west, south, east, north)`` bounds (not validated; e.g. a region's footprint).
Bounds = tuple[float, float, float, float]

class CatalogError(UserError):
    """A catalog problem the user can fix (unreachable API, bad item, bad bbox, unknown collection)."""


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


# ---------------------------------------------------------------------------------------------
# Pure helpers


#: Latitude limit of every bbox (degrees): sweeps map on UTM grids, which end at 84° N, and
#: the same limit is used in the south; beyond it a UTM grid is not a sensible metric grid.
MAX_ABS_LAT = 84.0


class _Corners(NamedTuple):
    west: float
    south: float
    east: float
    north: float


class BBox(_Corners):
    """A WGS84 ``(west, south, east, north)`` box that passed the one rule set of this pipeline.

    Constructing one validates it, so a ``BBox`` value is always valid; it is a tuple, so it
    unpacks, compares and serialises like ``(west, south, east, north)``. The rules: four finite
    numbers, longitudes in ``[-180, 180]``, latitudes in ``[-MAX_ABS_LAT, MAX_ABS_LAT]``,
    ``south < north`` and ``west < east``. A box with ``west > east`` is rejected with the box
    the user probably meant: its longitudes swapped, or, when it is narrower across the
    antimeridian, the two boxes to sweep instead; ``south > north`` is reported as such, with the
    box the user probably meant. Every suggested box is itself valid.
    """

    def __new__(cls, west: float, south: float, east: float, north: float) -> BBox:
        """Validate and build (raises :class:`CatalogError` naming the first rule broken)."""
        values = _finite_floats((west, south, east, north))
        problem = _problem(values, MAX_ABS_LAT)
        if problem:
            raise CatalogError(f"bad bbox {values}: {problem}")
        return super().__new__(cls, *values)

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` as a plain tuple."""
        return (self.west, self.south, self.east, self.north)

    @classmethod
    def parse(cls, values: Sequence[float] | BBox) -> BBox:
        """Validate any sequence of four numbers as a bbox (a ``BBox`` is returned as is).

        Raises:
            CatalogError: Naming what is wrong (one line).

        """
        if isinstance(values, BBox):
            return values
        return cls(*validate_bbox(values))


def _finite_floats(values: Sequence[float]) -> tuple[float, float, float, float]:
    w, s, e, n = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise CatalogError(f"bad bbox {(w, s, e, n)}: values must be finite")
    return (w, s, e, n)


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)


def _fmt(box_: tuple[float, ...]) -> str:
    return "(" + ", ".join(_num(v) for v in box_) + ")"


def crosses_antimeridian(west: float, east: float) -> bool:
    """Whether ``west > east`` more likely means a box across 180° than swapped longitudes.

    Read across the antimeridian, the box is ``360 - (west - east)`` degrees wide; read as
    swapped, ``west - east``. The narrower reading is taken (a box from 179.5 to -179.5 is 1°
    across 180; one from 10.2 to 10.0 is 0.2° with west and east swapped, not 359.8°).
    """
    return west > east and west - east > 180.0


def bbox_suggestions(
    values: Sequence[float], max_lat: float = MAX_ABS_LAT
) -> list[tuple[float, float, float, float]]:
    """The valid box(es) a user most likely meant by an inverted one (empty if none is clear).

    ``south > north`` is read as swapped latitudes. ``west > east`` is read as swapped
    longitudes, unless the box is narrower across the antimeridian (:func:`crosses_antimeridian`):
    then it is split in two at 180°. Each returned box passes :class:`BBox`.
    """
    w, s, e, n = _finite_floats(values)
    if not all(-180.0 <= v <= 180.0 for v in (w, e)) or not all(abs(v) <= max_lat for v in (s, n)):
        return []
    s, n = min(s, n), max(s, n)
    if s == n or w == e:
        return []
    if crosses_antimeridian(w, e):
        parts = [(w, s, 180.0, n), (-180.0, s, e, n)]
    else:
        parts = [(min(w, e), s, max(w, e), n)]
    return [p for p in parts if p[0] < p[2]]


def _problem(values: tuple[float, float, float, float], max_lat: float) -> str | None:
    """What is wrong with a bbox, or None; the first rule broken, hints included."""
    west, south, east, north = values
    for name, lon in (("west", west), ("east", east)):
        if not -180.0 <= lon <= 180.0:
            return f"{name} longitude {_num(lon)} outside [-180, 180]"
    for name, lat in (("south", south), ("north", north)):
        if not -max_lat <= lat <= max_lat:
            why = " (sweeps map on UTM grids, which end at 84 degrees)" if max_lat < 90 else ""
            return f"{name} latitude {_num(lat)} outside [-{max_lat:g}, {max_lat:g}]{why}"
    hints = [_fmt(b) for b in bbox_suggestions(values, max_lat)]
    split = f"split it into {' and '.join(hints)}"
    crossing = crosses_antimeridian(west, east)
    if south > north:
        text = f"south {_num(south)} is north of north {_num(north)} (expected W S E N)"
        if crossing and hints:
            return f"{text}; swapped, it also crosses the antimeridian: {split}"
        if west > east and hints:
            return f"{text}, and west {_num(west)} is east of east {_num(east)}; did you mean {hints[0]}?"
        return f"{text}; did you mean {hints[0]}?" if hints else text
    if south == north:
        return "south must be less than north"
    if crossing:
        return "west > east: the box crosses the antimeridian" + (f"; {split}" if hints else "")
    if west > east:
        text = f"west {_num(west)} is east of east {_num(east)} (expected W S E N)"
        return f"{text}; did you mean {hints[0]}?" if hints else text
    if west == east:
        return "west must be less than east"
    return None


def validate_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Check a WGS84 box to *search*: the rules of :class:`BBox`, with latitudes up to the poles.

    A search may look anywhere (DEM tiles reach 90° S); an area to *map* must be a
    :class:`BBox` (latitudes within ``MAX_ABS_LAT``), which a sweep checks up front.

    Raises:
        CatalogError: Naming what is wrong.

    """
    if isinstance(bbox, BBox):
        return bbox.corners
    try:
        floats = tuple(float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"bad bbox {bbox!r}: expected four numbers west,south,east,north") from exc
    if len(floats) != 4:
        raise CatalogError(f"bad bbox {bbox!r}: expected four numbers west,south,east,north")
    values = _finite_floats(floats)
    problem = _problem(values, 90.0)
    if problem:
        raise CatalogError(f"bad bbox {values}: {problem}")
    return values


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


def _is_signature_key(key: str) -> bool:
    k = key.lower()
    return k in _SIGNATURE_KEYS or k.startswith(_SIGNATURE_PREFIXES)


def is_signed(href: str) -> bool:
    """Whether an href carries a signature in its query string (SAS token, ``token=``, presigning)."""
    return any(_is_signature_key(k) for k, _ in parse_qsl(urlsplit(href).query, keep_blank_values=True))


def strip_signature(href: str) -> str:
    """Drop the query string (where signatures live) from an href, for logs and metadata.

    ``https://acct.blob.core.windows.net/c/B02.tif?st=...&sig=...`` becomes
    ``https://acct.blob.core.windows.net/c/B02.tif``; hrefs without a query are returned unchanged.
    """
    parts = urlsplit(href)
    if not parts.query:
        return href
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment))


def _unsign(href: str) -> str:
    """Remove only the signature parameters from an href, keeping any other query parameters."""
    parts = urlsplit(href)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not _is_signature_key(k)]
    if len(kept) == len(pairs):
        return href
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))


def identity_signer(item: pystac.Item) -> pystac.Item:
    """Leave the item as it is: the signer (catalogs whose assets need no signing)."""
    return item


def sign_items(items: Iterable[pystac.Item], signer: Signer | None) -> list[pystac.Item]:
    """Return fresh signed copies of ``items``; the inputs are not modified.

    Signatures already present (an earlier, perhaps expired, token) are removed from the copies'
    asset hrefs first, so signers that skip already-signed hrefs (``planetary_computer``) issue
    a new token. Other query parameters are kept.

    Args:
        items: Items as returned by :meth:`Catalog.search`.
        signer: Called once per copy; mutates it in place and/or returns the signed item.
            None means no signing (the copies are still fresh and unsigned).

    Returns:
        The signed copies, in input order.

    """
    out: list[pystac.Item] = []
    for item in items:
        copy = item.clone()
        for asset in copy.assets.values():
            asset.href = _unsign(asset.href)
        if signer is not None:
            result = signer(copy)
            if isinstance(result, pystac.Item):
                copy = result
        out.append(copy)
    return out


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


def _parse_item(data: Any, where: str) -> pystac.Item:
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
        raise CatalogError(f"malformed STAC item {item_id!r} in {where}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException, limit: int = 200) -> str:
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


# ---------------------------------------------------------------------------------------------
# STAC API


@dataclass
class StacApiCatalog:
    """A STAC API searched with pystac-client; the client is opened on first use.

    Attributes:
        url: Root URL of the API.
        signer: Applied (through :func:`sign_items`) to every item a search returns; None for none.
        timeout: Seconds for each HTTP request (connect and read).
        page_size: Items per page requested from the API (pystac-client follows ``next`` links).

    """

    url: str
    signer: Signer | None = None
    timeout: float = 30.0
    page_size: int = 100
    _client: Any = field(default=None, init=False, repr=False)
    _collections: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    def _open(self) -> Any:
        if self._client is None:
            from pystac_client import Client

            try:
                self._client = Client.open(self.url, timeout=self.timeout)
            except Exception as exc:
                raise CatalogError(f"cannot reach STAC API at {self.url}: {_one_line(exc)}") from exc
        return self._client

    def supports_query(self) -> bool:
        """Whether the API conforms to the STAC ``query`` extension (server-side cloud filter)."""
        from pystac_client import ConformanceClasses

        return bool(self._open().conforms_to(ConformanceClasses.QUERY))

    def _check_collection(self, collection: str) -> None:
        if collection not in self._collections:
            client = self._open()
            try:
                found = client.get_collection(collection)
            except Exception as exc:
                text = _one_line(exc)
                if "404" in text or "not found" in text.lower() or "no collection" in text.lower():
                    found = None
                else:
                    raise CatalogError(f"cannot reach STAC API at {self.url}: {text}") from exc
            self._collections[collection] = found is not None
        if not self._collections[collection]:
            raise CatalogError(f"unknown collection {collection!r} at STAC API {self.url}")

    def search(
        self,
        collection: str,
        bbox: tuple[float, float, float, float],
        start: dt.date,
        end: dt.date,
        max_cloud: float | None = None,
    ) -> list[pystac.Item]:
        """Search the API; see :meth:`Catalog.search`. Items come back signed by ``signer``."""
        box_ = validate_bbox(bbox)
        window = date_window(start, end)
        self._check_collection(collection)
        client = self._open()
        kwargs: dict[str, Any] = {
            "collections": [collection],
            "bbox": list(box_),
            "datetime": (window[0], window[1]),
            "limit": self.page_size,
        }
        if max_cloud is not None and self.supports_query():
            kwargs["query"] = {"eo:cloud_cover": {"lte": max_cloud}}
        where = f"STAC API {self.url}"
        try:
            dicts = list(client.search(**kwargs).items_as_dicts())
        except CatalogError:
            raise
        except Exception as exc:
            raise CatalogError(f"cannot reach STAC API at {self.url}: {_one_line(exc)}") from exc
        items = [_parse_item(d, where) for d in dicts]
        kept = [it for it in items if matches(it, box_, window, max_cloud)]
        kept.sort(key=sort_key)
        return sign_items(kept, self.signer) if self.signer is not None else kept


# ---------------------------------------------------------------------------------------------
# Static files


def _resolve_href(href: str, base: Path) -> str:
    """Absolute path for a relative href; URLs and absolute paths are returned unchanged."""
    parts = urlsplit(href)
    if parts.scheme and len(parts.scheme) > 1:  # a URL (one-letter schemes are Windows drives)
        return href
    path = Path(href)
    return str(path if path.is_absolute() else (base / path).resolve())


class StaticCatalog:
    """Items from a local file, filtered in Python (offline; used by the demo).

    Accepted files: a FeatureCollection / ItemCollection, a JSON list of items, a single item,
    or a static STAC catalog / collection JSON whose child and item links are walked.
    Relative asset hrefs are resolved against the location of the file that holds the item.
    """

    def __init__(self, path: str | Path) -> None:
        """Load every item of ``path``.

        Raises:
            CatalogError: If the file is missing, not JSON, or holds a malformed or duplicate item.

        """
        self.path = Path(path).expanduser().resolve()
        self.items: list[pystac.Item] = self._load()

    def _load(self) -> list[pystac.Item]:
        if not self.path.is_file():
            raise CatalogError(f"STAC catalog file not found: {self.path}")
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CatalogError(f"cannot read STAC file {self.path}: {_one_line(exc)}") from exc
        where = str(self.path)
        raw: Any
        if isinstance(data, list):
            raw = data
        elif isinstance(data, Mapping) and data.get("type") == "FeatureCollection":
            raw = data.get("features")
            if not isinstance(raw, list):
                raise CatalogError(f"malformed FeatureCollection {where}: 'features' is not a list")
        elif isinstance(data, Mapping) and data.get("type") == "Feature":
            raw = [data]
        elif isinstance(data, Mapping) and data.get("type") in ("Catalog", "Collection"):
            return self._walk()
        else:
            raise CatalogError(
                f"{where} is not a STAC ItemCollection, item, catalog or collection "
                f"(type {data.get('type') if isinstance(data, Mapping) else type(data).__name__!r})"
            )
        items: list[pystac.Item] = []
        for d in raw:
            item = _parse_item(d, where)
            for asset in item.assets.values():
                asset.href = _resolve_href(asset.href, self.path.parent)
            items.append(item)
        return self._unique(items)

    def _walk(self) -> list[pystac.Item]:
        try:
            root = pystac.read_file(str(self.path))
            if not isinstance(root, pystac.Catalog):
                raise CatalogError(f"{self.path} is not a STAC catalog")
            items = list(root.get_items(recursive=True))
        except CatalogError:
            raise
        except Exception as exc:
            raise CatalogError(f"malformed static STAC catalog {self.path}: {_one_line(exc)}") from exc
        for item in items:
            self_href = item.get_self_href()
            base = Path(self_href).parent if self_href else self.path.parent
            for asset in item.assets.values():
                asset.href = _resolve_href(asset.href, base)
        return self._unique(items)

    def _unique(self, items: list[pystac.Item]) -> list[pystac.Item]:
        seen: set[tuple[str | None, str]] = set()
        for item in items:
            key = (item.collection_id, item.id)
            if key in seen:
                raise CatalogError(f"malformed STAC file {self.path}: duplicate item id {item.id!r}")
            seen.add(key)
        return items

    @property
    def collections(self) -> list[str]:
        """Collection ids present in the file, sorted."""
        return sorted({it.collection_id for it in self.items if it.collection_id})

    def search(
        self,
        collection: str,
        bbox: tuple[float, float, float, float],
        start: dt.date,
        end: dt.date,
        max_cloud: float | None = None,
    ) -> list[pystac.Item]:
        """Filter the file's items; see :meth:`Catalog.search`. Returns copies (never signed)."""
        box_ = validate_bbox(bbox)
        window = date_window(start, end)
        if collection not in self.collections:
            raise CatalogError(
                f"unknown collection {collection!r} in {self.path} (it has: {', '.join(self.collections)})"
            )
        kept = [
            it.clone()
            for it in self.items
            if it.collection_id == collection and matches(it, box_, window, max_cloud)
        ]
        kept.sort(key=sort_key)
        return kept


# ---------------------------------------------------------------------------------------------
# Factory


def is_planetary_computer(url: str) -> bool:
    """Whether ``url`` points at the Planetary Computer (whose assets need SAS signing)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == _PC_HOST or host.endswith("." + _PC_HOST)


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
