"""``landslide sweep`` and ``landslide demo``: parse, run, report."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from pipeline.cluster import ClusterSpec
from pipeline.errors import UserError
from pipeline.sweep import SweepConfig, SweepSummary, run_sweep, summary_json


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output Zarr store")
    p.add_argument(
        "--block", type=int, default=2048, help="block size in pixels, a multiple of 128 (default 2048)"
    )
    p.add_argument("--overlap", type=int, default=8, help="pixels shared by neighbouring chips (default 8)")
    p.add_argument("--batch-size", type=int, default=8, help="chips per forward pass (default 8)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, help="local worker processes (default: min(2, cores))")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")
    p.add_argument("--zarr-format", type=int, default=2, choices=[2, 3], help="Zarr format (2 reads in GDAL)")
    p.add_argument("--overwrite", action="store_true", help="replace a complete store at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", type=Path, help="also write the summary as JSON here")
    p.add_argument(
        "--export", type=Path, metavar="DIR",
        help="after the sweep, write the products (polygons, COG, STAC item, pyramid, quicklook) here",
    )  # fmt: skip


def register(sub: Any) -> None:
    """Add ``sweep`` and ``demo``."""
    p = sub.add_parser("sweep", help="map landslides over an area after an event")
    p.add_argument(
        "--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"), help="WGS84 bbox"
    )
    p.add_argument("--start", type=_date, required=True, help="first day of the post-event window")
    p.add_argument("--end", type=_date, required=True, help="last day of the window (inclusive)")
    p.add_argument("--catalog", help="STAC API URL or local catalog file (default: Planetary Computer)")
    p.add_argument("--model", choices=["unet", "clay", "hybrid"], help="expected model of the checkpoint")
    p.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped one)")
    p.add_argument("--max-cloud", type=float, default=80.0, help="max scene cloud cover %% (default 80)")
    p.add_argument("--region-blocks", type=int, default=4, help="blocks per region side (default 4)")
    p.add_argument("--event-id", help="event identifier recorded in the outputs")
    _common(p)
    p.set_defaults(func=cmd_sweep)

    d = sub.add_parser("demo", help="sweep the embedded demo scene (no network)")
    _common(d)
    d.set_defaults(func=cmd_demo, block=512)


def _config(args: argparse.Namespace, **kw: Any) -> SweepConfig:
    return SweepConfig(
        out=args.out, block=args.block, overlap=args.overlap, batch_size=args.batch_size,
        zarr_format=args.zarr_format, overwrite=args.overwrite, device=args.device,
        cluster=ClusterSpec(scheduler=args.scheduler, n_workers=args.workers),
        progress=not args.no_progress, **kw,
    )  # fmt: skip


def _report(summary: SweepSummary, args: argparse.Namespace) -> None:
    for line in summary.lines():
        print(line)
    if args.json:
        args.json.write_text(summary_json(summary))


def _export(store: Path, out_dir: Path, labels: Path | None = None) -> None:
    from pipeline.products.export import export_products

    paths = export_products(store, out_dir, labels_path=labels)
    for key, path in sorted(paths.items()):
        print(f"{key:<17} {path}")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run ``landslide sweep``."""
    cfg = _config(
        args, bbox=tuple(args.bbox), start=args.start, end=args.end, catalog=args.catalog,
        checkpoint=args.checkpoint, model=args.model, max_cloud=args.max_cloud,
        region_blocks=args.region_blocks, event_id=args.event_id,
    )  # fmt: skip
    _report(run_sweep(cfg), args)
    if args.export:
        _export(args.out, args.export)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``landslide demo``: the real sweep path on the embedded scene, then every product.

    The quicklook shows the probability beside the scene's known landslide masks.
    """
    from pipeline.demo import scene

    if not scene.DEMO_CATALOG.is_file():
        raise UserError(f"the demo scene is missing from the installation ({scene.DEMO_CATALOG})")
    cfg = _config(
        args, bbox=scene.DEMO_BBOX, start=scene.DEMO_START, end=scene.DEMO_END,
        catalog=str(scene.DEMO_CATALOG), event_id="demo-l4s",
    )  # fmt: skip
    _report(run_sweep(cfg), args)
    products = args.export or args.out.with_name(args.out.name.removesuffix(".zarr") + "-products")
    _export(args.out, products, labels=scene.DEMO_LABELS)
    return 0
