"""Every picture in docs/img records the checkpoint it was made from, and that is the shipped one.

The pictures are made by ``python -m pipeline.figures`` (``make figures``), which writes the
checkpoint file's SHA-256 and its own command into each PNG's text chunks. A picture made from
another checkpoint (or by hand, with no record) fails here: re-run the command.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.figures import (
    CHECKPOINT_KEY,
    CHECKPOINT_NAME_KEY,
    COMMAND_KEY,
    DOCS_IMG,
    RELIABILITY_PNG,
    WEBMAP_PNGS,
    FigureSource,
    read_stamp,
    stamp_png,
)
from pipeline.models.checkpoint import sha256_file, shipped_checkpoint

ROOT = DOCS_IMG.parents[1]
PICTURES = sorted(DOCS_IMG.glob("*.png"))


def test_the_figures_command_makes_every_picture_in_docs() -> None:
    assert {p.name for p in PICTURES} == {RELIABILITY_PNG, *WEBMAP_PNGS}
    linked = set()
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        linked |= {Path(m).name for m in re.findall(r"\(((?:docs/)?img/[^)\s]+\.png)\)", md.read_text())}
    assert linked <= {p.name for p in PICTURES}, linked


@pytest.mark.parametrize("png", PICTURES, ids=[p.name for p in PICTURES])
def test_each_picture_records_the_shipped_checkpoint(png: Path) -> None:
    stamp = read_stamp(png)
    shipped = shipped_checkpoint()
    assert CHECKPOINT_KEY in stamp, f"{png.name} records no checkpoint: run `make figures`"
    assert stamp[CHECKPOINT_KEY] == sha256_file(shipped), (
        f"{png.name} was made from checkpoint {stamp[CHECKPOINT_KEY][:12]}, not the shipped "
        f"{sha256_file(shipped)[:12]}: run `make figures`"
    )
    assert stamp[CHECKPOINT_NAME_KEY] == shipped.name
    assert stamp[COMMAND_KEY].startswith(("python -m pipeline.figures", "python -m pipeline.train.ship"))


def test_stamp_keeps_the_pixels_and_replaces_an_older_record(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    Image.fromarray(rgb).save(path)
    assert read_stamp(path) == {}
    stamp_png(path, FigureSource("a" * 64, "old.safetensors", "cmd 1"))
    stamp_png(path, FigureSource("b" * 64, "new.safetensors", "cmd 2"))
    assert read_stamp(path) == {
        CHECKPOINT_KEY: "b" * 64,
        CHECKPOINT_NAME_KEY: "new.safetensors",
        COMMAND_KEY: "cmd 2",
    }
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)
