"""``landslide export``: products from a finished sweep's result store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.products.defaults import DEFAULT_MIN_AREA_M2


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand to the ``landslide`` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write polygons, COG, web pyramid, quicklook and STAC item from a result store",
        description="Write the products of a complete sweep: landslide polygons (GeoParquet in the "
        "sweep's CRS, GeoJSON in WGS84), a Cloud-Optimized GeoTIFF of the probability, a Web "
        "Mercator Zarr pyramid, a quicklook PNG and a STAC Item (optionally added to a series "
        "Collection).",
    )
    p.add_argument("store", metavar="ZARR", help="the sweep's result store")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--min-area",
        type=float,
        default=DEFAULT_MIN_AREA_M2,
        metavar="M2",
        help=f"minimum polygon area in square metres (default {DEFAULT_MIN_AREA_M2:g})",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="probability threshold (default: the store's)",
    )
    p.add_argument("--labels", default=None, metavar="TIF", help="reference mask shown beside the quicklook")
    p.add_argument(
        "--collection",
        default=None,
        metavar="JSON",
        help="series collection.json to add this sweep's item to (created if absent)",
    )
    p.add_argument(
        "--web-map",
        action="store_true",
        help="also write DIR/webmap/: a static web map (open index.html; see docs/webmap.md)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline.products.export import export_summary  # heavy imports only when used

    s = export_summary(
        args.store,
        args.out,
        min_area_m2=args.min_area,
        threshold=args.threshold,
        labels_path=args.labels,
        collection_path=args.collection,
    )
    print(
        f"{s.polygon_count} landslide polygon(s), {s.area_km2:.3f} km2 at threshold {s.threshold:g} "
        f"(item {s.item_id})"
    )
    for key, path in s.paths.items():
        print(f"  {key:17s} {path}")
    if args.web_map:
        from pipeline.products.webmap import write_web_map

        index = write_web_map(
            Path(args.out) / "webmap", store=args.store, polygons=s.paths["polygons_geojson"]
        )
        print(f"  {'web_map':17s} {index}")
    return 0
