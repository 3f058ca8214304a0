"""Change evidence beside the model: NDVI before and after the event, per pixel and per polygon.

A fresh landslide strips vegetation: NDVI (``(B08 - B04) / (B08 + B04)``) drops from the
pre-event to the post-event composite. Scars that were already bare before the event (quarries,
riverbeds, old slides, bare rock) have a low ``ndvi_pre`` and no drop; the model may still flag
them, because it sees one post-event image. So each polygon carries ``ndvi_pre``, ``ndvi_drop``
(pre minus post) and its mean slope, and a responder can drop those with, say,
``ndvi_pre < 0.3 or ndvi_drop < 0.1``.

What it removes: false positives on surfaces that were bare before the event. What it cannot:
vegetation loss from other causes between the two composites (harvest, fire, snow, season: keep
the pre-event window short and close to the event), landslides on ground that was bare already
(no drop to see), and anything under persistent cloud in either window.

Both composites are the cube's (:mod:`pipeline.cube`): Sentinel-2 L2A red and NIR loaded on the
store's own grid (a version's mosaic), harmonised for processing baseline 04.00, SCL-masked and dilated, the
per-pixel median of clear observations. They are written beside the store as
``<store>-ndvi.zarr`` (``ndvi_pre``, ``ndvi_post``, ``ndvi_drop``; float32, NaN where a
composite has no clear pixel), not into the store itself.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

#: Days before the event searched for the pre-event composite (default).
DEFAULT_PRE_DAYS = 60
RED, NIR = "B04", "B08"


def ndvi_composite(items: list[Any], geobox: Any, chunk: int = 1024) -> Any:
    """Median-of-clear NDVI of ``items`` on ``geobox`` (lazy DataArray; NaN where never clear)."""
    from pipeline import cube

    raw = cube.load_s2(items, geobox, chunk, [RED, NIR])
    harmonised = cube.harmonise(raw, items)
    comp = cube.composite(harmonised[[RED, NIR]], cube.clear_mask(harmonised["SCL"]))
    red, nir = comp[RED].astype("float32"), comp[NIR].astype("float32")
    total = nir + red
    return ((nir - red) / total.where(total > 0)).astype("float32")


def store_geobox(store_path: Path) -> Any:
    """The grid of a result store (its CRS, transform and shape)."""
    import rioxarray  # noqa: F401 - the .rio accessor
    from odc.geo.geobox import GeoBox

    from pipeline.store import open_result

    ds = open_result(store_path)
    return GeoBox((ds.sizes["y"], ds.sizes["x"]), ds.rio.transform(), ds.rio.crs)


def evidence_path(store_path: Path) -> Path:
    """Where the evidence of a store (a version's mosaic) goes: ``<store stem>-ndvi.zarr`` beside it."""
    return store_path.with_name(store_path.stem + "-ndvi.zarr")


def write_evidence(
    store_path: Path,
    catalog_source: str | None,
    event_time: dt.datetime,
    post_window: tuple[dt.date, dt.date],
    max_cloud: float,
    pre_days: int = DEFAULT_PRE_DAYS,
) -> Path | None:
    """Write ``<store>-ndvi.zarr`` beside a store; None when no pre-event scene exists.

    Args:
        store_path: A complete result store (a version's mosaic).
        catalog_source: STAC API URL or local catalog.
        event_time: The event (pre-event scenes end the day before it).
        post_window: The version's post-event window.
        max_cloud: Scene cloud cover limit.
        pre_days: Length of the pre-event window in days.
    """
    import xarray as xr

    from pipeline import catalog
    from pipeline.cube.items import S2_COLLECTION

    gbox = store_geobox(store_path)
    bb = gbox.extent.to_crs("EPSG:4326").boundingbox
    bbox = (bb.left, bb.bottom, bb.right, bb.top)
    cat = catalog.open_catalog(catalog_source)
    sign = getattr(cat, "signer", None)
    day = event_time.astimezone(dt.UTC).date()
    pre = cat.search(
        S2_COLLECTION, bbox, day - dt.timedelta(days=pre_days), day - dt.timedelta(days=1), max_cloud
    )
    post = cat.search(S2_COLLECTION, bbox, post_window[0], post_window[1], max_cloud)
    if not pre or not post:
        return None
    ndvi_pre = ndvi_composite(catalog.sign_items(pre, sign), gbox)
    ndvi_post = ndvi_composite(catalog.sign_items(post, sign), gbox)
    ds = xr.Dataset({"ndvi_pre": ndvi_pre, "ndvi_post": ndvi_post, "ndvi_drop": ndvi_pre - ndvi_post})
    ds = ds.drop_vars([c for c in ds.coords if c not in ("y", "x", "spatial_ref")])
    ds.attrs = {
        "landslide:pre_scenes": sorted(it.id for it in pre),
        "landslide:post_scenes": sorted(it.id for it in post),
        "landslide:pre_window": [
            (day - dt.timedelta(days=pre_days)).isoformat(),
            (day - dt.timedelta(days=1)).isoformat(),
        ],
    }
    out = evidence_path(store_path)
    ds.to_zarr(str(out), mode="w", consolidated=True, zarr_format=2)
    return out


def annotate(polygons: Any, evidence: Path) -> Any:
    """Add ``ndvi_pre``, ``ndvi_post`` and ``ndvi_drop`` (means over each polygon) to polygons.

    ``polygons`` is a GeoDataFrame in any CRS; it is compared on the evidence's grid.
    """
    import rioxarray  # noqa: F401 - the .rio accessor
    import xarray as xr
    from rasterio.features import rasterize

    ds = xr.open_zarr(str(evidence), decode_coords="all")
    crs, transform = ds.rio.crs, ds.rio.transform()
    shape = (ds.sizes["y"], ds.sizes["x"])
    out = polygons.copy()
    if len(out) == 0:
        for name in ("ndvi_pre", "ndvi_post", "ndvi_drop"):
            out[name] = np.array([], dtype=np.float64)
        return out
    local = out.to_crs(crs)
    labels = rasterize(
        ((g, i + 1) for i, g in enumerate(local.geometry)),
        out_shape=shape,
        transform=transform,
        dtype="int32",
    )
    for name in ("ndvi_pre", "ndvi_post", "ndvi_drop"):
        values = np.asarray(ds[name].values, dtype=np.float64)
        ok = (labels > 0) & np.isfinite(values)
        sums = np.bincount(labels[ok], weights=values[ok], minlength=len(out) + 1)
        counts = np.bincount(labels[ok], minlength=len(out) + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (sums / counts)[1:]
    return out
