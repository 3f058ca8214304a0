"""Signing asset hrefs, and keeping signatures out of logs and records.

Planetary Computer SAS tokens last about 45 minutes: search once, then sign fresh copies
(:func:`sign_items`) just before each region batch is read. Signed hrefs must never be logged or
persisted: record :func:`strip_signature` of an href instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pystac

from pipeline.catalog.protocol import Signer

#: The Planetary Computer STAC API, the default catalog.
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
_PC_HOST = "planetarycomputer.microsoft.com"

#: Query parameters that carry a signature (Azure SAS, generic tokens, AWS and GCS presigning).
_SIGNATURE_KEYS = frozenset(
    {"st", "se", "sp", "sv", "sr", "sig", "skoid", "sktid", "skt", "ske", "sks", "skv", "spr", "token"}
)
_SIGNATURE_PREFIXES = ("x-amz-", "x-goog-")


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


def is_planetary_computer(url: str) -> bool:
    """Whether ``url`` points at the Planetary Computer (whose assets need SAS signing)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == _PC_HOST or host.endswith("." + _PC_HOST)
