"""``landslide models``: list the registered models with parameter count and GFLOP per chip."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from pipeline.bands import SWEEP_BANDS
from pipeline.models.registry import MODEL_NAMES, default_config

_DESCRIPTIONS = {
    "unet": "U-Net 64-128-256-512 on all bands (baseline)",
    "clay": "Clay v1.5 large on the S2 bands + residual terrain fusion",
    "hybrid": "U-Net + Clay v1.5 large context at the bottleneck",
}


def register(subparsers: Any) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser(
        "models",
        help="list the models with parameter count and GFLOP per 128-px chip",
        description="List the registered models (default configurations, bands = SWEEP_BANDS) with "
        "their parameter count and forward GFLOP per 128-px chip, counted on the meta device.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    """Print one line per model (or JSON with ``--json``)."""
    from pipeline.models.flops import measure

    costs = [measure(name, default_config(name, SWEEP_BANDS)) for name in MODEL_NAMES]
    if args.json:
        print(json.dumps([asdict(c) | {"description": _DESCRIPTIONS[c.name]} for c in costs], indent=2))
        return 0
    print(f"{'model':<8} {'parameters':>12} {'GFLOP/chip':>11}  description")
    for cost in costs:
        print(
            f"{cost.name:<8} {cost.parameters / 1e6:>11.1f}M {cost.gflop_per_chip:>11.1f}  "
            f"{_DESCRIPTIONS[cost.name]}"
        )
    print(f"(bands: {len(SWEEP_BANDS)} = {', '.join(SWEEP_BANDS)}; chip 128 x 128 px; multiply-add = 2 FLOP)")
    return 0
