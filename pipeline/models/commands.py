"""``landslide models``: list the registered models with parameter count and GFLOP per chip.

Importing this module is cheap (the CLI builds its parser from it at every start); the model
registry, and with it torch, is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

_DESCRIPTIONS = {
    "unet": "U-Net 64-128-256-512 on all bands (baseline)",
    "clay": "Clay v1.5 large on the S2 bands + residual terrain fusion",
    "hybrid": "U-Net + Clay v1.5 large context at the bottleneck",
}

#: The ``--json`` value meaning standard output.
STDOUT = "-"


def register(subparsers: Any) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser(
        "models",
        help="list the models with parameter count and GFLOP per 128-px chip",
        description="List the registered models (default configurations, bands = SWEEP_BANDS) with "
        "their parameter count and forward GFLOP per 128-px chip, counted on the meta device.",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const=STDOUT,
        metavar="PATH",
        help="write the list as JSON to PATH instead of the table ('-', or no PATH: standard output)",
    )
    parser.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    """Print one line per model, or write JSON with ``--json PATH`` (``-``: standard output).

    Raises:
        UserError: If the JSON file cannot be written.
    """
    from pipeline.bands import SWEEP_BANDS
    from pipeline.models.flops import measure
    from pipeline.models.registry import MODEL_NAMES, default_config

    costs = [measure(name, default_config(name, SWEEP_BANDS)) for name in MODEL_NAMES]
    if args.json is not None:
        text = json.dumps([asdict(c) | {"description": _DESCRIPTIONS[c.name]} for c in costs], indent=2)
        if args.json == STDOUT:
            sys.stdout.write(text + "\n")
        else:
            try:
                Path(args.json).write_text(text + "\n")
            except OSError as exc:
                raise UserError(f"cannot write {args.json}: {exc.strerror}") from exc
        return 0
    print(f"{'model':<8} {'parameters':>12} {'GFLOP/chip':>11}  description")
    for cost in costs:
        print(
            f"{cost.name:<8} {cost.parameters / 1e6:>11.1f}M {cost.gflop_per_chip:>11.1f}  "
            f"{_DESCRIPTIONS[cost.name]}"
        )
    print(f"(bands: {len(SWEEP_BANDS)} = {', '.join(SWEEP_BANDS)}; chip 128 x 128 px; multiply-add = 2 FLOP)")
    return 0
