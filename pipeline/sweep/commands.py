"""``landslide sweep`` and ``landslide demo``: parse, run, report.

Imports nothing heavy at module level (``landslide --help`` stays fast); the sweep itself is
imported when a command runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import UserError
from pipeline.sweep import config as C
from pipeline.tiling import BLOCK_MULTIPLE

if TYPE_CHECKING:
    from pipeline.sweep.config import SweepConfig
    from pipeline.sweep.summary import SweepSummary


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _common(p: argparse.ArgumentParser, block: int) -> None:
    p.add_argument("--out", type=Path, required=True, help="output Zarr store (absent or an empty directory)")
    p.add_argument(
        "--block", type=int, default=block,
        help=f"Dask block size in px, a multiple of {BLOCK_MULTIPLE} (default {block})",
    )  # fmt: skip
    p.add_argument(
        "--overlap", type=int, default=C.DEFAULT_OVERLAP,
        help=f"pixels shared by neighbouring chips (default {C.DEFAULT_OVERLAP})",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=C.DEFAULT_BATCH_SIZE,
        help=f"chips per forward pass (default {C.DEFAULT_BATCH_SIZE})",
    )  # fmt: skip
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, help="local worker processes (default: min(2, cores))")
    p.add_argument(
        "--device", default=C.DEFAULT_DEVICE, choices=list(C.DEVICES),
        help=f"torch device; auto picks cuda where the workers see a GPU (default {C.DEFAULT_DEVICE})",
    )  # fmt: skip
    p.add_argument(
        "--zarr-format", type=int, default=C.DEFAULT_ZARR_FORMAT, choices=[2, 3],
        help=f"Zarr format; 2 reads in GDAL (default {C.DEFAULT_ZARR_FORMAT})",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a complete store at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the summary as JSON to FILE")
    p.add_argument(
        "--export", type=Path, metavar="DIR",
        help="after the sweep, write the products (polygons, COG, STAC item, pyramid, quicklook) here",
    )  # fmt: skip


def register(sub: Any) -> None:
    """Add ``sweep`` and ``demo``."""
    p = sub.add_parser(
        "sweep", help="map landslides over an area after an event",
        description="Search post-event Sentinel-2 L2A scenes and a DEM over an area, run the model over it "
        "on Dask and write a landslide probability mosaic to Zarr. Killed, it resumes when re-run.",
    )  # fmt: skip
    p.add_argument(
        "--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"),
        help="WGS84 bbox: west south east north, in degrees (latitudes within 84)",
    )  # fmt: skip
    p.add_argument("--start", type=_date, required=True, help="first day of the post-event window")
    p.add_argument("--end", type=_date, required=True, help="last day of the window (inclusive)")
    p.add_argument("--catalog", help="STAC API URL or local catalog file (default: Planetary Computer)")
    p.add_argument("--model", choices=["unet", "clay", "hybrid"], help="expected model of the checkpoint")
    p.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped one)")
    p.add_argument(
        "--max-cloud", type=float, default=C.DEFAULT_MAX_CLOUD,
        help=f"max scene cloud cover %% (default {C.DEFAULT_MAX_CLOUD:g})",
    )  # fmt: skip
    p.add_argument(
        "--region-blocks", type=int, default=C.DEFAULT_REGION_BLOCKS,
        help=f"blocks per region side (default {C.DEFAULT_REGION_BLOCKS})",
    )  # fmt: skip
    p.add_argument("--event-id", help="event identifier recorded in the outputs")
    p.add_argument(
        "--base-rate", type=float, metavar="FRACTION",
        help="landslide fraction expected over the area (e.g. 0.005): probabilities are corrected to it "
        "(label shift, Saerens et al. 2002; the same pixels stay above the threshold); "
        "default: the training base rate stored in the checkpoint (no correction)",
    )  # fmt: skip
    _common(p, C.DEFAULT_BLOCK)
    p.set_defaults(func=cmd_sweep)

    d = sub.add_parser(
        "demo", help="sweep the embedded demo scene (no network)",
        description="Sweep the embedded demo scene (15 real Landslide4Sense chips, no network) through the "
        "real sweep path, then write every product, with a quicklook beside the known landslides.",
    )  # fmt: skip
    _common(d, C.DEMO_BLOCK)
    d.set_defaults(func=cmd_demo)


def _config(args: argparse.Namespace, **kw: Any) -> SweepConfig:
    from pipeline.cluster import ClusterSpec

    return C.SweepConfig(
        out=args.out, block=args.block, overlap=args.overlap, batch_size=args.batch_size,
        zarr_format=args.zarr_format, overwrite=args.overwrite, device=args.device,
        cluster=ClusterSpec(scheduler=args.scheduler, n_workers=args.workers),
        progress=not args.no_progress, **kw,
    )  # fmt: skip


def _run(cfg: SweepConfig, export: bool = False) -> SweepSummary | None:
    """Run the sweep (Ctrl-C: see :func:`pipeline.sweep.run.run_sweep`; the CLI prints one line).

    Args:
        cfg: The sweep.
        export: Products follow: a store that already holds this very sweep, complete (a re-run
            after an interrupted export), is not an error; None is returned and the products are
            written from it.
    """
    import sys

    from pipeline.store.reader import CompleteStoreError
    from pipeline.sweep.run import run_sweep

    try:
        return run_sweep(cfg)
    except CompleteStoreError as exc:
        if not (export and exc.same_sweep):
            raise
    print(f"note: {cfg.out} already holds this sweep, complete; writing its products", file=sys.stderr)
    return None


def _report(summary: SweepSummary | None, args: argparse.Namespace) -> None:
    if summary is None:
        return
    for line in summary.lines():
        print(line)
    if args.json:
        from pipeline.store.atomic import write_atomic

        write_atomic(args.json, summary.to_json())


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
        region_blocks=args.region_blocks, event_id=args.event_id, base_rate=args.base_rate,
    )  # fmt: skip
    _report(_run(cfg, export=bool(args.export)), args)
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
    _report(_run(cfg, export=True), args)
    products = args.export or args.out.with_name(args.out.name.removesuffix(".zarr") + "-products")
    _export(args.out, products, labels=scene.DEMO_LABELS)
    return 0
