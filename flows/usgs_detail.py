"""The ComCat event *detail* document and its ShakeMap product: which version, where its grid is.

The feed's ``properties.detail`` is the URL of the event's detail GeoJSON; its
``properties.products.shakemap`` lists ShakeMap products (several sources, e.g. ``us`` and
``atlas``), each with ``properties.version``, ``updateTime``, ``preferredWeight`` and
``contents["download/grid.xml"].url``. We take the preferred one (highest ``preferredWeight``,
then the newest ``updateTime``), as ComCat's own clients do.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.usgs_feed import FeedError, FeedUnreachableError

DETAIL_TIMEOUT_S = 30.0
GRID_KEY = "download/grid.xml"


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


def read_bytes(source: str, timeout_s: float = DETAIL_TIMEOUT_S) -> bytes:
    """Bytes of an ``http(s)://`` URL or a local file.

    Raises:
        FeedUnreachableError: The URL cannot be fetched (worth retrying).
        FeedError: The file does not exist.
    """
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout_s) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            raise FeedUnreachableError(f"cannot read {source}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FeedUnreachableError(f"cannot read {source}: {reason}") from exc
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise FeedError(f"{path} does not exist")
    return path.read_bytes()


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


def shakemap_ref(detail: dict[str, Any]) -> ShakeMapRef | None:
    """The preferred ShakeMap product with a grid.xml, or None when the event has none."""
    products = [
        p for p in detail["properties"]["products"].get("shakemap", []) if GRID_KEY in p.get("contents", {})
    ]
    if not products:
        return None
    best = max(products, key=lambda p: (int(p.get("preferredWeight") or 0), int(p.get("updateTime") or 0)))
    return ShakeMapRef(
        event_id=str(detail.get("id") or best.get("code")),
        version=str((best.get("properties") or {}).get("version", "0")),
        source=str(best.get("source", "")),
        grid_url=str(best["contents"][GRID_KEY]["url"]),
        update_time=int(best.get("updateTime") or 0),
    )
