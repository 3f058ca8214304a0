"""USGS documents: the earthquake summary feed and the ComCat detail document, through one reader.

**Feed.** https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php, a FeatureCollection
whose features have ``id``, ``geometry.coordinates = [lon, lat, depth_km]`` and properties
``mag``, ``place``, ``time`` (epoch milliseconds, UTC), ``updated``, ``type``, ``tsunami``, ...

**Detail.** The feed's ``properties.detail`` is the URL of the event's detail GeoJSON; its
``properties.products.shakemap`` lists ShakeMap products (several sources, e.g. ``us`` and
``atlas``), each with ``properties.version``, ``updateTime``, ``preferredWeight`` and
``contents["download/grid.xml"].url``. We take the preferred one (highest ``preferredWeight``,
then the newest ``updateTime``), as ComCat's own clients do.

Every document is read by :func:`read_bytes`; :data:`TRANSIENT` says which of its failures are
worth a retry (network and catalog I/O, not bad input) and :func:`backoff` gives the delays.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.catalog import CatalogError
from pipeline.errors import UserError
from pipeline.event.config import MAX_DOCUMENT_BYTES, SAFE_NAME, safe_name

#: M4.5+ earthquakes of the past day (updated every minute by USGS).
DEFAULT_FEED_URL = "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/4.5_day.geojson"
#: Timeout of one network read (seconds).
READ_TIMEOUT_S = 30.0
GRID_KEY = "download/grid.xml"


class FeedError(UserError):
    """The feed cannot be read or is not a USGS GeoJSON summary feed."""


class FeedUnreachableError(FeedError):
    """A network failure reading the feed (worth retrying)."""


class HostNotFoundError(FeedError):
    """The host name does not resolve (no network, or a wrong URL): not retried."""


#: Exceptions that may go away on their own (an API down for a minute, a dropped connection).
TRANSIENT = (FeedUnreachableError, CatalogError, ConnectionError, TimeoutError, OSError)


def backoff(first_s: float, retries: int = 3) -> list[float]:
    """Exponential retry delays: ``first_s, 2 * first_s, 4 * first_s, ...``."""
    return [first_s * 2**k for k in range(retries)]


@dataclass(frozen=True)
class Earthquake:
    """One event of the feed.

    Attributes:
        id: USGS event id (the feature's ``id``), e.g. ``us2000h8ty``.
        magnitude: ``properties.mag``.
        lon: Epicentre longitude (degrees).
        lat: Epicentre latitude (degrees).
        depth_km: Hypocentre depth (km).
        time: Origin time (UTC).
        place: ``properties.place``.
        detail: ``properties.detail``: URL of the event's ComCat detail document ("" if none).
    """

    id: str
    magnitude: float
    lon: float
    lat: float
    depth_km: float
    time: dt.datetime
    place: str
    detail: str = ""


def is_remote(source: str) -> bool:
    """Whether ``source`` is an ``http(s)://`` URL (else a local file)."""
    return source.lower().startswith(("http://", "https://"))


def check_link(link: str, referrer: str, what: str) -> str:
    """``link`` found in the document read from ``referrer``, when it may be followed.

    A document read from the network may only point to ``http(s)://`` URLs; only a document the
    user gave as a local file may point to local files (so a remote document never makes us read
    or publish a file of this machine).

    Raises:
        FeedError: A remote document points to a local path or another scheme.
    """
    if is_remote(referrer) and not is_remote(link):
        raise FeedError(f"{what} {link!r} in {referrer} refused: a remote document may only point to http(s)")
    return link


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to ``http(s)://`` only (urllib would also follow ``ftp://``)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if not is_remote(newurl):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl!r} refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _too_large(what: str, source: str, limit: int) -> FeedError:
    return FeedError(f"{what}{source} is larger than {limit:,} bytes; refused")


def read_bytes(
    source: str, what: str = "", timeout_s: float = READ_TIMEOUT_S, max_bytes: int = MAX_DOCUMENT_BYTES
) -> bytes:
    """Bytes of an ``http(s)://`` URL or a local file (``file://`` or a path), at most ``max_bytes``.

    Args:
        source: URL or path.
        what: What the document is, for messages (``"the earthquake feed "``).
        timeout_s: Network timeout.
        max_bytes: Refuse anything larger (from its ``Content-Length`` or while reading).

    Raises:
        FeedUnreachableError: The URL cannot be fetched (connection refused, timeout, HTTP error).
        HostNotFoundError: The URL's host does not resolve (not worth retrying).
        FeedError: The file does not exist, or it is larger than ``max_bytes``.
    """
    if is_remote(source):
        try:
            with _OPENER.open(source, timeout=timeout_s) as resp:
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > max_bytes:
                    raise _too_large(what, source, max_bytes)
                body = bytes(resp.read(max_bytes + 1))
        except urllib.error.HTTPError as exc:  # its response object does not pickle: no chaining
            raise FeedUnreachableError(f"cannot read {what}{source}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, socket.gaierror):
                host = urllib.parse.urlsplit(source).hostname
                raise HostNotFoundError(
                    f"cannot read {what}{source}: host {host} not found (no network, or a wrong URL?)"
                ) from None
            raise FeedUnreachableError(f"cannot read {what}{source}: {reason}") from exc
        if len(body) > max_bytes:
            raise _too_large(what, source, max_bytes)
        return body
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise FeedError(f"{what or 'file '}{path} does not exist")
    if path.stat().st_size > max_bytes:
        raise _too_large(what, str(path), max_bytes)
    return path.read_bytes()


def read_feed(source: str) -> dict[str, Any]:
    """Read a feed document from an ``http(s)://`` URL or a local file.

    Raises:
        FeedUnreachableError: The URL cannot be fetched (connection refused, timeout, HTTP error).
        FeedError: The file is missing or the document is not JSON.
    """
    body = read_bytes(source, "the earthquake feed ")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise FeedError(f"earthquake feed {source} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise FeedError(f"earthquake feed {source} is not a GeoJSON FeatureCollection")
    return doc


def parse_feed(doc: dict[str, Any], source: str = "") -> list[Earthquake]:
    """The earthquakes of a feed document, one per id (the most recently updated), oldest first.

    Features that are not earthquakes (``properties.type`` such as ``quarry blast``) or lack a
    magnitude or a point geometry are left out, and so are ids that are not safe file names
    (:data:`~pipeline.event.config.SAFE_NAME`: an id becomes a directory of the output). A
    ``detail`` link that a remote feed (``source`` an ``http(s)`` URL) gives as a local path or
    another scheme is dropped (:func:`check_link`).
    """
    try:
        return _parse_features(doc, source)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise FeedError(f"earthquake feed {source} has a malformed feature ({exc!r})") from None


def _parse_features(doc: dict[str, Any], source: str) -> list[Earthquake]:
    latest: dict[str, tuple[int, Earthquake]] = {}
    for feature in doc.get("features", []):
        props = feature.get("properties") or {}
        coords = (feature.get("geometry") or {}).get("coordinates") or []
        if props.get("type", "earthquake") != "earthquake" or props.get("mag") is None or len(coords) < 2:
            continue
        if not SAFE_NAME.match(str(feature.get("id"))):
            continue
        detail = str(props.get("detail") or "")
        if detail and is_remote(source) and not is_remote(detail):
            detail = ""
        quake = Earthquake(
            id=str(feature["id"]),
            magnitude=float(props["mag"]),
            lon=float(coords[0]),
            lat=float(coords[1]),
            depth_km=float(coords[2]) if len(coords) > 2 and coords[2] is not None else 0.0,
            time=dt.datetime.fromtimestamp(int(props["time"]) / 1000, tz=dt.UTC),
            place=str(props.get("place") or ""),
            detail=detail,
        )
        updated = int(props.get("updated") or props["time"])
        if quake.id not in latest or updated >= latest[quake.id][0]:
            latest[quake.id] = (updated, quake)
    return sorted((q for _, q in latest.values()), key=lambda q: (q.time, q.id))


@dataclass(frozen=True)
class ShakeMapRef:
    """Where one ShakeMap version's grid is.

    Attributes:
        event_id: The event id the product belongs to.
        version: ``properties.version`` of the product (a string, as ComCat gives it).
        source: Product source (``us``, ``atlas``, ...).
        grid_url: URL (or path) of its ``grid.xml``.
        update_time: Product update time (epoch ms).
    """

    event_id: str
    version: str
    source: str
    grid_url: str
    update_time: int

    @property
    def key(self) -> str:
        """The deduplication key ``<event id>:<source>:<version>``."""
        return f"{self.event_id}:{self.source}:{self.version}"


def read_detail(source: str) -> dict[str, Any]:
    """The detail document (a GeoJSON Feature with ``properties.products``).

    Raises:
        FeedError: Not JSON, or not a detail document.
    """
    try:
        doc = json.loads(read_bytes(source))
    except ValueError as exc:
        raise FeedError(f"event detail {source} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or "products" not in (doc.get("properties") or {}):
        raise FeedError(f"event detail {source} is not a ComCat detail document (no properties.products)")
    return doc


def shakemap_ref(detail: dict[str, Any], source: str = "") -> ShakeMapRef | None:
    """The preferred ShakeMap product with a grid.xml, or None when the event has none.

    Args:
        detail: The detail document (:func:`read_detail`).
        source: Where it was read; a remote document's grid URL must be ``http(s)``.

    Raises:
        FeedError: The product is malformed, its source or version is not a safe file name
            (both name the grid's copy), or a remote document points to a local grid.
    """
    try:
        products = [
            p
            for p in detail["properties"]["products"].get("shakemap", [])
            if GRID_KEY in p.get("contents", {})
        ]
        if not products:
            return None
        best = max(
            products, key=lambda p: (int(p.get("preferredWeight") or 0), int(p.get("updateTime") or 0))
        )
        ref = ShakeMapRef(
            event_id=str(detail.get("id") or best.get("code")),
            version=str((best.get("properties") or {}).get("version", "0")),
            source=str(best.get("source", "")),
            grid_url=str(best["contents"][GRID_KEY]["url"]),
            update_time=int(best.get("updateTime") or 0),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FeedError(f"event detail {source} has a malformed ShakeMap product ({exc!r})") from None
    try:
        safe_name(ref.source, "ShakeMap source")
        safe_name(ref.version, "ShakeMap version")
    except UserError as exc:
        raise FeedError(f"event detail {source}: {exc}") from None
    check_link(ref.grid_url, source, "ShakeMap grid URL")
    return ref
