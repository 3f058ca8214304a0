"""A STAC API searched with pystac-client (pagination included).

Cloud cover is filtered server-side with the ``query`` extension where the API conforms to it
(Planetary Computer does) and always re-checked client-side, so a server without it
(``rustac serve``'s in-memory backend) gives the same answer. CQL2 ``filter`` is not used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pystac

from pipeline.catalog.protocol import (
    CatalogError,
    Signer,
    date_window,
    matches,
    one_line_reason,
    parse_item,
    sort_key,
)
from pipeline.catalog.signing import sign_items
from pipeline.geo import validate_bbox


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
                raise CatalogError(f"cannot reach STAC API at {self.url}: {one_line_reason(exc)}") from exc
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
                text = one_line_reason(exc)
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
            raise CatalogError(f"cannot reach STAC API at {self.url}: {one_line_reason(exc)}") from exc
        items = [parse_item(d, where) for d in dicts]
        kept = [it for it in items if matches(it, box_, window, max_cloud)]
        kept.sort(key=sort_key)
        return sign_items(kept, self.signer) if self.signer is not None else kept
