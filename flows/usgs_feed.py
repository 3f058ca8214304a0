"""The USGS earthquake GeoJSON summary feed: read it from a URL or a file, parse its events.

Format: https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php, a FeatureCollection
whose features have ``id``, ``geometry.coordinates = [lon, lat, depth_km]`` and properties
``mag``, ``place``, ``time`` (epoch milliseconds, UTC), ``updated``, ``type``, ``tsunami``, ...
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

#: M4.5+ earthquakes of the past day (updated every minute by USGS).
DEFAULT_FEED_URL = "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/4.5_day.geojson"
FEED_TIMEOUT_S = 30.0


class FeedError(UserError):
    """The feed cannot be read or is not a USGS GeoJSON summary feed."""


class FeedUnreachableError(FeedError):
    """A network failure reading the feed (worth retrying)."""


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


def read_feed(source: str, timeout_s: float = FEED_TIMEOUT_S) -> dict[str, Any]:
    """Read a feed document from an ``http(s)://`` URL or a local file.

    Raises:
        FeedUnreachableError: The URL cannot be fetched (connection refused, timeout, HTTP error).
        FeedError: The file is missing or the document is not JSON.
    """
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # its response object does not pickle: no chaining
            raise FeedUnreachableError(
                f"cannot read the earthquake feed {source}: HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FeedUnreachableError(f"cannot read the earthquake feed {source}: {reason}") from exc
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FeedError(f"earthquake feed file {path} does not exist")
        body = path.read_bytes()
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise FeedError(f"earthquake feed {source} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise FeedError(f"earthquake feed {source} is not a GeoJSON FeatureCollection")
    return doc


def parse_feed(doc: dict[str, Any]) -> list[Earthquake]:
    """The earthquakes of a feed document, one per id (the most recently updated), oldest first.

    Features that are not earthquakes (``properties.type`` such as ``quarry blast``) or lack a
    magnitude or a point geometry are left out.
    """
    latest: dict[str, tuple[int, Earthquake]] = {}
    for feature in doc.get("features", []):
        props = feature.get("properties") or {}
        coords = (feature.get("geometry") or {}).get("coordinates") or []
        if props.get("type", "earthquake") != "earthquake" or props.get("mag") is None or len(coords) < 2:
            continue
        quake = Earthquake(
            id=str(feature["id"]),
            magnitude=float(props["mag"]),
            lon=float(coords[0]),
            lat=float(coords[1]),
            depth_km=float(coords[2]) if len(coords) > 2 and coords[2] is not None else 0.0,
            time=dt.datetime.fromtimestamp(int(props["time"]) / 1000, tz=dt.UTC),
            place=str(props.get("place") or ""),
            detail=str(props.get("detail") or ""),
        )
        updated = int(props.get("updated") or props["time"])
        if quake.id not in latest or updated >= latest[quake.id][0]:
            latest[quake.id] = (updated, quake)
    return sorted((q for _, q in latest.values()), key=lambda q: (q.time, q.id))
