"""Write every product of a finished sweep: polygons, COG, pyramid, quicklook, STAC Item.

Each file (or the pyramid's directory) is written under a temporary name next to its final
path and renamed into place only when complete, so an interrupted export never leaves a
truncated product behind, and re-running it replaces the products whole.

A folder of products is complete only once its completion record (``export.json``, written
last and fsynced; :func:`products_complete`) is there: an export removes the record before it
writes anything, so a folder an interrupted export left with some of its files never looks
complete, and readers (the flows, a re-run) check the record, not the files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import UserError
from pipeline.products.cog import write_cog
from pipeline.products.defaults import DEFAULT_MIN_AREA_M2, DEFAULT_WINDOW
from pipeline.products.polygons import landslide_polygons, write_geojson, write_geoparquet
from pipeline.products.pyramid import write_pyramid
from pipeline.products.quicklook import write_quicklook
from pipeline.products.stac_item import build_item, update_collection, write_item
from pipeline.store.atomic import atomic_output, fsync_path, write_atomic
from pipeline.store.reader import open_result, store_threshold

#: Product key -> file name inside the output directory.
FILE_NAMES = {
    "polygons": "landslides.parquet",
    "polygons_geojson": "landslides.geojson",
    "cog": "probability.tif",
    "pyramid": "pyramid.zarr",
    "quicklook": "quicklook.png",
    "item": "item.json",
    "complete": "export.json",
}
#: Format tag of the completion record.
RECORD_FORMAT = "landslide-products/1"


def products_complete(out_dir: str | os.PathLike[str]) -> bool:
    """Whether ``out_dir`` holds a complete export: its record is there and names files that exist."""
    record = Path(out_dir) / FILE_NAMES["complete"]
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
        return False
    files = doc.get("files")
    return isinstance(files, dict) and all((Path(out_dir) / str(n)).exists() for n in files.values())


@dataclass
class ExportSummary:
    """What an export wrote."""

    paths: dict[str, Path]
    polygon_count: int
    area_km2: float
    threshold: float
    item_id: str
    collection: Path | None = None
    notes: list[str] = field(default_factory=list)


def export_products(
    store_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    min_area_m2: float = DEFAULT_MIN_AREA_M2,
    threshold: float | None = None,
    labels_path: str | os.PathLike[str] | None = None,
    collection_path: str | os.PathLike[str] | None = None,
    window: int = DEFAULT_WINDOW,
) -> dict[str, Path]:
    """Write all products of a complete result store into ``out_dir``.

    Args:
        store_path: The sweep's Zarr result store.
        out_dir: Output directory (created if needed).
        min_area_m2: Minimum landslide polygon area, square metres.
        threshold: Probability threshold; the store's ``landslide:threshold`` if None.
        labels_path: Optional reference mask GeoTIFF shown beside the quicklook.
        collection_path: Optional series ``collection.json`` to add this sweep's Item to.
        window: Window side (pixels) for the polygon and COG passes.

    Returns:
        Product key -> path, for the keys in :data:`FILE_NAMES` plus ``zarr`` (the store) and
        ``collection`` when a collection was updated.

    Raises:
        UserError: The store is missing, unreadable or not complete, or an argument is invalid.

    """
    return export_summary(
        store_path,
        out_dir,
        min_area_m2=min_area_m2,
        threshold=threshold,
        labels_path=labels_path,
        collection_path=collection_path,
        window=window,
    ).paths


def export_summary(
    store_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    min_area_m2: float = DEFAULT_MIN_AREA_M2,
    threshold: float | None = None,
    labels_path: str | os.PathLike[str] | None = None,
    collection_path: str | os.PathLike[str] | None = None,
    window: int = DEFAULT_WINDOW,
) -> ExportSummary:
    """Do :func:`export_products` and return the paths with the polygon count and area."""
    if min_area_m2 < 0:
        raise UserError(f"--min-area must be >= 0, got {min_area_m2}")
    if labels_path is not None and not Path(labels_path).is_file():
        raise UserError(f"no reference mask at {labels_path}")
    ds = open_result(store_path)
    thr = store_threshold(ds, threshold)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out}: {exc.strerror}") from exc
    paths = {key: out / name for key, name in FILE_NAMES.items()}
    if paths["complete"].exists():  # from here until the new record, the folder is not complete
        paths["complete"].unlink()
        fsync_path(out)

    gdf = landslide_polygons(ds, threshold=thr, min_area_m2=min_area_m2, window=window)
    with atomic_output(paths["polygons"]) as tmp:
        write_geoparquet(gdf, tmp)
    with atomic_output(paths["polygons_geojson"]) as tmp:
        write_geojson(gdf, tmp)
    with atomic_output(paths["cog"]) as tmp:
        write_cog(ds, tmp, window=window)
    with atomic_output(paths["pyramid"]) as tmp:
        write_pyramid(ds, tmp)
    with atomic_output(paths["quicklook"]) as tmp:
        write_quicklook(ds, tmp, labels_path, threshold=thr)

    area_km2 = float(gdf["area_m2"].sum()) / 1e6
    assets = {k: paths[k] for k in ("polygons", "polygons_geojson", "cog", "pyramid", "quicklook")}
    assets["zarr"] = Path(store_path)
    item = build_item(ds, assets, out, threshold=thr, polygon_count=len(gdf), area_km2=area_km2)
    write_item(item, paths["item"])
    result = {**paths, "zarr": Path(store_path)}
    coll = None
    if collection_path is not None:
        coll = Path(collection_path)
        update_collection(coll, item)
        result["collection"] = coll
    record = {
        "format": RECORD_FORMAT, "store": str(Path(store_path).resolve()), "item_id": item.id,
        "threshold": thr, "polygon_count": len(gdf), "area_km2": area_km2,
        "files": {k: n for k, n in FILE_NAMES.items() if k != "complete"},
    }  # fmt: skip
    write_atomic(paths["complete"], json.dumps(record, indent=2, sort_keys=True) + "\n")
    return ExportSummary(
        paths=result,
        polygon_count=len(gdf),
        area_km2=area_km2,
        threshold=thr,
        item_id=item.id,
        collection=coll,
    )
