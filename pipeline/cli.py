"""The ``landslide`` command: parse, call, report. Each area registers its own subcommands.

Every subcommand module exposes ``register(subparsers)``, which adds its parsers and sets
``func`` (taking the parsed namespace, returning an exit status).

Start-up is light: building the parser imports the command modules only, and those import
torch, dask, xarray, odc or rasterio inside the functions that run a command, never at module
level. So ``landslide --help`` and ``--version`` answer without loading them
(``tests/test_cli.py`` checks ``sys.modules`` after building the parser).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from pipeline import __version__
from pipeline.errors import UserError, quiet_library_warnings

#: Modules that contribute subcommands, in the order they appear in ``--help``.
_COMMAND_MODULES = (
    "pipeline.sweep.commands",
    "pipeline.models.commands",
    "pipeline.train.commands",
    "pipeline.products.commands",
    "pipeline.event.commands",
)

#: Modules whose import a command's parser must not cause (they take seconds to load).
HEAVY_MODULES = ("torch", "dask", "distributed", "xarray", "odc", "rasterio", "zarr", "geopandas")

#: Descriptions for subcommands whose module registers none (shown by ``landslide CMD --help``).
#: A module's own description always wins.
_DESCRIPTIONS = {
    "sweep": "Map landslides over an area after an event: search a STAC API for post-event "
    "Sentinel-2 L2A scenes and the Copernicus DEM, run the model over chip-aligned blocks on a Dask "
    "cluster and write the probability mosaic to a Zarr store. An interrupted sweep resumes when "
    "the same command is run again; --export also writes the products.",
    "demo": "Sweep the embedded demo scene (15 real Landslide4Sense chips laid out near the 2018 "
    "Iburi earthquake) through exactly the path of a real sweep, without network, then export "
    "every product; the quicklook shows the probability beside the scene's known landslide masks.",
    "evaluate": "Score a checkpoint on a Landslide4Sense split at its recorded threshold: "
    "precision, recall, F1 and IoU of the landslide class over all pixels (and F1 at 0.5).",
    "data": "Landslide4Sense data.",
    "data download": "Download the full Landslide4Sense dataset (with the test masks) from Hugging "
    "Face into DEST and check it against the published checksums.",
}


def subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (``"cmd sub"`` name, parser) below ``parser``, depth first."""
    for action in parser._actions:  # argparse has no public accessor for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                yield full, sub
                yield from subcommands(sub, f"{full} ")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors about one argument's value are one line, without the usage.

    ``--start 2018/09/07`` prints ``landslide: error: argument --start: not a date ...`` and
    exits 2; an error of shape (a missing required argument, an unknown one) still shows the
    usage, which is what helps there.
    """

    def error(self, message: str) -> NoReturn:
        """Report a bad command line and exit 2."""
        if message.startswith("argument "):
            self.exit(2, f"landslide: error: {message}\n")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every registered subcommand."""
    parser = _Parser(
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
    for name, subparser in subcommands(parser):
        if subparser.description is None and name in _DESCRIPTIONS:
            subparser.description = _DESCRIPTIONS[name]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landslide`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_library_warnings()
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
