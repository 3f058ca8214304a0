"""Inputs of the cube: collections, item checks, the read policy and the pre-flight of headers."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import pystac
import rasterio
from pyproj import Transformer

from pipeline.bands import S2_L2A_ASSETS
from pipeline.errors import UserError

#: STAC collection ids accepted for each input.
S2_COLLECTION: Final[str] = "sentinel-2-l2a"
DEM_COLLECTION: Final[str] = "cop-dem-glo-30"
#: Asset keys (Planetary Computer naming).
SCL_ASSET: Final[str] = "SCL"
DEM_ASSET: Final[str] = "data"
#: Digital number that marks "no data" in L2A COGs (and in the loaded uint16 cube).
S2_NODATA: Final[int] = 0
#: Largest NaN gap (pixels of the output grid, from the gap edge) that the DEM seam fill closes.
DEM_FILL_PX: Final[int] = 3

#: Data types a well-formed item may declare in ``raster:bands`` (checked when declared).
_S2_DTYPES: Final[frozenset[str]] = frozenset({"uint16", "uint8"})
_DEM_DTYPES: Final[frozenset[str]] = frozenset({"float32"})


@functools.lru_cache(maxsize=64)
def transformer(src_crs: str, dst_crs: str) -> Transformer:
    """A pyproj transformer (x/y order) between two CRSs, made once per process (making one costs ms)."""
    return Transformer.from_crs(src_crs, dst_crs, always_xy=True)


class CubeError(UserError):
    """Inputs the cube cannot be built from (wrong collection, missing asset, unexpected CRS/dtype)."""


# --------------------------------------------------------------------------------------------
# Item checks
# --------------------------------------------------------------------------------------------


def _declared_epsg(item: pystac.Item, asset: str) -> int | None:
    """EPSG code an item declares for an asset (asset-level, then item-level), or None."""
    for fields in (item.assets[asset].extra_fields, item.properties):
        if fields.get("proj:epsg") is not None:
            return int(fields["proj:epsg"])
        code = fields.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
    return None


def _declared_dtype(item: pystac.Item, asset: str) -> str | None:
    """``raster:bands[0].data_type`` of an asset, or None when not declared."""
    bands = item.assets[asset].extra_fields.get("raster:bands") or []
    return bands[0].get("data_type") if bands else None


def _check_items(
    items: Sequence[pystac.Item],
    collection: str,
    assets: Sequence[str],
    epsg_ok: Callable[[int], bool],
    dtypes: frozenset[str],
) -> None:
    """Raise :class:`CubeError` naming the first item/asset that does not fit the cube."""
    if not items:
        raise CubeError(f"no {collection} items to build the cube from")
    for item in items:
        if item.collection_id != collection:
            raise CubeError(f"item {item.id}: collection {item.collection_id!r}, expected {collection!r}")
        for asset in assets:
            if asset not in item.assets:
                raise CubeError(f"item {item.id}: asset {asset!r} missing (has {sorted(item.assets)})")
            epsg = _declared_epsg(item, asset)
            if epsg is not None and not epsg_ok(epsg):
                raise CubeError(f"item {item.id}: asset {asset!r} has unexpected CRS EPSG:{epsg}")
            dtype = _declared_dtype(item, asset)
            if dtype is not None and dtype not in dtypes:
                raise CubeError(f"item {item.id}: asset {asset!r} has unexpected data type {dtype!r}")


def check_s2_items(items: Sequence[pystac.Item], bands: Sequence[str] = S2_L2A_ASSETS) -> None:
    """Check Sentinel-2 L2A items: collection, the bands + SCL present, UTM CRS, integer DNs.

    Raises:
        CubeError: One line naming the offending item and asset.

    """
    _check_items(items, S2_COLLECTION, [*bands, SCL_ASSET], _is_utm_epsg, _S2_DTYPES)


def check_dem_items(items: Sequence[pystac.Item]) -> None:
    """Check Copernicus DEM items: collection, asset ``data``, EPSG:4326 (or UTM), float32.

    Planetary Computer's tiles are EPSG:4326; a UTM DEM (the embedded demo's 10 m DEM) is
    accepted too, since the cube reprojects any DEM onto the sweep's grid.

    Raises:
        CubeError: One line naming the offending item and asset.

    """
    _check_items(items, DEM_COLLECTION, [DEM_ASSET], _is_dem_epsg, _DEM_DTYPES)


def _is_dem_epsg(epsg: int) -> bool:
    """Tell whether a DEM's CRS is accepted: EPSG:4326 or a WGS 84 / UTM zone."""
    return epsg == 4326 or _is_utm_epsg(epsg)


def _is_utm_epsg(epsg: int) -> bool:
    """Tell whether ``epsg`` is WGS 84 / UTM north (32601..32660) or south (32701..32760)."""
    return 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760


