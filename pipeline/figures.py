"""The pictures in ``docs/img``: one command makes them all, and each records its checkpoint.

    python -m pipeline.figures [--out docs/img]          (or: make figures)

makes, from the shipped checkpoint (``pipeline/demo/data/unet-l4s-sample.safetensors``):

- ``webmap-demo.png`` and ``webmap-demo-zoom.png``: the web map of ``landslide demo`` in headless
  Chromium (:mod:`pipeline.products.webmap.screenshot`);
- ``reliability.png``: the out-of-fold reliability diagram, drawn from the OOF logits that
  ``python -m pipeline.train.ship`` keeps beside the checkpoint
  (:mod:`pipeline.train.shipped_oof`). A checkpoint shipped before those logits were kept
  cannot have its diagram redrawn without training again: the diagram is then kept if it
  already records this checkpoint (the ship run wrote it), and refused otherwise.

Every PNG carries text chunks (:data:`CHECKPOINT_KEY`, :data:`CHECKPOINT_NAME_KEY`,
:data:`COMMAND_KEY`) naming the SHA-256 of the checkpoint file it was made from and the command
that made it; ``tests/test_figures.py`` checks that every picture in ``docs/img`` names the
shipped checkpoint. Read them with :func:`read_stamp` (or ``python -c "from PIL import Image;
print(Image.open('docs/img/reliability.png').text)"``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

#: PNG text keys.
CHECKPOINT_KEY = "landslide:checkpoint_sha256"
CHECKPOINT_NAME_KEY = "landslide:checkpoint"
COMMAND_KEY = "landslide:command"
#: The docs' picture folder in a checkout.
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
WEBMAP_PNGS = ("webmap-demo.png", "webmap-demo-zoom.png")
RELIABILITY_PNG = "reliability.png"


@dataclass(frozen=True)
class FigureSource:
    """What a figure was made from.

    Attributes:
        checkpoint_sha256: Hex SHA-256 of the checkpoint file.
        checkpoint: The checkpoint's file name.
        command: The command that made the figure.
    """

    checkpoint_sha256: str
    checkpoint: str
    command: str

    @classmethod
    def of(cls, checkpoint: str | Path, command: str) -> FigureSource:
        """The source record of a figure made from ``checkpoint`` by ``command``."""
        from pipeline.models.checkpoint import sha256_file

        return cls(sha256_file(checkpoint), Path(checkpoint).name, command)

    def text(self) -> dict[str, str]:
        """The PNG text chunks."""
        return {
            CHECKPOINT_KEY: self.checkpoint_sha256,
            CHECKPOINT_NAME_KEY: self.checkpoint,
            COMMAND_KEY: self.command,
        }


def stamp_png(path: str | Path, source: FigureSource) -> Path:
    """Rewrite the PNG at ``path`` with ``source`` in its text chunks (pixels unchanged)."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    with Image.open(path) as im:
        im.load()
        info = PngImagePlugin.PngInfo()
        for key, value in {**getattr(im, "text", {}), **source.text()}.items():
            info.add_itxt(key, value)
        tmp = path.with_name(f".{path.name}.tmp")
        im.save(tmp, format="PNG", pnginfo=info, optimize=True)
    tmp.replace(path)
    return path


def read_stamp(path: str | Path) -> dict[str, str]:
    """The text chunks of the PNG at ``path`` (empty when there are none)."""
    from PIL import Image

    with Image.open(path) as im:
        return dict(getattr(im, "text", {}))


def _reliability(checkpoint: Path, png: Path, source: FigureSource) -> Path | None:
    """Redraw the reliability diagram from the OOF logits beside ``checkpoint``.

    Without them (a checkpoint shipped before they were kept) a diagram that already records this
    checkpoint is kept as it is (None); any other is an error naming the command that makes it.
    """
    from pipeline.train.shipped_oof import oof_path, reliability_figure

    if oof_path(checkpoint).is_file():
        return reliability_figure(checkpoint, png)
    made = read_stamp(png) if png.is_file() else {}
    if made.get(CHECKPOINT_KEY) == source.checkpoint_sha256:
        print(f"{png}: kept, made from this checkpoint by `{made.get(COMMAND_KEY)}` (no OOF logits)")
        return None
    raise SystemExit(
        f"landslide: error: {oof_path(checkpoint).name} not found beside the checkpoint and {png} "
        "does not record this checkpoint: run `python -m pipeline.train.ship`, which writes both, or pass "
        "--oof RUN/oof.npz of the ship run that made this checkpoint"
    )


def main(argv: list[str] | None = None) -> int:
    """Make every figure of ``docs/img`` from the shipped checkpoint (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS_IMG, help="folder for the PNGs (default docs/img)")
    parser.add_argument(
        "--only", choices=("webmap", "reliability"), help="make only these figures (default: all)"
    )
    parser.add_argument(
        "--oof",
        type=Path,
        help="the oof.npz of the ship run that made the checkpoint: kept beside it first (its fit is "
        "checked), for a checkpoint shipped without its OOF logits",
    )
    args = parser.parse_args(argv)
    from pipeline.errors import UserError

    try:
        _make(args, "python -m pipeline.figures " + shlex.join(argv if argv is not None else sys.argv[1:]))
    except UserError as exc:
        raise SystemExit(f"landslide: error: {exc}") from None
    return 0


def _make(args: argparse.Namespace, command: str) -> None:
    from pipeline.models.checkpoint import shipped_checkpoint

    if args.oof:
        from pipeline.train.shipped_oof import write_shipped_oof

        print(f"kept {write_shipped_oof(args.oof, shipped_checkpoint())}")
    source = FigureSource.of(shipped_checkpoint(), command.strip())
    written: list[Path] = []
    if args.only in (None, "reliability"):
        png = _reliability(shipped_checkpoint(), args.out / RELIABILITY_PNG, source)
        if png is not None:
            written.append(png)
    if args.only in (None, "webmap"):
        from pipeline.products.webmap import screenshot

        screenshot.main(["--out", str(args.out)])
        written += [args.out / name for name in WEBMAP_PNGS]
    for path in written:
        stamp_png(path, source)
        print(f"{path}: checkpoint {source.checkpoint_sha256[:12]}")


if __name__ == "__main__":
    raise SystemExit(main())
