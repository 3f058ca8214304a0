"""Items from a local STAC file, filtered in Python (offline; the demo's catalog).

Accepted files: a FeatureCollection / ItemCollection, a JSON list of items, a single item, or a
static ``catalog.json`` / ``collection.json`` (walked recursively). Relative asset hrefs become
absolute paths.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pystac

from pipeline.catalog.protocol import (
    CatalogError,
    date_window,
    matches,
    one_line_reason,
    parse_item,
    sort_key,
)
from pipeline.geo import validate_bbox


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
            raise CatalogError(f"cannot read STAC file {self.path}: {one_line_reason(exc)}") from exc
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
            item = parse_item(d, where)
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
            raise CatalogError(f"malformed static STAC catalog {self.path}: {one_line_reason(exc)}") from exc
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
