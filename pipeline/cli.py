"""The ``landslide`` command: parse, call, report. Each area registers its own subcommands.

Every subcommand module exposes ``register(subparsers)``, which adds its parsers and sets
``func`` (taking the parsed namespace, returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.errors import UserError

#: Modules that contribute subcommands, in the order they appear in ``--help``.
_COMMAND_MODULES = (
    "pipeline.sweep.commands",
    "pipeline.models.commands",
    "pipeline.train.commands",
    "pipeline.products.commands",
    "pipeline.event_commands",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="landslide",
        description="Map landslides after an earthquake or storm from Sentinel-2 L2A and a DEM, on Dask.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landslide`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"landslide: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("landslide: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
