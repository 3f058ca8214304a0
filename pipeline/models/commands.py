"""``landslide models``: the shipped checkpoint (the default model) and the model architectures.

Each with its parameter count and GFLOP per chip.

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
        help="list the shipped model and the architectures, with parameters and GFLOP per chip",
        description="Name the checkpoint shipped with the package (the model `landslide sweep` and "
        "`landslide demo` use unless --checkpoint says otherwise) and list the registered model "
        "architectures (default configurations, bands = SWEEP_BANDS), each with its parameter count "
        "and forward GFLOP per 128-px chip, counted on the meta device.",
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
    from pipeline.models.checkpoint import read_meta, shipped_checkpoint
    from pipeline.models.flops import measure
    from pipeline.models.registry import MODEL_NAMES, default_config

    path = shipped_checkpoint()
    meta = read_meta(path)
    shipped = measure(meta.model, meta.config, meta.bands)
    costs = [measure(name, default_config(name, SWEEP_BANDS)) for name in MODEL_NAMES]
    shipped_text = (
        f"shipped checkpoint {path.name}: {meta.model} {_config_text(meta.config)}, "
        f"threshold {meta.threshold:g} (the default model of sweep and demo)"
    )
    if args.json is not None:
        rows = [asdict(shipped) | {"description": shipped_text, "checkpoint": path.name, "default": True}]
        rows += [asdict(c) | {"description": _DESCRIPTIONS[c.name], "checkpoint": None, "default": False}
                 for c in costs]  # fmt: skip
        text = json.dumps(rows, indent=2)
        if args.json == STDOUT:
            sys.stdout.write(text + "\n")
        else:
            try:
                Path(args.json).write_text(text + "\n")
            except OSError as exc:
                raise UserError(f"cannot write {args.json}: {exc.strerror}") from exc
        return 0
    print(f"{'model':<8} {'parameters':>12} {'GFLOP/chip':>11}  description")
    size = _millions(shipped.parameters)
    print(f"{shipped.name:<8} {size:>12} {shipped.gflop_per_chip:>11.1f}  {shipped_text}")
    print("architectures (default configurations, untrained; pass a checkpoint of one with --checkpoint):")
    for cost in costs:
        print(
            f"{cost.name:<8} {_millions(cost.parameters):>12} {cost.gflop_per_chip:>11.1f}  "
            f"{_DESCRIPTIONS[cost.name]}"
        )
    print(f"(bands: {len(SWEEP_BANDS)} = {', '.join(SWEEP_BANDS)}; chip 128 x 128 px; multiply-add = 2 FLOP)")
    return 0


def _millions(n: int) -> str:
    """Parameters in millions: two decimals below 10 M (0.27M), one above (31.0M)."""
    return f"{n / 1e6:.2f}M" if n < 10_000_000 else f"{n / 1e6:.1f}M"


def _config_text(config: dict[str, Any]) -> str:
    """The parts of a model configuration that say its size (widths, Clay size), for one line."""
    parts = [f"widths {'-'.join(map(str, config['widths']))}"] if "widths" in config else []
    clay = config.get("clay")
    if isinstance(clay, dict) and "size" in clay:
        parts.append(f"Clay {clay['size']}")
    return f"({', '.join(parts)})" if parts else ""