# --------------------------------------------------------------------------------------------
# Reading policy and pre-flight
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadPolicy:
    """How hard to try reading a remote COG before giving up on it.

    GDAL does the retrying (``GDAL_HTTP_MAX_RETRY``, ``GDAL_HTTP_RETRY_DELAY``): on HTTP 429,
    500, 502, 503 and 504 it waits ``retry_delay_s`` and then doubles the wait (with jitter) for
    each further attempt, so ``max_retry = 5, retry_delay_s = 1`` tolerates about 30 s of
    outage. The same options are used by the pre-flight (in this process) and by the odc-stac
    reads (on the Dask workers, through the rasterio environment odc-stac captures).

    Attributes:
        max_retry: Retries after the first attempt of every HTTP request.
        retry_delay_s: First wait between attempts (seconds; doubles each retry).
        timeout_s: Timeout of one HTTP request (seconds).
        threads: Parallel header reads in :func:`preflight`.
    """

    max_retry: int = 5
    retry_delay_s: float = 1.0
    timeout_s: float = 60.0
    threads: int = 8

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration options for reads under this policy."""
        return {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": str(self.max_retry),
            "GDAL_HTTP_RETRY_DELAY": str(self.retry_delay_s),
            "GDAL_HTTP_TIMEOUT": str(math.ceil(self.timeout_s)),
        }


#: The default policy of sweeps.
READ_POLICY: Final[ReadPolicy] = ReadPolicy()


def _options(gdal_options: Mapping[str, str] | None) -> dict[str, str]:
    return dict(READ_POLICY.gdal_options() if gdal_options is None else gdal_options)


_QUERY = re.compile(r"(?P<url>(?:https?|s3|gs|az)://[^\s?'\"]+)\?[^\s'\"]*")


def redact(text: str) -> str:
    """Remove query strings (where signatures and tokens live) from every URL in ``text``."""
    return _QUERY.sub(lambda m: m.group("url"), text)


@dataclass(frozen=True)
class SkippedScene:
    """An item left out of the cube because one of its assets could not be read.

    Attributes:
        id: Item id.
        collection: Its collection.
        reason: One line: the asset and the error, URLs without their query strings.
    """

    id: str
    collection: str
    reason: str


def _header(href: str, options: Mapping[str, str]) -> tuple[int | None, str]:
    """Open one asset and return ``(EPSG or None, dtype of band 1)`` (header only)."""
    with rasterio.Env(**options), rasterio.open(href) as src:
        return (src.crs.to_epsg() if src.crs else None), str(src.dtypes[0])


#: The function that opens an asset's header (a seam: tests may swap it, the sweep never does).
HeaderReader = Callable[[str, Mapping[str, str]], tuple[int | None, str]]


def preflight(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    epsg_ok: Callable[[int], bool],
    dtypes: frozenset[str],
    policy: ReadPolicy = READ_POLICY,
    reader: HeaderReader = _header,
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """Open the header of every asset of every item (with retries) before a cube is built.

    An item with an asset that stays unreadable after the policy's retries is **skipped** (left
    out, reported); an asset that reads but whose file has an unexpected CRS or data type is an
    input error. Header reads are cheap (one or two HTTP range requests each) and run
    ``policy.threads`` at a time.

    Args:
        items: Items (signed where needed) to check.
        assets: Asset keys to open in each item.
        epsg_ok: Accepts the file's EPSG code.
        dtypes: Accepted data types of band 1.
        policy: Retries and timeouts.
        reader: Opens one header (the seam).

    Returns:
        ``(readable items in input order, skipped scenes)``.

    Raises:
        CubeError: A readable asset with the wrong CRS or data type.
    """
    options = policy.gdal_options()
    jobs = [(item, key) for item in items for key in assets if key in item.assets]

    def check(job: tuple[pystac.Item, str]) -> tuple[str, str | None]:
        item, key = job
        try:
            epsg, dtype = reader(item.assets[key].href, options)
        except (rasterio.errors.RasterioError, OSError) as exc:
            return item.id, redact(f"asset {key!r} unreadable: {' '.join(str(exc).split())}")[:300]
        if epsg is not None and not epsg_ok(epsg):
            raise CubeError(f"item {item.id}: asset {key!r} file has unexpected CRS EPSG:{epsg}")
        if epsg is None:
            raise CubeError(f"item {item.id}: asset {key!r} file has no CRS")
        if dtype not in dtypes:
            raise CubeError(f"item {item.id}: asset {key!r} file has unexpected data type {dtype!r}")
        return item.id, None

    with ThreadPoolExecutor(max(1, policy.threads)) as pool:
        results = list(pool.map(check, jobs))
    reasons: dict[str, str] = {}
    for item_id, reason in results:
        if reason is not None:
            reasons.setdefault(item_id, reason)
    ok = [it for it in items if it.id not in reasons]
    skipped = [SkippedScene(it.id, str(it.collection_id), reasons[it.id]) for it in items if it.id in reasons]
    return ok, skipped


def preflight_s2(
    items: Sequence[pystac.Item], bands: Sequence[str], policy: ReadPolicy = READ_POLICY
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """:func:`preflight` for Sentinel-2 L2A items: bands + SCL, UTM, integer DNs."""
    return preflight(items, [*bands, SCL_ASSET], _is_utm_epsg, _S2_DTYPES, policy)


def preflight_dem(
    items: Sequence[pystac.Item], policy: ReadPolicy = READ_POLICY
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """:func:`preflight` for DEM tiles: asset ``data``, EPSG:4326 or UTM, float32."""
    return preflight(items, [DEM_ASSET], _is_dem_epsg, _DEM_DTYPES, policy)
